//! The HTTP server of one service: its routes, the API document, CORS, request observation,
//! and (public-api) the admin listener that serves `/metrics`.

use crate::{Service, StartupError};
use actix_web::dev::Server;
use actix_web::{middleware, web, App, HttpServer};
use halo_config::Config;
use halo_http::AppState;
use halo_valkey::ValkeyMirror;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use utoipa_actix_web::AppExt;

const SHUTDOWN_GRACE_SECONDS: u64 = 30;

/// A bound, not yet running, server.
pub(crate) struct BoundServer {
    pub server: Server,
    pub port: u16,
    /// public-api's admin listener; 0 for internal-api, which serves `/metrics` on `port`.
    pub metrics_port: u16,
}

/// Binds the service's port (and public-api's admin listener). Port 0 picks a free port.
pub(crate) fn bind(
    config: &Config,
    service: Service,
    state: AppState,
    mirror: Arc<ValkeyMirror>,
) -> Result<BoundServer, StartupError> {
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
    Ok(BoundServer {
        server: http.run(),
        port,
        metrics_port: metrics_port.load(Ordering::Relaxed),
    })
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
