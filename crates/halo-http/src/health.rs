//! Probes, the build's version and metrics. `/readyz` is ready while Postgres answers; a mirror that is not trusted
//! (Valkey down, unseeded, or behind) is reported as "degraded" with its state (the product
//! still works from Postgres), never as not ready.

use crate::AppState;
use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct Health {
    status: &'static str,
    service: &'static str,
}

/// The process is alive.
#[utoipa::path(tag = "probes", responses((status = 200, body = Health)))]
#[get("/healthz")]
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok",
        service: state.service,
    })
}

#[derive(Serialize, ToSchema)]
pub struct Version {
    service: &'static str,
    /// The workspace version of the binary.
    version: &'static str,
    /// The git revision it was built from ("unknown" when the build had none).
    git_revision: &'static str,
}

/// The build serving these requests.
#[utoipa::path(tag = "probes", responses((status = 200, body = Version)))]
#[get("/version")]
pub async fn version(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(Version {
        service: state.service,
        version: state.build.version,
        git_revision: state.build.git_revision,
    })
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    status: &'static str,
    service: &'static str,
    postgres: &'static str,
    valkey: &'static str,
    /// The mirror's health state: unseeded, trusted, behind or down.
    mirror: &'static str,
}

const fn up(ok: bool) -> &'static str {
    if ok {
        "up"
    } else {
        "down"
    }
}

/// Postgres answers (a mirror that is not trusted is "degraded", still ready).
#[utoipa::path(tag = "probes", responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let probe = state.availability.probe().await;
    let postgres = probe.postgres_up;
    let status = match (postgres, probe.mirror) {
        (false, _) => "not_ready",
        (true, halo_core::MirrorState::Trusted) => "ready",
        (true, _) => "degraded",
    };
    let body = Readiness {
        status,
        service: state.service,
        postgres: up(postgres),
        valkey: up(probe.valkey_up),
        mirror: probe.mirror.as_str(),
    };
    if postgres {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus text.
#[utoipa::path(tag = "probes", responses((status = 200, content_type = "application/openmetrics-text", body = String)))]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    prometheus_text(&state)
}

/// `/metrics` of public-api: only on its admin listener; on the public port it does not exist.
pub async fn admin_metrics(
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, crate::error::ApiError> {
    let admin_port = state
        .metrics_port
        .load(std::sync::atomic::Ordering::Relaxed);
    if admin_port != 0 && req.app_config().local_addr().port() == admin_port {
        Ok(prometheus_text(&state))
    } else {
        Err(crate::error::ApiError::new(
            crate::error::ErrorCode::NotFound,
            "no such route",
        ))
    }
}

fn prometheus_text(state: &AppState) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.render())
}
