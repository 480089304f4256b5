//! `public-api`: the apps' API. All wiring lives in `halo-app`; this file only starts it.

use halo_app::{serve, start_from_env, Service};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    match start_from_env() {
        Ok(config) => serve(&config, Service::Public).await,
        Err(status) => status,
    }
}
