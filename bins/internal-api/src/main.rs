//! `internal-api`: the control centre's API (default), operator administration
//! (`internal-api create-operator --email … --password …`), `internal-api migrate` (apply the
//! migrations and exit), or `internal-api healthcheck` (the image's probe).

use clap::{Parser, Subcommand};
use halo_app::{
    create_operator, healthcheck, migrate_from_env, serve_from_env, start_from_env, Service,
};
use std::process::ExitCode;

/// mimalloc rather than glibc malloc: request handling frees and allocates many small buffers
/// across worker threads, and glibc's consolidation showed in every heartbeat's profile
/// (A/B with `bins/loadgen` on 2 cores: +5-10 % heartbeats/s; peak RSS at 10k simulated mitras
/// 41 MiB instead of 24 MiB, within the 64 MiB budget).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "internal-api",
    version = halo_build_info::LONG_VERSION,
    about = "Control-centre API of the availability backend"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the internal API (the default).
    Serve,
    /// Apply pending database migrations (no statement timeout) and exit; needs only
    /// DATABASE_URL.
    Migrate,
    /// Exit 0 when the service on this container's port answers `/healthz` with 200.
    Healthcheck,
    /// Create an operator, or reset its password when the email exists.
    CreateOperator {
        #[arg(long)]
        email: String,
        /// At least 12 characters. Prefer `--password-env` to keep it out of shell history.
        #[arg(long, required_unless_present = "password_env")]
        password: Option<String>,
        /// Name of an environment variable holding the password.
        #[arg(long)]
        password_env: Option<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command.unwrap_or(Command::Serve) {
        Command::Serve => serve_from_env(Service::Internal).await,
        Command::Migrate => migrate_from_env(Service::Internal).await,
        Command::Healthcheck => match start_from_env() {
            Ok(config) => healthcheck(&config, Service::Internal).await,
            Err(status) => status,
        },
        Command::CreateOperator {
            email,
            password,
            password_env,
        } => {
            let password =
                password.or_else(|| password_env.and_then(|name| std::env::var(name).ok()));
            create_operator_from_env(&email, password).await
        }
    }
}

async fn create_operator_from_env(email: &str, password: Option<String>) -> ExitCode {
    let config = match start_from_env() {
        Ok(config) => config,
        Err(status) => return status,
    };
    let Some(password) = password else {
        eprintln!("create-operator: no password given");
        return ExitCode::from(2);
    };
    match create_operator(&config, email, &password).await {
        Ok(id) => {
            println!("operator {email} ready (id {id})");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("create-operator: {error}");
            ExitCode::FAILURE
        }
    }
}
