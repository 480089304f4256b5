//! `public-api`: the apps' API. All wiring lives in `halo-app`; this file only starts it.

use halo_app::{init_tracing, Application, Service};
use halo_config::Config;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    init_tracing(config.log_format);
    let app = match Application::build(&config, Service::Public).await {
        Ok(app) => app,
        Err(error) => {
            tracing::error!(error = ?error, "start-up failed");
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
