//! Operator accounts for the control centre, created from the `internal-api` CLI.

use halo_config::Config;
use halo_metrics::Metrics;
use halo_postgres::{PgTruth, PoolSettings};

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("email must look like name@domain")]
    InvalidEmail,
    #[error("password must be at least 12 characters")]
    WeakPassword,
    #[error(transparent)]
    Hash(#[from] halo_auth::PasswordError),
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
    let hash = halo_auth::hash_password(password)?;
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
