//! The HTTP edge shared by both services. Only this crate knows JSON wire shapes and HTTP status
//! codes: use-case errors are mapped to `{"error":{"code","message"}}` here and nowhere else.

mod dto;
mod error;
mod events;
mod extract;
mod health;
mod internal;
mod observe;
mod openapi;
mod public;

pub use error::{ApiError, ErrorCode};
pub use observe::observe;
pub use openapi::serve_openapi;

use actix_web::web;
use halo_auth::Auth;
use halo_core::{Availability, Chat, Events, Limiter, MitraAdmin};
use halo_metrics::Metrics;
use std::sync::Arc;
use utoipa_actix_web::service_config::ServiceConfig;

/// Request bodies above this size are refused with 413 before any handler runs.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Shared state of one service instance.
#[derive(Clone)]
pub struct AppState {
    pub availability: Arc<Availability>,
    pub chat: Arc<Chat>,
    /// The apps' event streams (`GET /api/{mitra,client}/events`).
    pub events: Arc<Events>,
    pub admin: Arc<MitraAdmin>,
    pub auth: Arc<Auth>,
    pub metrics: Metrics,
    /// "public-api" or "internal-api", reported by the probes.
    pub service: &'static str,
    /// What `GET /version` reports.
    pub build: Build,
    pub limiter: Arc<Limiter>,
    /// The header the trusted balancer writes the caller's address into (lower case), if any.
    pub client_address_header: Option<String>,
    /// Requests slower than this are logged at WARN (`LOG_SLOW_REQUEST_MS`).
    pub slow_request: std::time::Duration,
    /// The event streams' comment ping (`SSE_PING_INTERVAL_MS`).
    pub sse_ping: std::time::Duration,
    /// Spans are exported (OTLP): the request span then continues the caller's trace in
    /// OpenTelemetry too, and the logs take its trace id.
    pub trace_export: bool,
    /// The port of the admin listener that serves public-api's `/metrics` (0: none); set once
    /// the listener is bound.
    pub metrics_port: Arc<std::sync::atomic::AtomicU16>,
}

/// The build a service runs (filled by the composition root, so this crate is not rebuilt for
/// every commit).
#[derive(Clone, Copy, Debug)]
pub struct Build {
    pub version: &'static str,
    pub git_revision: &'static str,
}

impl AppState {
    /// The caller's address for the per-address limits: the last entry of the configured
    /// header (the one the trusted balancer appended; entries before it are the caller's own
    /// words), else the TCP peer. Never a header nobody configured.
    pub fn client_address(&self, req: &actix_web::HttpRequest) -> String {
        let from_header = self.client_address_header.as_deref().and_then(|name| {
            let value = req.headers().get(name)?.to_str().ok()?;
            let last = value.rsplit(',').next()?.trim();
            last.parse::<std::net::IpAddr>().ok()
        });
        from_header
            .or_else(|| req.peer_addr().map(|peer| peer.ip()))
            .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
    }
}

/// Routes every service serves: probes, metrics, JSON errors for bad bodies and unknown paths.
/// Registered through `utoipa_actix_web`, so the OpenAPI document is collected from the very
/// calls that register the routes and cannot drift from them.
pub fn configure_common(cfg: &mut ServiceConfig) {
    cfg.app_data(error::json_config())
        .app_data(error::path_config())
        .app_data(error::query_config())
        .service(health::healthz)
        .service(health::readyz)
        .service(health::version)
        .default_service(web::to(error::unrouted));
}

/// The public API (apps). Its `/metrics` answers only on the admin listener
/// (`METRICS_PORT`, see `AppState::metrics_port`), never on the port the internet reaches, and
/// is left out of the API document.
pub fn configure_public(cfg: &mut ServiceConfig) {
    public::configure(cfg);
    cfg.map(|cfg| cfg.route("/metrics", web::get().to(health::admin_metrics)));
    configure_common(cfg);
}

/// The internal API (control centre), not exposed: it serves `/metrics` itself.
pub fn configure_internal(cfg: &mut ServiceConfig) {
    internal::configure(cfg);
    cfg.service(health::metrics);
    configure_common(cfg);
}
