//! The public API (apps): auth, mitra status and heartbeat, the beacon, chat sessions.

use crate::dto::{self, AppKind};
use crate::error::{ApiError, ErrorCode};
use crate::extract::{ActiveMitra, Caller, Customer, Mitra};
use crate::AppState;
use actix_web::{get, post, web, HttpResponse};
use halo_core::ChatError;
use halo_domain::{validate_minutes, LimitedAction, MitraId, Phone};
use halo_ports::{OnlineReason, Party};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

type Reply = Result<HttpResponse, ApiError>;

/// Registration order is lookup order: actix tries routes one by one (static ones by string
/// comparison, ones with `{…}` by regex), and so does the metrics label. The hot paths come
/// first, then the other static routes, then the parametrised ones.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(heartbeat)
        .service(beacon)
        .service(whoami)
        .service(mitra_status)
        .service(open_requests)
        .service(go_online)
        .service(go_offline)
        .service(chat_request)
        .service(crate::events::mitra_events)
        .service(crate::events::client_events)
        .service(auth_providers)
        .service(otp_request)
        .service(otp_verify)
        .service(refresh)
        .service(logout)
        .service(accept)
        .service(reject)
        .service(mitra_session)
        .service(mitra_end)
        .service(client_session)
        .service(pay)
        .service(extend)
        .service(client_end);
}

fn phone(raw: &str) -> Result<Phone, ApiError> {
    Phone::parse(raw).map_err(|e| ApiError::new(ErrorCode::ValidationFailed, format!("phone: {e}")))
}

fn minutes(raw: i64) -> Result<u32, ApiError> {
    validate_minutes(raw).map_err(|e| ApiError::new(ErrorCode::ValidationFailed, e.to_string()))
}

fn session(s: halo_ports::ChatSession) -> HttpResponse {
    HttpResponse::Ok().json(dto::Session::from(s))
}

#[utoipa::path(tag = "auth", responses((status = 200, body = dto::Providers)))]
#[get("/api/shared/auth-providers")]
async fn auth_providers() -> HttpResponse {
    HttpResponse::Ok().json(dto::Providers {
        providers: vec!["phone_otp"],
    })
}

/// Who the token says the caller is. No store I/O: the benchmarks use it as the ceiling of an
/// authenticated request on this server.
#[utoipa::path(tag = "auth", security(("bearer" = [])), responses((status = 200, body = dto::WhoAmI)))]
#[get("/api/shared/whoami")]
async fn whoami(caller: Caller) -> HttpResponse {
    HttpResponse::Ok().json(dto::WhoAmI {
        user_id: caller.0.user_id,
        role: caller.0.role.as_str(),
    })
}

#[utoipa::path(tag = "auth", params(("app" = inline(AppKind), Path)), request_body = dto::PhoneBody, responses((status = 200, body = dto::Ok)), extensions(("x-error-codes" = json!(["RATE_LIMITED", "STORE_UNAVAILABLE", "OTP_DELIVERY_FAILED"]))))]
#[post("/api/{app}/auth/otp/request")]
async fn otp_request(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    app: web::Path<AppKind>,
    body: web::Json<dto::PhoneBody>,
) -> Reply {
    let phone = phone(&body.phone)?;
    let limiter = &state.limiter;
    limiter
        .check(
            LimitedAction::OtpRequestPerAddress,
            &state.client_address(&req),
        )
        .await?;
    limiter
        .check(LimitedAction::OtpRequestPerPhone, phone.as_str())
        .await?;
    state.auth.request_otp(app.role(), &phone).await?;
    Ok(HttpResponse::Ok().json(dto::OK))
}

#[utoipa::path(tag = "auth", params(("app" = inline(AppKind), Path)), request_body = dto::VerifyBody, responses((status = 200, body = dto::LoginResponse)), extensions(("x-error-codes" = json!(["INVALID_OTP", "OTP_EXPIRED", "ACCOUNT_INACTIVE", "OTP_ATTEMPTS_EXCEEDED", "RATE_LIMITED", "STORE_UNAVAILABLE"]))))]
#[post("/api/{app}/auth/otp/verify")]
async fn otp_verify(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    app: web::Path<AppKind>,
    body: web::Json<dto::VerifyBody>,
) -> Reply {
    let phone = phone(&body.phone)?;
    let limiter = &state.limiter;
    limiter
        .check(
            LimitedAction::OtpVerifyPerAddress,
            &state.client_address(&req),
        )
        .await?;
    limiter
        .check(LimitedAction::OtpVerifyPerPhone, phone.as_str())
        .await?;
    let login = state
        .auth
        .verify_otp(app.role(), &phone, body.code.trim())
        .await?;
    Ok(HttpResponse::Ok().json(dto::LoginResponse {
        tokens: login.tokens.into(),
        user: dto::User {
            id: login.user.id,
            role: login.role.as_str(),
            display_name: login.user.display_name,
        },
    }))
}

#[utoipa::path(tag = "auth", params(("app" = inline(AppKind), Path)), request_body = dto::RefreshBody, responses((status = 200, body = dto::Tokens)), extensions(("x-error-codes" = json!(["SESSION_REVOKED", "STORE_UNAVAILABLE"]))))]
#[post("/api/{app}/auth/refresh")]
async fn refresh(
    state: web::Data<AppState>,
    app: web::Path<AppKind>,
    body: web::Json<dto::RefreshBody>,
) -> Reply {
    let pair = state.auth.refresh(app.role(), &body.refresh_token).await?;
    Ok(HttpResponse::Ok().json(dto::Tokens::from(pair)))
}

#[utoipa::path(tag = "auth", security(("bearer" = [])), params(("app" = inline(AppKind), Path)), responses((status = 200, body = dto::Ok)), extensions(("x-error-codes" = json!(["FORBIDDEN", "STORE_UNAVAILABLE"]))))]
#[post("/api/{app}/auth/logout")]
async fn logout(state: web::Data<AppState>, app: web::Path<AppKind>, caller: Caller) -> Reply {
    if caller.0.role != app.role() {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this route is for role {}", app.role()),
        ));
    }
    state.auth.logout(caller.0).await?;
    Ok(HttpResponse::Ok().json(dto::OK))
}

#[utoipa::path(tag = "availability", responses((status = 200, body = dto::Availability)), extensions(("x-error-codes" = json!(["STORE_UNAVAILABLE"]))))]
#[get("/public/bestie-availability")]
async fn beacon(state: web::Data<AppState>) -> Reply {
    let beacon = state.availability.count_available().await?;
    Ok(HttpResponse::Ok().json(dto::Availability {
        available: beacon.available(),
        count: beacon.count,
    }))
}

#[utoipa::path(tag = "mitra", security(("bearer" = ["mitra"])), responses((status = 200, body = dto::MitraStatus)), extensions(("x-error-codes" = json!(["NOT_FOUND", "STORE_UNAVAILABLE"]))))]
#[get("/api/mitra/status")]
async fn mitra_status(state: web::Data<AppState>, mitra: Mitra) -> Reply {
    let status = state.availability.mitra_status(mitra.id).await?;
    Ok(HttpResponse::Ok().json(dto::MitraStatus {
        is_online: status.online,
        last_heartbeat_at: status.last_heartbeat,
        active_sessions: status.open_sessions,
        max_customers: state
            .availability
            .settings()
            .get()
            .max_customers_per_mitra(),
    }))
}

#[utoipa::path(tag = "mitra", security(("bearer" = ["mitra"])), responses((status = 200, body = dto::Online)), extensions(("x-error-codes" = json!(["ACCOUNT_INACTIVE", "NOT_FOUND", "STORE_UNAVAILABLE"]))))]
#[post("/api/mitra/status/online")]
async fn go_online(state: web::Data<AppState>, mitra: ActiveMitra) -> Reply {
    state.availability.set_online(mitra.id).await?;
    Ok(HttpResponse::Ok().json(dto::Online { is_online: true }))
}

#[utoipa::path(tag = "mitra", security(("bearer" = ["mitra"])), responses((status = 200, body = dto::Online)), extensions(("x-error-codes" = json!(["ACCOUNT_INACTIVE", "NOT_FOUND", "STORE_UNAVAILABLE"]))))]
#[post("/api/mitra/status/offline")]
async fn go_offline(state: web::Data<AppState>, mitra: ActiveMitra) -> Reply {
    state
        .availability
        .set_offline(mitra.id, OnlineReason::Manual)
        .await?;
    Ok(HttpResponse::Ok().json(dto::Online { is_online: false }))
}

#[utoipa::path(tag = "mitra", security(("bearer" = ["mitra"])), responses((status = 200, body = dto::HeartbeatAck)), extensions(("x-error-codes" = json!(["ACCOUNT_INACTIVE", "NOT_FOUND", "STORE_UNAVAILABLE"]))))]
#[post("/api/mitra/status/heartbeat")]
async fn heartbeat(state: web::Data<AppState>, mitra: Mitra) -> Reply {
    let ack = state.availability.heartbeat(mitra.id).await?;
    Ok(HttpResponse::Ok().json(dto::HeartbeatAck {
        ok: true,
        is_online: ack.online,
        interval_seconds: ack.interval_seconds,
    }))
}

#[utoipa::path(tag = "mitra", security(("bearer" = ["mitra"])), responses((status = 200, body = dto::Requests)), extensions(("x-error-codes" = json!(["STORE_UNAVAILABLE"]))))]
#[get("/api/mitra/chat/requests")]
async fn open_requests(state: web::Data<AppState>, mitra: Mitra) -> Reply {
    let requests = state.chat.open_requests(mitra.id).await?;
    Ok(HttpResponse::Ok().json(dto::Requests {
        requests: requests.into_iter().map(Into::into).collect(),
    }))
}

#[utoipa::path(tag = "mitra", security(("bearer" = ["mitra"])), params(("id" = Uuid, Path)), responses((status = 200, body = dto::Session)), extensions(("x-error-codes" = json!(["ACCOUNT_INACTIVE", "NOT_FOUND", "REQUEST_TAKEN", "AT_CAPACITY", "STORE_UNAVAILABLE"]))))]
#[post("/api/mitra/chat/requests/{id}/accept")]
async fn accept(state: web::Data<AppState>, mitra: ActiveMitra, id: web::Path<Uuid>) -> Reply {
    Ok(session(state.chat.accept(*id, mitra.id).await?))
}

#[utoipa::path(tag = "mitra", security(("bearer" = ["mitra"])), params(("id" = Uuid, Path)), responses((status = 200, body = dto::Ok)), extensions(("x-error-codes" = json!(["ACCOUNT_INACTIVE", "NOT_FOUND", "STORE_UNAVAILABLE"]))))]
#[post("/api/mitra/chat/requests/{id}/reject")]
async fn reject(state: web::Data<AppState>, mitra: ActiveMitra, id: web::Path<Uuid>) -> Reply {
    state.chat.reject(*id, mitra.id).await?;
    Ok(HttpResponse::Ok().json(dto::OK))
}

#[utoipa::path(tag = "mitra", security(("bearer" = ["mitra"])), params(("id" = Uuid, Path)), responses((status = 200, body = dto::Session)), extensions(("x-error-codes" = json!(["NOT_FOUND", "STORE_UNAVAILABLE"]))))]
#[get("/api/mitra/chat/sessions/{id}")]
async fn mitra_session(state: web::Data<AppState>, mitra: Mitra, id: web::Path<Uuid>) -> Reply {
    Ok(session(
        state.chat.owned(*id, Party::Mitra(mitra.id)).await?,
    ))
}

#[utoipa::path(tag = "mitra", security(("bearer" = ["mitra"])), params(("id" = Uuid, Path)), responses((status = 200, body = dto::Session)), extensions(("x-error-codes" = json!(["ACCOUNT_INACTIVE", "NOT_FOUND", "INVALID_STATE", "STORE_UNAVAILABLE"]))))]
#[post("/api/mitra/chat/sessions/{id}/end")]
async fn mitra_end(state: web::Data<AppState>, mitra: ActiveMitra, id: web::Path<Uuid>) -> Reply {
    Ok(session(state.chat.end(*id, Party::Mitra(mitra.id)).await?))
}

#[utoipa::path(tag = "client", security(("bearer" = ["customer"])), request_body = dto::ChatRequestBody, responses((status = 201, body = dto::ChatRequestCreated)), extensions(("x-error-codes" = json!(["NO_BESTIE_AVAILABLE", "BESTIE_UNAVAILABLE", "OPEN_REQUEST_EXISTS", "RATE_LIMITED", "STORE_UNAVAILABLE"]))))]
#[post("/api/client/chat/requests")]
async fn chat_request(
    state: web::Data<AppState>,
    customer: Customer,
    body: web::Json<dto::ChatRequestBody>,
) -> Reply {
    let minutes = minutes(body.minutes)?;
    state
        .limiter
        .check(
            LimitedAction::ChatRequestPerCustomer,
            &customer.id.to_string(),
        )
        .await?;
    let (session, notified) = match body.mitra_id {
        Some(mitra) => {
            let session = state
                .chat
                .request_mitra(customer.id, MitraId::new(mitra), minutes)
                .await?;
            (session, 1)
        }
        None => match state.chat.blast(customer.id, minutes).await {
            Ok(blast) => (blast.session, blast.notified),
            Err(ChatError::NoBestieAvailable { session }) => {
                tracing::info!(session = %session.id, "blast reached nobody");
                return Err(ChatError::NoBestieAvailable { session }.into());
            }
            Err(other) => return Err(other.into()),
        },
    };
    Ok(HttpResponse::Created().json(dto::ChatRequestCreated {
        session_id: session.id,
        status: session.status.as_str(),
        notified,
    }))
}

#[utoipa::path(tag = "client", security(("bearer" = ["customer"])), params(("id" = Uuid, Path)), responses((status = 200, body = dto::Session)), extensions(("x-error-codes" = json!(["NOT_FOUND", "STORE_UNAVAILABLE"]))))]
#[get("/api/client/chat/sessions/{id}")]
async fn client_session(
    state: web::Data<AppState>,
    customer: Customer,
    id: web::Path<Uuid>,
) -> Reply {
    Ok(session(
        state.chat.owned(*id, Party::Customer(customer.id)).await?,
    ))
}

#[utoipa::path(tag = "client", security(("bearer" = ["customer"])), params(("id" = Uuid, Path)), responses((status = 200, body = dto::Session)), extensions(("x-error-codes" = json!(["PAYMENT_FAILED", "NOT_FOUND", "INVALID_STATE", "STORE_UNAVAILABLE"]))))]
#[post("/api/client/chat/sessions/{id}/pay")]
async fn pay(state: web::Data<AppState>, customer: Customer, id: web::Path<Uuid>) -> Reply {
    Ok(session(state.chat.pay(*id, customer.id).await?))
}

#[utoipa::path(tag = "client", security(("bearer" = ["customer"])), params(("id" = Uuid, Path)), request_body = dto::MinutesBody, responses((status = 200, body = dto::Session)), extensions(("x-error-codes" = json!(["NOT_FOUND", "BESTIE_UNREACHABLE", "INVALID_STATE", "STORE_UNAVAILABLE"]))))]
#[post("/api/client/chat/sessions/{id}/extend")]
async fn extend(
    state: web::Data<AppState>,
    customer: Customer,
    id: web::Path<Uuid>,
    body: web::Json<dto::MinutesBody>,
) -> Reply {
    let minutes = minutes(body.minutes)?;
    Ok(session(state.chat.extend(*id, customer.id, minutes).await?))
}

#[utoipa::path(tag = "client", security(("bearer" = ["customer"])), params(("id" = Uuid, Path)), responses((status = 200, body = dto::Session)), extensions(("x-error-codes" = json!(["NOT_FOUND", "INVALID_STATE", "STORE_UNAVAILABLE"]))))]
#[post("/api/client/chat/sessions/{id}/end")]
async fn client_end(state: web::Data<AppState>, customer: Customer, id: web::Path<Uuid>) -> Reply {
    Ok(session(
        state.chat.end(*id, Party::Customer(customer.id)).await?,
    ))
}
