//! Operator accounts for the control centre, created from the `internal-api` CLI.

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::Argon2;
use halo_config::Config;
use halo_metrics::Metrics;
use halo_postgres::{PgTruth, PoolSettings};

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("email must look like name@domain")]
    InvalidEmail,
    #[error("password must be at least 12 characters")]
    WeakPassword,
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error(transparent)]
    Pool(#[from] halo_postgres::PoolError),
    #[error("cannot migrate postgres")]
    Migrate(#[from] halo_postgres::MigrateError),
    #[error("cannot write the operator")]
    Store(#[from] halo_ports::TruthError),
}

/// Creates the operator, or replaces its password when the email exists (idempotent).
pub async fn create_operator(
    config: &Config,
    email: &str,
    password: &str,
) -> Result<uuid::Uuid, OperatorError> {
    let email = email.trim().to_lowercase();
    if !email.contains('@') || email.starts_with('@') || email.ends_with('@') {
        return Err(OperatorError::InvalidEmail);
    }
    if password.chars().count() < 12 {
        return Err(OperatorError::WeakPassword);
    }
    // 16 bytes from the OS RNG (uuid v4 draws them from getrandom).
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes())
        .map_err(|e| OperatorError::Hash(e.to_string()))?;
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| OperatorError::Hash(e.to_string()))?
        .to_string();
    let pool = halo_postgres::connect_pool(
        config.database_url.expose(),
        &PoolSettings {
            max_size: 1,
            timeout: config.pg_timeout,
        },
    )?;
    halo_postgres::migrate(&pool).await?;
    let truth = PgTruth::new(pool, Metrics::new());
    Ok(truth.upsert_operator(&email, &hash).await?)
}
