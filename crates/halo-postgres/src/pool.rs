//! Building the pool (TLS as `DATABASE_URL` says, see `tls.rs`) and applying migrations.

use crate::tls::{parse_database_url, tls_failure, TlsSetupError};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::time::Duration;

refinery::embed_migrations!("../../migrations");

const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_RETRIES: u32 = 3;

/// Any fixed number works; it only has to be the same for every instance.
const MIGRATION_LOCK_KEY: i64 = 0x4841_4C4F_4D49_4752; // "HALOMIGR"

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_size: usize,
    /// Wait for a connection, connect, and `statement_timeout`: a hung Postgres fails fast.
    pub timeout: Duration,
}

/// `DATABASE_URL` cannot be used. The messages carry their cause (no `source`), so one line
/// says everything.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("invalid DATABASE_URL: {0}")]
    InvalidUrl(tokio_postgres::Error),
    #[error("invalid DATABASE_URL: {0}")]
    Tls(TlsSetupError),
    #[error("cannot build the postgres pool: {0}")]
    Build(deadpool_postgres::BuildError),
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot reach postgres to migrate")]
    Connect(#[source] deadpool_postgres::PoolError),
    #[error("cannot reach postgres to migrate")]
    ConnectDirect(#[source] tokio_postgres::Error),
    /// The server was reached but the TLS handshake was refused: retrying will not help.
    #[error("DATABASE_URL: the TLS connection to postgres was refused: {0}")]
    Tls(String),
    #[error(transparent)]
    Url(#[from] PoolError),
    #[error("migration lock failed")]
    Lock(#[source] tokio_postgres::Error),
    #[error("migration failed")]
    Migrate(#[source] refinery::Error),
    #[error("cannot read the schema version")]
    Version(#[source] tokio_postgres::Error),
}

impl MigrateError {
    /// True when trying again later may succeed (Postgres not reachable yet).
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(_) | Self::ConnectDirect(_))
    }
}

/// A pool with every timeout set. Connections are made lazily, so this never blocks.
pub fn connect_pool(url: &str, settings: &PoolSettings) -> Result<Pool, PoolError> {
    let (mut pg, tls) = parse_database_url(url)?;
    let connector = tls.connector().map_err(PoolError::Tls)?;
    let statement_timeout_ms = settings.timeout.as_millis();
    pg.connect_timeout(settings.timeout)
        // Recycling is `Fast` (`is_closed` only, no test query per checkout): a connection to a
        // server that died is dropped as soon as its socket closes. A server whose host
        // vanished closes nothing, so the kernel must give up on it: unacknowledged data for
        // longer than the timeout, or an idle connection whose keepalive probes go unanswered
        // (30 s + 3 × 5 s), closes the socket, and the pool replaces the connection.
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE)
        .keepalives_interval(KEEPALIVE_INTERVAL)
        .keepalives_retries(KEEPALIVE_RETRIES)
        .tcp_user_timeout(settings.timeout)
        .options(format!("-c statement_timeout={statement_timeout_ms}"));
    if pg.get_application_name().is_none() {
        pg.application_name("halo");
    }
    let manager = Manager::from_config(
        pg,
        connector,
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
    let mut client = pool.get().await.map_err(connect_failed)?;
    let outcome = migrate_locked(&mut client).await.map(|_| ());
    // Prepared statements cached on this connection may predate the schema change.
    client.statement_cache.clear();
    outcome
}

/// The `migrate` subcommand: applies pending migrations on a connection of its own, with no
/// `statement_timeout` (a long migration must not be cancelled half-way by the services'
/// 5 s budget), under the same advisory lock as [`migrate`]. Returns the versions applied now
/// (empty when the schema was already current).
pub async fn migrate_standalone(
    url: &str,
    connect_timeout: Duration,
) -> Result<Vec<u32>, MigrateError> {
    let mut client = connect_one(url, |pg| {
        pg.connect_timeout(connect_timeout)
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE)
            .keepalives_interval(KEEPALIVE_INTERVAL)
            .keepalives_retries(KEEPALIVE_RETRIES)
            // Also overrides a timeout set on the role or the database.
            .options("-c statement_timeout=0 -c lock_timeout=0");
        if pg.get_application_name().is_none() {
            pg.application_name("halo-migrate");
        }
    })
    .await
    .map_err(|error| match error {
        ConnectError::Url(error) => MigrateError::Url(error),
        ConnectError::Tls(why) => MigrateError::Tls(why),
        ConnectError::Connect(error) => MigrateError::ConnectDirect(error),
    })?;
    migrate_locked(&mut client).await
}

/// One connection outside any pool, TLS as `url` says; `configure` adjusts the settings first.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Url(#[from] PoolError),
    #[error("the TLS connection to postgres was refused: {0}")]
    Tls(String),
    #[error("cannot connect to postgres: {0}")]
    Connect(tokio_postgres::Error),
}

/// A single connection (tools, tests), with TLS as the URL says; its driver task runs on the
/// current runtime until the client is dropped.
pub async fn connect_one(
    url: &str,
    configure: impl FnOnce(&mut tokio_postgres::Config),
) -> Result<tokio_postgres::Client, ConnectError> {
    let (mut pg, tls) = parse_database_url(url)?;
    let connector = tls.connector().map_err(PoolError::Tls)?;
    configure(&mut pg);
    let (client, connection) =
        pg.connect(connector)
            .await
            .map_err(|error| match tls_failure(&error) {
                Some(why) => ConnectError::Tls(why),
                None => ConnectError::Connect(error),
            })?;
    tokio::spawn(async move {
        // Ends when the client is dropped or the server goes away.
        let _ = connection.await;
    });
    Ok(client)
}

async fn migrate_locked(client: &mut tokio_postgres::Client) -> Result<Vec<u32>, MigrateError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(MigrateError::Lock)?;
    let outcome = migrations::runner()
        .run_async(client)
        .await
        .map(|report| {
            report
                .applied_migrations()
                .iter()
                .map(|m| m.version())
                .collect()
        })
        .map_err(MigrateError::Migrate);
    // Unlock even when the migration failed; a lost connection releases the lock anyway.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(MigrateError::Lock);
    let applied = outcome?;
    unlocked?;
    Ok(applied)
}

/// The schema version found in the database against the one this build expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaStatus {
    /// The newest migration applied; `None` on an empty database.
    pub applied: Option<u32>,
    /// The newest migration this build carries.
    pub expected: u32,
}

impl SchemaStatus {
    /// True when migrations this build needs have not been applied.
    pub fn is_behind(&self) -> bool {
        self.applied.is_none_or(|applied| applied < self.expected)
    }
}

/// Reads which migrations the database has (for `MIGRATE_ON_START=false`).
pub async fn schema_status(pool: &Pool) -> Result<SchemaStatus, MigrateError> {
    let expected = migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or(0);
    let client = pool.get().await.map_err(connect_failed)?;
    let has_history: bool = client
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await
        .map_err(MigrateError::Version)?
        .get(0);
    let applied: Option<i32> = if has_history {
        client
            .query_one("SELECT max(version) FROM refinery_schema_history", &[])
            .await
            .map_err(MigrateError::Version)?
            .get(0)
    } else {
        None
    };
    Ok(SchemaStatus {
        applied: applied.and_then(|v| u32::try_from(v).ok()),
        expected,
    })
}

/// A pool that could not hand out a connection: a TLS refusal is told apart (it is final).
fn connect_failed(error: deadpool_postgres::PoolError) -> MigrateError {
    match tls_failure(&error) {
        Some(why) => MigrateError::Tls(why),
        None => MigrateError::Connect(error),
    }
}
