//! `internal-api`: the control centre's API (default), operator administration
//! (`internal-api create-operator --email … --password …`), `internal-api migrate` (apply the
//! migrations and exit), or `internal-api healthcheck` (the image's probe). All wiring and the
//! command line live in `halo-app`.

use halo_app::Service;
use std::process::ExitCode;

/// The allocator public-api uses, for the reasons given there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    halo_app::cli::run(Service::Internal).await
}
