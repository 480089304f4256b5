//! The command line both binaries share: `serve` (the default), `migrate`, `healthcheck`, and
//! (internal-api only) `create-operator`.

use crate::{
    create_operator, healthcheck, migrate_from_env, serve_from_env, start_from_env, Service,
};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(version = halo_build_info::LONG_VERSION)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply pending database migrations (no statement timeout) and exit; needs only
    /// DATABASE_URL.
    Migrate,
    /// Exit 0 when the service on this container's port answers `/healthz` with 200.
    Healthcheck,
    /// Create an operator, or reset its password when the email exists (internal-api only).
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

/// Parses the arguments and runs the command for `service`; the process's exit status (2 for
/// bad arguments or configuration).
pub async fn run(service: Service) -> ExitCode {
    let about = match service {
        Service::Public => "Apps' API of the availability backend",
        Service::Internal => "Control-centre API of the availability backend",
    };
    let mut command = Cli::command().name(service.name()).about(about);
    if service == Service::Public {
        command = command.mut_subcommand("create-operator", |sub| sub.hide(true));
    }
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let command = cli.command.unwrap_or(Command::Serve);
    match command {
        Command::Serve => return serve_from_env(service).await,
        Command::Migrate => return migrate_from_env(service).await,
        Command::CreateOperator { .. } if service == Service::Public => {
            eprintln!("create-operator: run it with internal-api");
            return ExitCode::from(2);
        }
        _ => {}
    }
    let config = match start_from_env() {
        Ok(config) => config,
        Err(status) => return status,
    };
    match command {
        Command::Serve => serve_from_env(service).await,
        Command::Healthcheck => healthcheck(&config, service).await,
        Command::Migrate => migrate_from_env(service).await,
        Command::CreateOperator {
            email,
            password,
            password_env,
        } => operator(&config, &email, password, password_env).await,
    }
}

async fn operator(
    config: &halo_config::Config,
    email: &str,
    password: Option<String>,
    password_env: Option<String>,
) -> ExitCode {
    let password = password.or_else(|| password_env.and_then(|name| std::env::var(name).ok()));
    let Some(password) = password else {
        eprintln!("create-operator: no password given");
        return ExitCode::from(2);
    };
    match create_operator(config, email, &password).await {
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
