//! The HTTP edge shared by both services. Only this crate knows JSON wire shapes and HTTP status
//! codes: use-case errors are mapped to `{"error":{"code","message"}}` here and nowhere else.

mod dto;
mod error;
mod extract;
mod health;
mod internal;
mod observe;
mod public;

pub use error::{ApiError, ErrorCode};
pub use observe::observe;

use actix_web::web;
use halo_auth::Auth;
use halo_core::{Availability, Chat};
use halo_metrics::Metrics;
use std::sync::Arc;

/// Request bodies above this size are refused with 413 before any handler runs.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Shared state of one service instance.
#[derive(Clone)]
pub struct AppState {
    pub availability: Arc<Availability>,
    pub chat: Arc<Chat>,
    pub auth: Arc<Auth>,
    pub metrics: Metrics,
    /// "public-api" or "internal-api", reported by the probes.
    pub service: &'static str,
}

/// Routes every service serves: probes, metrics, JSON errors for bad bodies and unknown paths.
pub fn configure_common(cfg: &mut web::ServiceConfig) {
    cfg.app_data(error::json_config())
        .app_data(error::path_config())
        .app_data(error::query_config())
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(health::metrics))
        .default_service(web::to(error::not_found));
}

/// The public API (apps).
pub fn configure_public(cfg: &mut web::ServiceConfig) {
    public::configure(cfg);
    configure_common(cfg);
}

/// The internal API (control centre).
pub fn configure_internal(cfg: &mut web::ServiceConfig) {
    internal::configure(cfg);
    configure_common(cfg);
}
