//! Probes and metrics. `/readyz` is ready while Postgres answers; a Valkey outage is reported as
//! "degraded" (the product still works from Postgres), never as not ready.

use crate::AppState;
use actix_web::{get, web, HttpResponse};
use futures_util::future::join;
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
pub struct Readiness {
    status: &'static str,
    service: &'static str,
    postgres: &'static str,
    valkey: &'static str,
}

const fn up(ok: bool) -> &'static str {
    if ok {
        "up"
    } else {
        "down"
    }
}

/// Postgres answers (Valkey down is "degraded", still ready).
#[utoipa::path(tag = "probes", responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let availability = &state.availability;
    let (postgres, valkey) = join(availability.truth().ping(), availability.mirror().ping()).await;
    let (postgres, valkey) = (postgres.is_ok(), valkey.is_ok());
    let status = match (postgres, valkey) {
        (true, true) => "ready",
        (true, false) => "degraded",
        (false, _) => "not_ready",
    };
    let body = Readiness {
        status,
        service: state.service,
        postgres: up(postgres),
        valkey: up(valkey),
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
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.render())
}
