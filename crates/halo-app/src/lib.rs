//! The composition root shared by both binaries and the tests: picks the adapters, builds the
//! availability core, seeds the mirror before serving, spawns the background work, and runs the
//! HTTP server until SIGTERM or SIGINT (both graceful: in-flight requests finish, then the
//! background tasks stop).

mod healthcheck;
mod operators;
mod telemetry;

pub use healthcheck::{check_health, healthcheck, HealthcheckError};
pub use operators::{create_operator, OperatorError};
pub use telemetry::{init_tracing, init_tracing_and_export, Telemetry, TelemetryError};

use actix_web::dev::{Server, ServerHandle};
use actix_web::{middleware, web, App, HttpServer};
use halo_auth::{Auth, AuthSettings, LogOtpSender, TokenKeys};
use halo_config::Config;
use halo_core::{
    spawn_background, Availability, Cadences, Chat, DevPayments, SeedReason, SettingsCache,
};
use halo_http::AppState;
use halo_metrics::Metrics;
use halo_ports::{AvailabilityTruth, SystemClock};
use halo_postgres::{PgAuth, PgChat, PgTruth, PoolSettings};
use halo_valkey::{InvalidationEvent, Keys, ValkeyMirror, ValkeySettings};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use utoipa_actix_web::AppExt;

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

/// How long start-up waits for Postgres (a fresh cluster may still be starting).
const POSTGRES_STARTUP_WAIT: Duration = Duration::from_secs(30);
const SETTINGS_REFRESH: Duration = Duration::from_secs(30);
const SHUTDOWN_GRACE_SECONDS: u64 = 30;

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

/// A built, listening service.
pub struct Application {
    port: u16,
    /// public-api's admin listener (`/metrics`); 0 for internal-api, which serves them on
    /// `port`.
    metrics_port: u16,
    server: Server,
    availability: Arc<Availability>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Application {
    /// Connects, migrates, seeds and binds. Port 0 in the config picks a free port (tests).
    pub async fn build(config: &Config, service: Service) -> Result<Self, StartupError> {
        let metrics = Metrics::new();
        metrics.build_info(halo_build_info::VERSION, halo_build_info::GIT_REVISION);
        let pool = halo_postgres::connect_pool(
            config.database_url.expose(),
            &PoolSettings {
                max_size: config.pg_pool_size,
                timeout: config.pg_timeout,
            },
        )?;
        if config.migrate_on_start {
            migrate_when_reachable(&pool).await?;
        } else {
            check_schema_when_reachable(&pool, service).await?;
        }
        let observed = pool.clone();
        metrics.before_render(move |metrics| {
            let status = observed.status();
            metrics.pg_pool(
                status.size,
                status.available,
                status.waiting,
                status.max_size,
            );
        });
        let truth = Arc::new(PgTruth::new(pool.clone(), metrics.clone()));
        let valkey = ValkeySettings {
            url: config.valkey_url.expose().to_owned(),
            key_prefix: config.valkey_key_prefix.clone(),
            timeout: config.valkey_timeout,
            cluster: config.valkey_cluster,
            ca_cert: config.valkey_ca_cert.clone(),
        };
        let (subscriber, connection) = halo_valkey::connect(&valkey)?;
        let keys = Keys::new(valkey.key_prefix.clone());
        let channel = keys.config_channel();
        let mirror = Arc::new(ValkeyMirror::new(
            connection,
            keys,
            valkey.timeout,
            metrics.clone(),
        ));
        let settings = SettingsCache::new(
            truth
                .load_settings()
                .await
                .map_err(StartupError::Settings)?,
        );
        let clock = instance_clock(config);
        let availability = Arc::new(
            Availability::new(
                truth,
                mirror.clone(),
                clock.clone(),
                settings,
                metrics.clone(),
            )
            .with_postgres_heartbeat_lag(config.heartbeat_mirror_interval),
        );

        // Seed before serving; with Valkey down, start degraded and let the watcher reseed.
        if let Err(error) = availability.seed_from_postgres(SeedReason::Startup).await {
            tracing::warn!(error = %error, "start-up seed failed; serving from postgres until valkey answers");
        }

        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = spawn_background(availability.clone(), &cadences(config), &shutdown_rx);
        let listener_target = availability.clone();
        tasks.push(halo_valkey::spawn_invalidation_listener(
            subscriber,
            channel,
            config.valkey_timeout,
            shutdown_rx,
            move |event: InvalidationEvent| {
                let availability = listener_target.clone();
                tracing::debug!(?event, "config invalidation");
                tokio::spawn(async move { availability.on_config_invalidated().await });
            },
        ));

        let chat = Arc::new(Chat::new(
            Arc::new(PgChat::new(pool.clone(), metrics.clone())),
            availability.clone(),
            Arc::new(DevPayments::default()),
        ));
        tasks.push(spawn_timer_loop(chat.clone(), shutdown.subscribe()));
        let auth = Arc::new(Auth::new(
            Arc::new(PgAuth::new(pool, metrics.clone())),
            Arc::new(LogOtpSender {
                reveal_code: config.app_env != halo_config::AppEnv::Production,
            }),
            TokenKeys::new(
                config.auth_jwt_secret.expose().as_bytes(),
                config.access_token_ttl,
            ),
            clock.clone(),
            AuthSettings {
                refresh_ttl: config.refresh_token_ttl,
                dev_code: config.otp_dev_code.clone(),
            },
        ));

        let limiter = Arc::new(halo_core::Limiter::new(
            mirror.clone(),
            availability.clone(),
            config.rate_limits.clone(),
        ));
        let state = AppState {
            availability: availability.clone(),
            chat,
            auth,
            metrics,
            service: service.name(),
            build: halo_http::Build {
                version: halo_build_info::VERSION,
                git_revision: halo_build_info::GIT_REVISION,
            },
            limiter,
            client_address_header: config.client_address_header.clone(),
            slow_request: config.log_slow_request,
            trace_export: config.trace_export.is_some(),
            metrics_port: Arc::new(AtomicU16::new(0)),
        };
        let metrics_port = state.metrics_port.clone();
        let port = service.port(config);
        let cc_origin = config.cc_origin.clone();
        let http = HttpServer::new(move || {
            // The factory runs on each worker thread (again if actix restarts the worker or its
            // services): the hot paths' Valkey commands are then driven on the thread that sends
            // them.
            mirror.bind_connection_to_current_thread();
            let configure = match service {
                Service::Public => halo_http::configure_public,
                Service::Internal => halo_http::configure_internal,
            };
            let (app, api) = App::new()
                .into_utoipa_app()
                .configure(configure)
                .split_for_parts();
            let cors = match service {
                Service::Public => actix_cors::Cors::default(),
                Service::Internal => cors_for(cc_origin.as_deref()),
            };
            app.app_data(web::Data::new(state.clone()))
                .configure(|cfg| halo_http::serve_openapi(cfg, api, service.name()))
                .wrap(cors)
                .wrap(middleware::from_fn(halo_http::observe))
        })
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_GRACE_SECONDS)
        .bind((config.bind_addr, port))
        .map_err(StartupError::Bind)?;
        let port = http.addrs().first().map_or(port, |a| a.port());
        // public-api's metrics get a listener of their own (loopback by default).
        let http = match service {
            Service::Public => {
                let http = http
                    .bind((config.metrics_bind_addr, config.metrics_port))
                    .map_err(StartupError::Bind)?;
                let bound = http
                    .addrs()
                    .get(1)
                    .map_or(config.metrics_port, |a| a.port());
                metrics_port.store(bound, Ordering::Relaxed);
                tracing::info!(addr = %config.metrics_bind_addr, port = bound, "metrics listening");
                http
            }
            Service::Internal => http,
        };
        tracing::info!(service = service.name(), addr = %config.bind_addr, port, "listening");
        Ok(Self {
            port,
            metrics_port: metrics_port.load(Ordering::Relaxed),
            server: http.run(),
            availability,
            shutdown,
            tasks,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where `/metrics` answers: the admin listener (public-api) or the service port.
    pub fn metrics_port(&self) -> u16 {
        if self.metrics_port == 0 {
            self.port
        } else {
            self.metrics_port
        }
    }

    pub fn availability(&self) -> Arc<Availability> {
        self.availability.clone()
    }

    /// Serves until SIGTERM or SIGINT, then stops gracefully.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let mut server = tokio::spawn(self.server);
        tokio::select! {
            result = &mut server => {
                stop_background(self.shutdown, self.tasks).await;
                return result.unwrap_or_else(|e| Err(std::io::Error::other(e)));
            }
            () = termination_signal() => tracing::info!("shutting down: finishing in-flight requests"),
        }
        finish(handle, server, self.shutdown, self.tasks).await
    }

    /// Runs in the background and returns a handle to stop it (tests).
    pub fn spawn(self) -> RunningApplication {
        let handle = self.server.handle();
        RunningApplication {
            metrics_port: self.metrics_port(),
            port: self.port,
            availability: self.availability,
            handle,
            server: tokio::spawn(self.server),
            shutdown: self.shutdown,
            tasks: self.tasks,
        }
    }
}

/// A service serving in the background.
pub struct RunningApplication {
    pub port: u16,
    /// Where `/metrics` answers (see `Application::metrics_port`).
    pub metrics_port: u16,
    pub availability: Arc<Availability>,
    handle: ServerHandle,
    server: JoinHandle<std::io::Result<()>>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningApplication {
    /// Graceful stop, as on SIGTERM.
    pub async fn stop(self) -> std::io::Result<()> {
        finish(self.handle, self.server, self.shutdown, self.tasks).await
    }
}

async fn finish(
    handle: ServerHandle,
    server: JoinHandle<std::io::Result<()>>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
) -> std::io::Result<()> {
    handle.stop(true).await;
    let result = server
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    stop_background(shutdown, tasks).await;
    tracing::info!("stopped");
    result
}

async fn stop_background(shutdown: watch::Sender<bool>, tasks: Vec<JoinHandle<()>>) {
    let _ = shutdown.send(true);
    for task in tasks {
        let _ = task.await;
    }
}

async fn termination_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// How often due chat timers (blast, payment, session end) are applied, and unsettled payments
/// refunded. Every instance runs it; the store claims due rows with SKIP LOCKED, so none is
/// processed twice (a refund twice is a no-op: refunds are idempotent per charge key).
const TIMER_TICK: Duration = Duration::from_secs(1);

fn spawn_timer_loop(chat: Arc<Chat>, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TIMER_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            match chat.expire_due().await {
                Ok(0) => {}
                Ok(moved) => tracing::info!(moved, "chat timers applied"),
                Err(error) => tracing::warn!(error = %error, "chat timer tick failed"),
            }
            match chat.settle_payments().await {
                Ok(0) => {}
                Ok(settled) => tracing::info!(settled, "unsettled payments refunded"),
                Err(error) => tracing::warn!(error = %error, "payment sweep failed"),
            }
        }
    })
}

/// The wall clock, or (tests only, see `HALO_TEST_CLOCK_OFFSET_SECONDS`) a skewed one.
fn instance_clock(config: &Config) -> Arc<dyn halo_ports::Clock> {
    match config.clock_offset_seconds {
        0 => Arc::new(SystemClock),
        offset => {
            tracing::warn!(offset, "this instance's clock is skewed on purpose (test)");
            Arc::new(halo_ports::SkewedClock::by_seconds(offset))
        }
    }
}

fn cadences(config: &Config) -> Cadences {
    Cadences {
        auto_offline: config.auto_offline_sweep,
        heartbeat_mirror: config.heartbeat_mirror_interval,
        reconciliation: config.reconciliation_sweep,
        mirror_watch: config.mirror_watch_interval,
        settings_refresh: SETTINGS_REFRESH,
    }
}

/// CORS for the control centre's origin only; no origin configured = no cross-origin access.
fn cors_for(origin: Option<&str>) -> actix_cors::Cors {
    let cors = actix_cors::Cors::default()
        .allowed_methods(["GET", "POST", "PATCH", "PUT", "DELETE"])
        .allowed_headers([
            actix_web::http::header::AUTHORIZATION,
            actix_web::http::header::CONTENT_TYPE,
        ])
        .max_age(600);
    match origin {
        Some(origin) => cors.allowed_origin(origin),
        None => cors,
    }
}

/// Migrates, waiting up to [`POSTGRES_STARTUP_WAIT`] for Postgres to be reachable. A TLS
/// refusal (wrong CA, wrong host name) is final and stops at once.
async fn migrate_when_reachable(pool: &halo_postgres::Pool) -> Result<(), StartupError> {
    when_reachable(|| halo_postgres::migrate(pool))
        .await
        .map_err(StartupError::Migrate)
}

/// `MIGRATE_ON_START=false`: someone else migrates (a deploy's migration job). Serving on a
/// schema older than this build's would fail requests at random, so start-up stops instead; a
/// schema *newer* than the build (a rollback of the binary) is served, with a warning, since
/// migrations are written to be compatible with the previous release.
async fn check_schema_when_reachable(
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

/// An error and its causes on one line (`a: b: c`), skipping a cause whose text the outer
/// message already carries.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
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
