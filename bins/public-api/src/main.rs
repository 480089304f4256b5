//! `public-api`: the apps' API (default), `public-api migrate` (apply the migrations and
//! exit), or `public-api healthcheck` (the image's probe). All wiring and the command line live
//! in `halo-app`; this file only picks the allocator and the service.

use halo_app::Service;
use std::process::ExitCode;

/// mimalloc rather than glibc malloc: request handling frees and allocates many small buffers
/// across worker threads, and glibc's consolidation showed in every heartbeat's profile
/// (A/B with `bins/loadgen` on 2 cores: +5-10 % heartbeats/s; peak RSS at 10k simulated mitras
/// 41 MiB instead of 24 MiB, within the 64 MiB budget).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    halo_app::cli::run(Service::Public).await
}
