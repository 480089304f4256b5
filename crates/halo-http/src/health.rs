//! Probes and metrics. `/readyz` is ready while Postgres answers; a Valkey outage is reported as
//! "degraded" (the product still works from Postgres), never as not ready.

use crate::AppState;
use actix_web::{web, HttpResponse};
use futures_util::future::join;
use serde::Serialize;

#[derive(Serialize)]
struct Health {
    status: &'static str,
    service: &'static str,
}

pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok",
        service: state.service,
    })
}

#[derive(Serialize)]
struct Readiness {
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

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.render())
}
