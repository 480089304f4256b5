//! The internal API (control centre, role cc): mitras, reroute, config, dashboard, mirror.

use crate::dto;
use crate::error::{ApiError, ErrorCode};
use crate::extract::Operator;
use crate::AppState;
use actix_web::{get, patch, post, web, HttpResponse};
use halo_core::{MitraView, SeedReason};
use halo_domain::{MitraId, Phone, SettingKey};
use halo_ports::OnlineReason;
use time::OffsetDateTime;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

type Reply = Result<HttpResponse, ApiError>;

const MAX_PER_PAGE: u32 = 100;
const MAX_HISTORY: u32 = 500;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(login)
        .service(list_mitras)
        .service(create_mitra)
        .service(patch_mitra)
        .service(force_offline)
        .service(reroute)
        .service(get_config)
        .service(patch_config)
        .service(config_history)
        .service(dashboard)
        .service(drift)
        .service(reseed);
}

#[utoipa::path(tag = "operator", request_body = dto::LoginBody, responses((status = 200, body = dto::Tokens)), extensions(("x-error-codes" = json!(["INVALID_CREDENTIALS", "RATE_LIMITED", "STORE_UNAVAILABLE"]))))]
#[post("/internal/auth/login")]
async fn login(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    body: web::Json<dto::LoginBody>,
) -> Reply {
    // Postgres text cannot hold NUL: such an email is refused here, not by a failing query.
    if body.email.contains('\0') || body.email.chars().count() > dto::MAX_EMAIL_CHARS {
        return Err(ApiError::new(
            ErrorCode::ValidationFailed,
            format!("email: at most {} characters, no NUL", dto::MAX_EMAIL_CHARS),
        ));
    }
    let limiter = &state.limiter;
    limiter
        .check(
            halo_domain::LimitedAction::OperatorLoginPerAddress,
            &state.client_address(&req),
        )
        .await?;
    limiter
        .check(
            halo_domain::LimitedAction::OperatorLoginPerEmail,
            &body.email.trim().to_lowercase(),
        )
        .await?;
    let pair = state
        .auth
        .operator_login(&body.email, &body.password)
        .await?;
    Ok(HttpResponse::Ok().json(dto::Tokens::from(pair)))
}

/// What the operators see of a mitra: its directory row and live state.
fn view_of(mitra: MitraView, now: OffsetDateTime) -> dto::MitraView {
    let MitraView { row, live } = mitra;
    dto::MitraView {
        id: row.id.uuid(),
        phone: row.phone,
        display_name: row.display_name,
        is_active: row.active,
        deactivated: !row.active,
        is_online: live.online,
        heartbeat_age_seconds: live.last_heartbeat.map(|at| (now - at).whole_seconds()),
        active_sessions: live.open_sessions,
    }
}

#[utoipa::path(tag = "operator", security(("bearer" = ["cc"])), params(dto::Page), responses((status = 200, body = dto::MitraList)), extensions(("x-error-codes" = json!(["STORE_UNAVAILABLE"]))))]
#[get("/internal/mitras")]
async fn list_mitras(
    state: web::Data<AppState>,
    _op: Operator,
    page: web::Query<dto::Page>,
) -> Reply {
    let per_page = page.per_page.unwrap_or(20).clamp(1, MAX_PER_PAGE);
    let number = page.page.unwrap_or(1).max(1);
    let offset = (number - 1).saturating_mul(per_page);
    let page_of_mitras = state.admin.page(offset, per_page).await?;
    let now = OffsetDateTime::now_utc();
    let views = page_of_mitras
        .mitras
        .into_iter()
        .map(|mitra| view_of(mitra, now))
        .collect();
    Ok(HttpResponse::Ok().json(dto::MitraList {
        mitras: views,
        page: number,
        per_page,
        total: page_of_mitras.total,
    }))
}

#[utoipa::path(tag = "operator", security(("bearer" = ["cc"])), request_body = dto::NewMitra, responses((status = 201, body = dto::MitraView)), extensions(("x-error-codes" = json!(["CONFLICT", "STORE_UNAVAILABLE"]))))]
#[post("/internal/mitras")]
async fn create_mitra(
    state: web::Data<AppState>,
    _op: Operator,
    body: web::Json<dto::NewMitra>,
) -> Reply {
    let phone = Phone::parse(&body.phone)
        .map_err(|e| ApiError::new(ErrorCode::ValidationFailed, format!("phone: {e}")))?;
    let name = display_name(&body.display_name)?;
    let view = view_of(
        state.admin.create(&phone, name).await?,
        OffsetDateTime::now_utc(),
    );
    Ok(HttpResponse::Created().json(view))
}

/// The stored form of a display name (see `dto::NewMitra`): 1 to 100 characters, no control
/// character, not only whitespace; trimmed.
pub(crate) fn display_name(raw: &str) -> Result<&str, ApiError> {
    let valid = (1..=dto::MAX_DISPLAY_NAME_CHARS).contains(&raw.chars().count())
        && !raw.chars().any(char::is_control)
        && raw.chars().any(|c| !c.is_whitespace());
    if valid {
        Ok(raw.trim())
    } else {
        Err(ApiError::new(
            ErrorCode::ValidationFailed,
            format!(
                "display_name: 1 to {} characters, not only whitespace, no control characters",
                dto::MAX_DISPLAY_NAME_CHARS
            ),
        ))
    }
}

#[utoipa::path(tag = "operator", security(("bearer" = ["cc"])), params(("id" = Uuid, Path)), request_body = dto::MitraPatch, responses((status = 200, body = dto::MitraView)), extensions(("x-error-codes" = json!(["NOT_FOUND", "STORE_UNAVAILABLE"]))))]
#[patch("/internal/mitras/{id}")]
async fn patch_mitra(
    state: web::Data<AppState>,
    _op: Operator,
    id: web::Path<Uuid>,
    body: web::Json<dto::MitraPatch>,
) -> Reply {
    let mitra = state
        .admin
        .set_active(MitraId::new(*id), body.is_active)
        .await?;
    Ok(HttpResponse::Ok().json(view_of(mitra, OffsetDateTime::now_utc())))
}

#[utoipa::path(tag = "operator", security(("bearer" = ["cc"])), params(("id" = Uuid, Path)), responses((status = 200, body = dto::Online)), extensions(("x-error-codes" = json!(["NOT_FOUND", "STORE_UNAVAILABLE"]))))]
#[post("/internal/mitras/{id}/offline")]
async fn force_offline(state: web::Data<AppState>, _op: Operator, id: web::Path<Uuid>) -> Reply {
    state
        .availability
        .set_offline(MitraId::new(*id), OnlineReason::Operator)
        .await?;
    Ok(HttpResponse::Ok().json(dto::Online { is_online: false }))
}

#[utoipa::path(tag = "operator", security(("bearer" = ["cc"])), params(("id" = Uuid, Path)), request_body = dto::RerouteBody, responses((status = 200, body = dto::Session)), extensions(("x-error-codes" = json!(["NOT_FOUND", "BESTIE_UNAVAILABLE", "INVALID_STATE", "STORE_UNAVAILABLE"]))))]
#[post("/internal/chat/sessions/{id}/reroute")]
async fn reroute(
    state: web::Data<AppState>,
    _op: Operator,
    id: web::Path<Uuid>,
    body: web::Json<dto::RerouteBody>,
) -> Reply {
    let moved = state
        .chat
        .reroute(*id, MitraId::new(body.mitra_id), body.force)
        .await?;
    Ok(HttpResponse::Ok().json(dto::Session::from(moved)))
}

#[utoipa::path(tag = "operator", security(("bearer" = ["cc"])), responses((status = 200, body = dto::Settings)), extensions(("x-error-codes" = json!(["STORE_UNAVAILABLE"]))))]
#[get("/internal/config")]
async fn get_config(state: web::Data<AppState>, _op: Operator) -> Reply {
    let settings = state.availability.stored_settings().await?;
    Ok(HttpResponse::Ok().json(dto::Settings::from(settings)))
}

/// Who changed which setting from what to what, newest first.
#[utoipa::path(tag = "operator", security(("bearer" = ["cc"])), params(dto::HistoryQuery), responses((status = 200, body = dto::SettingsHistory)), extensions(("x-error-codes" = json!(["VALIDATION_FAILED", "STORE_UNAVAILABLE"]))))]
#[get("/internal/config/history")]
async fn config_history(
    state: web::Data<AppState>,
    _op: Operator,
    query: web::Query<dto::HistoryQuery>,
) -> Reply {
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_HISTORY).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::ValidationFailed,
            format!("limit: must be between 1 and {MAX_HISTORY}"),
        ));
    }
    let changes = state.availability.settings_history(limit).await?;
    Ok(HttpResponse::Ok().json(dto::SettingsHistory {
        changes: changes.into_iter().map(dto::SettingChange::from).collect(),
    }))
}

/// Body: an object of setting → integer. Unknown keys and non-integers are 422 naming the field.
#[utoipa::path(tag = "operator", security(("bearer" = ["cc"])), request_body = dto::SettingsPatch, responses((status = 200, body = dto::Settings)), extensions(("x-error-codes" = json!(["STORE_UNAVAILABLE"]))))]
#[patch("/internal/config")]
async fn patch_config(
    state: web::Data<AppState>,
    op: Operator,
    body: web::Json<serde_json::Map<String, serde_json::Value>>,
) -> Reply {
    if body.is_empty() {
        return Err(ApiError::new(
            ErrorCode::ValidationFailed,
            "no setting to change",
        ));
    }
    let mut changes = Vec::with_capacity(body.len());
    for (name, value) in body.iter() {
        let key: SettingKey = name.parse().map_err(|_| {
            ApiError::new(
                ErrorCode::ValidationFailed,
                format!("{name}: unknown setting"),
            )
        })?;
        let number = value
            .as_number()
            .and_then(dto::whole_number)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::ValidationFailed,
                    format!("{name}: must be an integer"),
                )
            })?;
        changes.push((key, number));
    }
    let settings = state.availability.update_settings(changes, op.id).await?;
    Ok(HttpResponse::Ok().json(dto::Settings::from(settings)))
}

#[utoipa::path(tag = "operator", security(("bearer" = ["cc"])), responses((status = 200, body = dto::DashboardStats)), extensions(("x-error-codes" = json!(["STORE_UNAVAILABLE"]))))]
#[get("/internal/dashboard/stats")]
async fn dashboard(state: web::Data<AppState>, _op: Operator) -> Reply {
    Ok(HttpResponse::Ok().json(dto::DashboardStats {
        online_mitras: state.availability.dashboard_online_count().await?,
        available_mitras: state.availability.find_available_mitras().await?.len(),
        active_sessions: state.chat.active_sessions().await?,
    }))
}

#[utoipa::path(tag = "operator", security(("bearer" = ["cc"])), responses((status = 200, body = dto::Drift)), extensions(("x-error-codes" = json!(["STORE_UNAVAILABLE"]))))]
#[get("/internal/mirror/drift")]
async fn drift(state: web::Data<AppState>, _op: Operator) -> Reply {
    Ok(HttpResponse::Ok().json(dto::Drift::from(state.availability.drift_report().await?)))
}

#[utoipa::path(tag = "operator", security(("bearer" = ["cc"])), responses((status = 200, body = dto::Seeded)), extensions(("x-error-codes" = json!(["STORE_UNAVAILABLE"]))))]
#[post("/internal/mirror/reseed")]
async fn reseed(state: web::Data<AppState>, _op: Operator) -> Reply {
    let report = state
        .availability
        .seed_from_postgres(SeedReason::Operator)
        .await?;
    Ok(HttpResponse::Ok().json(dto::Seeded::from(report)))
}
