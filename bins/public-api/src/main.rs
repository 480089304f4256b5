//! `public-api`: the apps' API (default), `public-api migrate` (apply the migrations and
//! exit), or `public-api healthcheck` (the image's probe). All wiring lives in `halo-app`; this
//! file only starts it.

use clap::{Parser, Subcommand};
use halo_app::{healthcheck, migrate_from_env, serve_from_env, start_from_env, Service};
use std::process::ExitCode;

/// mimalloc rather than glibc malloc: request handling frees and allocates many small buffers
/// across worker threads, and glibc's consolidation showed in every heartbeat's profile
/// (A/B with `bins/loadgen` on 2 cores: +5-10 % heartbeats/s; peak RSS at 10k simulated mitras
/// 41 MiB instead of 24 MiB, within the 64 MiB budget).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "public-api",
    version = halo_build_info::LONG_VERSION,
    about = "Apps' API of the availability backend"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the public API (the default).
    Serve,
    /// Apply pending database migrations (no statement timeout) and exit; needs only
    /// DATABASE_URL.
    Migrate,
    /// Exit 0 when the service on this container's port answers `/healthz` with 200.
    Healthcheck,
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command.unwrap_or(Command::Serve) {
        Command::Serve => serve_from_env(Service::Public).await,
        Command::Migrate => migrate_from_env(Service::Public).await,
        Command::Healthcheck => match start_from_env() {
            Ok(config) => healthcheck(&config, Service::Public).await,
            Err(status) => status,
        },
    }
}
