//! Building the pool and applying migrations.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::NoTls;

refinery::embed_migrations!("../../migrations");

/// Any fixed number works; it only has to be the same for every instance.
const MIGRATION_LOCK_KEY: i64 = 0x4841_4C4F_4D49_4752; // "HALOMIGR"

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_size: usize,
    /// Wait for a connection, connect, and `statement_timeout`: a hung Postgres fails fast.
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("invalid DATABASE_URL")]
    InvalidUrl(#[source] tokio_postgres::Error),
    #[error("cannot build the postgres pool")]
    Build(#[source] deadpool_postgres::BuildError),
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot reach postgres to migrate")]
    Connect(#[source] deadpool_postgres::PoolError),
    #[error("migration lock failed")]
    Lock(#[source] tokio_postgres::Error),
    #[error("migration failed")]
    Migrate(#[source] refinery::Error),
}

/// A pool with every timeout set. Connections are made lazily, so this never blocks.
pub fn connect_pool(url: &str, settings: &PoolSettings) -> Result<Pool, PoolError> {
    let mut pg = tokio_postgres::Config::from_str(url).map_err(PoolError::InvalidUrl)?;
    let statement_timeout_ms = settings.timeout.as_millis();
    pg.connect_timeout(settings.timeout)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .options(format!("-c statement_timeout={statement_timeout_ms}"));
    if pg.get_application_name().is_none() {
        pg.application_name("halo");
    }
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(settings.max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(settings.timeout))
        .create_timeout(Some(settings.timeout))
        .recycle_timeout(Some(settings.timeout))
        .build()
        .map_err(PoolError::Build)
}

/// Applies pending migrations. Instances starting together serialize on an advisory lock, so
/// the second one finds the schema in place instead of racing the first.
pub async fn migrate(pool: &Pool) -> Result<(), MigrateError> {
    let mut client = pool.get().await.map_err(MigrateError::Connect)?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(MigrateError::Lock)?;
    let outcome = migrations::runner()
        .run_async(&mut **client)
        .await
        .map(|_| ())
        .map_err(MigrateError::Migrate);
    // Unlock even when the migration failed; a lost connection releases the lock anyway.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(MigrateError::Lock);
    // Prepared statements cached on this connection may predate the schema change.
    client.statement_cache.clear();
    outcome.and(unlocked.map(|_| ()))
}
