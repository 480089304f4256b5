//! Start-up in named steps (stores, services, background, HTTP) and the run until a signal.

use crate::http::{self, BoundServer};
use crate::services::Services;
use crate::stores::Stores;
use crate::{Service, StartupError};
use actix_web::dev::{Server, ServerHandle};
use halo_config::Config;
use halo_core::{spawn_background, Availability, Cadences, Events, SeedReason};
use halo_http::AppState;
use halo_metrics::Metrics;
use halo_valkey::InvalidationEvent;
use std::sync::atomic::AtomicU16;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const SETTINGS_REFRESH: Duration = Duration::from_secs(30);
/// See `Cadences::chat_timers`.
const CHAT_TIMERS: Duration = Duration::from_secs(1);

/// A built, listening service.
pub struct Application {
    port: u16,
    /// public-api's admin listener (`/metrics`); 0 for internal-api, which serves them on
    /// `port`.
    metrics_port: u16,
    server: Server,
    availability: Arc<Availability>,
    events: Arc<Events>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Application {
    /// Connects, migrates, seeds and binds. Port 0 in the config picks a free port (tests).
    pub async fn build(config: &Config, service: Service) -> Result<Self, StartupError> {
        let metrics = Metrics::new();
        metrics.build_info(halo_build_info::VERSION, halo_build_info::GIT_REVISION);
        let stores = Stores::connect(config, service, &metrics).await?;
        let services = Services::build(config, &stores, &metrics).await?;
        // Seed before serving; with Valkey down, start degraded and let the watcher reseed.
        if let Err(error) = services
            .availability
            .seed_from_postgres(SeedReason::Startup)
            .await
        {
            tracing::warn!(error = %error, "start-up seed failed; serving from postgres until valkey answers");
        }
        let (shutdown, shutdown_rx) = watch::channel(false);
        let availability = services.availability.clone();
        let events = services.events.clone();
        let mirror = stores.mirror.clone();
        let tasks = start_background(config, service, &services, stores, &shutdown_rx);
        let state = app_state(config, service, services, metrics);
        let BoundServer {
            server,
            port,
            metrics_port,
        } = http::bind(config, service, state, mirror)?;
        Ok(Self {
            port,
            metrics_port,
            server,
            availability,
            events,
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
        finish(handle, server, &self.events, self.shutdown, self.tasks).await
    }

    /// Runs in the background and returns a handle to stop it (tests).
    pub fn spawn(self) -> RunningApplication {
        let handle = self.server.handle();
        RunningApplication {
            metrics_port: self.metrics_port(),
            port: self.port,
            availability: self.availability,
            events: self.events,
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
    events: Arc<Events>,
    handle: ServerHandle,
    server: JoinHandle<std::io::Result<()>>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningApplication {
    /// Graceful stop, as on SIGTERM.
    pub async fn stop(self) -> std::io::Result<()> {
        finish(
            self.handle,
            self.server,
            &self.events,
            self.shutdown,
            self.tasks,
        )
        .await
    }
}

async fn finish(
    handle: ServerHandle,
    server: JoinHandle<std::io::Result<()>>,
    events: &Events,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
) -> std::io::Result<()> {
    // Event streams never finish by themselves: end them first, or the graceful stop would
    // wait its whole timeout for them. The apps resume on another instance.
    events.close_streams();
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

/// Every background loop, started here only: the core's (sweeps, watcher, settings reload,
/// chat timers), the listener of `config:invalidate`, and on public-api (the only service with
/// event streams) the event pump, the event log's housekeeping and the listener of the pump's
/// wake-up channel.
fn start_background(
    config: &Config,
    service: Service,
    services: &Services,
    stores: Stores,
    shutdown: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = spawn_background(
        services.availability.clone(),
        services.chat.clone(),
        &cadences(config),
        shutdown,
    );
    if service == Service::Public {
        tasks.push(tokio::spawn(
            services.events.clone().run_pump(shutdown.clone()),
        ));
        // Apart from the pump, so that a beacon recompute or a prune never delays delivery.
        tasks.push(tokio::spawn(
            services.events.clone().run_housekeeping(shutdown.clone()),
        ));
        let events = services.events.clone();
        // A renewed subscription may have missed a message: both kinds wake the pump.
        tasks.push(halo_valkey::spawn_invalidation_listener(
            stores.subscriber.clone(),
            stores.events_channel,
            config.valkey_timeout,
            shutdown.clone(),
            move |_: InvalidationEvent| events.on_signal(),
        ));
    }
    let availability = services.availability.clone();
    tasks.push(halo_valkey::spawn_invalidation_listener(
        stores.subscriber,
        stores.config_channel,
        config.valkey_timeout,
        shutdown.clone(),
        move |event: InvalidationEvent| {
            let availability = availability.clone();
            tracing::debug!(?event, "config invalidation");
            tokio::spawn(async move { availability.on_config_invalidated().await });
        },
    ));
    tasks
}

/// What every handler gets.
fn app_state(config: &Config, service: Service, services: Services, metrics: Metrics) -> AppState {
    AppState {
        availability: services.availability,
        chat: services.chat,
        events: services.events,
        admin: services.admin,
        auth: services.auth,
        metrics,
        service: service.name(),
        build: halo_http::Build {
            version: halo_build_info::VERSION,
            git_revision: halo_build_info::GIT_REVISION,
        },
        limiter: services.limiter,
        client_address_header: config.client_address_header.clone(),
        slow_request: config.log_slow_request,
        sse_ping: config.sse_ping_interval,
        trace_export: config.trace_export.is_some(),
        metrics_port: Arc::new(AtomicU16::new(0)),
    }
}

fn cadences(config: &Config) -> Cadences {
    Cadences {
        auto_offline: config.auto_offline_sweep,
        heartbeat_mirror: config.heartbeat_mirror_interval,
        reconciliation: config.reconciliation_sweep,
        mirror_watch: config.mirror_watch_interval,
        settings_refresh: SETTINGS_REFRESH,
        chat_timers: CHAT_TIMERS,
    }
}
