//! `public-api`: the apps' API. All wiring lives in `halo-app`; this file only starts it.

use halo_app::{serve, start_from_env, Service};
use std::process::ExitCode;

/// mimalloc rather than glibc malloc: request handling frees and allocates many small buffers
/// across worker threads, and glibc's consolidation showed in every heartbeat's profile
/// (A/B with `bins/loadgen` on 2 cores: +5-10 % heartbeats/s; peak RSS at 10k simulated mitras
/// 41 MiB instead of 24 MiB, within the 64 MiB budget).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    match start_from_env() {
        Ok(config) => serve(&config, Service::Public).await,
        Err(status) => status,
    }
}
