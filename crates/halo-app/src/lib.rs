//! The composition root shared by both binaries and the tests, in the shape of a `startup`
//! module: `stores` connects the adapters (migrating Postgres first), `services` builds the use
//! cases on them, `startup` seeds the mirror, starts every background loop from one place and
//! binds the HTTP server (`http`), then runs it until SIGTERM or SIGINT (both graceful:
//! in-flight requests finish, then the background tasks stop).

pub mod cli;
mod healthcheck;
mod http;
mod migrate;
mod operators;
mod services;
mod startup;
mod stores;
mod telemetry;

pub use healthcheck::{check_health, healthcheck, HealthcheckError};
pub use migrate::migrate_from_env;
pub use operators::{create_operator, OperatorError};
pub use startup::{Application, RunningApplication};
pub use telemetry::{init_tracing, init_tracing_and_export, Telemetry, TelemetryError};

use halo_config::Config;
use std::process::ExitCode;

/// Which of the two services to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Public,
    Internal,
}

impl Service {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Public => "public-api",
            Self::Internal => "internal-api",
        }
    }

    /// The port this service listens on (`PORT`, when set, already overrides both, see
    /// `halo_config`).
    pub const fn port(self, config: &Config) -> u16 {
        match self {
            Self::Public => config.public_port,
            Self::Internal => config.internal_port,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Pool(#[from] halo_postgres::PoolError),
    #[error("cannot migrate postgres")]
    Migrate(#[source] halo_postgres::MigrateError),
    #[error(
        "the database schema is behind this build (applied: {applied}, needed: V{expected}) and \
         MIGRATE_ON_START=false: run `{binary} migrate` first (or set MIGRATE_ON_START=true)"
    )]
    SchemaBehind {
        applied: String,
        expected: u32,
        binary: &'static str,
    },
    #[error("cannot load app_config")]
    Settings(#[source] halo_ports::TruthError),
    #[error(transparent)]
    Valkey(#[from] halo_valkey::ConnectError),
    #[error("cannot bind the HTTP port")]
    Bind(#[source] std::io::Error),
}

/// The one-shot commands' start (healthcheck, create-operator): the configuration from the
/// environment, then logging as configured; no trace export.
pub fn start_from_env() -> Result<Config, ExitCode> {
    let config = config_from_env()?;
    init_tracing(config.log_format);
    Ok(config)
}

/// A bad value prints one line naming the variable and exits with status 2.
fn config_from_env() -> Result<Config, ExitCode> {
    Config::from_env().map_err(|error| {
        eprintln!("{error}");
        ExitCode::from(2)
    })
}

/// `serve`, the binaries' default: the configuration, logging and (with an OTLP endpoint) trace
/// export, then [`serve`]; the spans still queued are exported before the process exits. A
/// bad value, or an exporter that cannot be set up, prints one line and exits with status 2.
pub async fn serve_from_env(service: Service) -> ExitCode {
    let config = match config_from_env() {
        Ok(config) => config,
        Err(status) => return status,
    };
    let telemetry = match &config.trace_export {
        None => {
            init_tracing(config.log_format);
            Telemetry::default()
        }
        Some(export) => match init_tracing_and_export(config.log_format, export, service.name()) {
            Ok(telemetry) => telemetry,
            Err(error) => {
                eprintln!("{}: {}", service.name(), error_chain(&error));
                return ExitCode::from(2);
            }
        },
    };
    let status = serve(&config, service).await;
    telemetry.shutdown();
    status
}

/// Builds the service and serves until SIGTERM or SIGINT; the process's exit status. A
/// failed start is logged and also printed as one line on stderr (with its causes), which is
/// where an operator looks when a pod does not come up.
pub async fn serve(config: &Config, service: Service) -> ExitCode {
    let app = match Application::build(config, service).await {
        Ok(app) => app,
        Err(error) => {
            let why = error_chain(&error);
            tracing::error!(error = %why, "start-up failed");
            eprintln!("{}: start-up failed: {why}", service.name());
            return ExitCode::FAILURE;
        }
    };
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "server failed");
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line (`a: b: c`), skipping a cause whose text the outer
/// message already carries.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = inner.source();
    }
    text
}
