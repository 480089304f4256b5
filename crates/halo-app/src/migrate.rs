//! The `migrate` subcommand, and the start-up's own migration or schema check.

use crate::{error_chain, init_tracing, Service, StartupError};
use std::process::ExitCode;
use std::time::Duration;

/// How long start-up waits for Postgres (a fresh cluster may still be starting).
const POSTGRES_STARTUP_WAIT: Duration = Duration::from_secs(30);

/// The `migrate` subcommand of both binaries: reads only `DATABASE_URL` (and `PG_TIMEOUT_MS`,
/// `LOG_FORMAT`), applies pending migrations on a connection of its own without
/// `statement_timeout`, prints what it did. Exit status 0 when the schema is current
/// afterwards, 1 when migrating failed, 2 for a bad configuration.
pub async fn migrate_from_env(service: Service) -> ExitCode {
    let config = match halo_config::MigrationConfig::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    init_tracing(config.log_format);
    let url = config.database_url.expose();
    let outcome = when_reachable(|| halo_postgres::migrate_standalone(url, config.connect_timeout));
    match outcome.await {
        Ok(applied) if applied.is_empty() => {
            println!(
                "{}: schema up to date, no migration to apply",
                service.name()
            );
            ExitCode::SUCCESS
        }
        Ok(applied) => {
            let versions: Vec<String> = applied.iter().map(|v| format!("V{v}")).collect();
            println!("{}: applied {}", service.name(), versions.join(", "));
            ExitCode::SUCCESS
        }
        Err(error) => {
            let why = error_chain(&error);
            tracing::error!(error = %why, "migrate failed");
            eprintln!("{}: migrate failed: {why}", service.name());
            ExitCode::FAILURE
        }
    }
}

/// Migrates, waiting up to [`POSTGRES_STARTUP_WAIT`] for Postgres to be reachable. A TLS
/// refusal (wrong CA, wrong host name) is final and stops at once.
pub(crate) async fn migrate_when_reachable(pool: &halo_postgres::Pool) -> Result<(), StartupError> {
    when_reachable(|| halo_postgres::migrate(pool))
        .await
        .map_err(StartupError::Migrate)
}

/// `MIGRATE_ON_START=false`: someone else migrates (a deploy's migration job). Serving on a
/// schema older than this build's would fail requests at random, so start-up stops instead; a
/// schema *newer* than the build (a rollback of the binary) is served, with a warning, since
/// migrations are written to be compatible with the previous release.
pub(crate) async fn check_schema_when_reachable(
    pool: &halo_postgres::Pool,
    service: Service,
) -> Result<(), StartupError> {
    let status = when_reachable(|| halo_postgres::schema_status(pool))
        .await
        .map_err(StartupError::Migrate)?;
    if status.is_behind() {
        return Err(StartupError::SchemaBehind {
            applied: status
                .applied
                .map_or_else(|| "none".to_owned(), |v| format!("V{v}")),
            expected: status.expected,
            binary: service.name(),
        });
    }
    if status.applied > Some(status.expected) {
        tracing::warn!(
            applied = status.applied,
            expected = status.expected,
            "the database schema is newer than this build"
        );
    }
    Ok(())
}

/// Runs `attempt` until it succeeds or fails for another reason than "Postgres not reachable
/// yet", for at most [`POSTGRES_STARTUP_WAIT`].
async fn when_reachable<T, F, Fut>(mut attempt: F) -> Result<T, halo_postgres::MigrateError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, halo_postgres::MigrateError>>,
{
    let deadline = tokio::time::Instant::now() + POSTGRES_STARTUP_WAIT;
    loop {
        match attempt().await {
            Err(error) if error.is_connect() && tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %error_chain(&error), "postgres not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            outcome => return outcome,
        }
    }
}
