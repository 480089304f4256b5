//! The public API (apps): auth, mitra status and heartbeat, the beacon, chat sessions.

use crate::dto;
use crate::error::{ApiError, ErrorCode};
use crate::extract::{ActiveMitra, Caller, Customer, Mitra};
use crate::AppState;
use actix_web::{web, HttpResponse};
use halo_core::ChatError;
use halo_domain::{validate_minutes, MitraId, Phone, Role};
use halo_ports::{OnlineReason, Party};
use uuid::Uuid;

type Reply = Result<HttpResponse, ApiError>;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/shared/auth-providers", web::get().to(auth_providers))
        .route("/api/shared/whoami", web::get().to(whoami))
        .route("/public/bestie-availability", web::get().to(beacon));
    for (prefix, role) in [("/api/mitra", Role::Mitra), ("/api/client", Role::Customer)] {
        cfg.service(
            web::scope(&format!("{prefix}/auth"))
                .app_data(web::Data::new(role))
                .route("/otp/request", web::post().to(otp_request))
                .route("/otp/verify", web::post().to(otp_verify))
                .route("/refresh", web::post().to(refresh))
                .route("/logout", web::post().to(logout)),
        );
    }
    cfg.route("/api/mitra/status", web::get().to(mitra_status))
        .route("/api/mitra/status/online", web::post().to(go_online))
        .route("/api/mitra/status/offline", web::post().to(go_offline))
        .route("/api/mitra/status/heartbeat", web::post().to(heartbeat))
        .route("/api/mitra/chat/requests", web::get().to(open_requests))
        .route(
            "/api/mitra/chat/requests/{id}/accept",
            web::post().to(accept),
        )
        .route(
            "/api/mitra/chat/requests/{id}/reject",
            web::post().to(reject),
        )
        .route(
            "/api/mitra/chat/sessions/{id}",
            web::get().to(mitra_session),
        )
        .route(
            "/api/mitra/chat/sessions/{id}/end",
            web::post().to(mitra_end),
        )
        .route("/api/client/chat/requests", web::post().to(chat_request))
        .route(
            "/api/client/chat/sessions/{id}",
            web::get().to(client_session),
        )
        .route("/api/client/chat/sessions/{id}/pay", web::post().to(pay))
        .route(
            "/api/client/chat/sessions/{id}/extend",
            web::post().to(extend),
        )
        .route(
            "/api/client/chat/sessions/{id}/end",
            web::post().to(client_end),
        );
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

async fn auth_providers() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "providers": ["phone_otp"] }))
}

/// Who the token says the caller is. No store I/O: the benchmarks use it as the ceiling of an
/// authenticated request on this server.
async fn whoami(caller: Caller) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "user_id": caller.0.user_id,
        "role": caller.0.role.as_str(),
    }))
}

async fn otp_request(
    state: web::Data<AppState>,
    role: web::Data<Role>,
    body: web::Json<dto::PhoneBody>,
) -> Reply {
    state.auth.request_otp(**role, &phone(&body.phone)?).await?;
    Ok(HttpResponse::Ok().json(dto::OK))
}

async fn otp_verify(
    state: web::Data<AppState>,
    role: web::Data<Role>,
    body: web::Json<dto::VerifyBody>,
) -> Reply {
    let login = state
        .auth
        .verify_otp(**role, &phone(&body.phone)?, body.code.trim())
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

async fn refresh(
    state: web::Data<AppState>,
    role: web::Data<Role>,
    body: web::Json<dto::RefreshBody>,
) -> Reply {
    let pair = state.auth.refresh(**role, &body.refresh_token).await?;
    Ok(HttpResponse::Ok().json(dto::Tokens::from(pair)))
}

async fn logout(state: web::Data<AppState>, role: web::Data<Role>, caller: Caller) -> Reply {
    if caller.0.role != **role {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this route is for role {}", **role),
        ));
    }
    state.auth.logout(caller.0).await?;
    Ok(HttpResponse::Ok().json(dto::OK))
}

async fn beacon(state: web::Data<AppState>) -> Reply {
    let beacon = state.availability.count_available().await?;
    Ok(HttpResponse::Ok().json(dto::Availability {
        available: beacon.available(),
        count: beacon.count,
    }))
}

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

async fn go_online(state: web::Data<AppState>, mitra: ActiveMitra) -> Reply {
    state.availability.set_online(mitra.id).await?;
    Ok(HttpResponse::Ok().json(dto::Online { is_online: true }))
}

async fn go_offline(state: web::Data<AppState>, mitra: ActiveMitra) -> Reply {
    state
        .availability
        .set_offline(mitra.id, OnlineReason::Manual)
        .await?;
    Ok(HttpResponse::Ok().json(dto::Online { is_online: false }))
}

async fn heartbeat(state: web::Data<AppState>, mitra: Mitra) -> Reply {
    let ack = state.availability.heartbeat(mitra.id).await?;
    Ok(HttpResponse::Ok().json(dto::HeartbeatAck {
        ok: true,
        is_online: ack.online,
        interval_seconds: ack.interval_seconds,
    }))
}

async fn open_requests(state: web::Data<AppState>, mitra: Mitra) -> Reply {
    let requests = state.chat.open_requests(mitra.id).await?;
    Ok(HttpResponse::Ok().json(dto::Requests {
        requests: requests.into_iter().map(Into::into).collect(),
    }))
}

async fn accept(state: web::Data<AppState>, mitra: ActiveMitra, id: web::Path<Uuid>) -> Reply {
    Ok(session(state.chat.accept(*id, mitra.id).await?))
}

async fn reject(state: web::Data<AppState>, mitra: ActiveMitra, id: web::Path<Uuid>) -> Reply {
    state.chat.reject(*id, mitra.id).await?;
    Ok(HttpResponse::Ok().json(dto::OK))
}

async fn mitra_session(state: web::Data<AppState>, mitra: Mitra, id: web::Path<Uuid>) -> Reply {
    Ok(session(
        state.chat.owned(*id, Party::Mitra(mitra.id)).await?,
    ))
}

async fn mitra_end(state: web::Data<AppState>, mitra: ActiveMitra, id: web::Path<Uuid>) -> Reply {
    Ok(session(state.chat.end(*id, Party::Mitra(mitra.id)).await?))
}

async fn chat_request(
    state: web::Data<AppState>,
    customer: Customer,
    body: web::Json<dto::ChatRequestBody>,
) -> Reply {
    let minutes = minutes(body.minutes)?;
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

async fn client_session(
    state: web::Data<AppState>,
    customer: Customer,
    id: web::Path<Uuid>,
) -> Reply {
    Ok(session(
        state.chat.owned(*id, Party::Customer(customer.id)).await?,
    ))
}

async fn pay(state: web::Data<AppState>, customer: Customer, id: web::Path<Uuid>) -> Reply {
    Ok(session(state.chat.pay(*id, customer.id).await?))
}

async fn extend(
    state: web::Data<AppState>,
    customer: Customer,
    id: web::Path<Uuid>,
    body: web::Json<dto::MinutesBody>,
) -> Reply {
    let minutes = minutes(body.minutes)?;
    Ok(session(state.chat.extend(*id, customer.id, minutes).await?))
}

async fn client_end(state: web::Data<AppState>, customer: Customer, id: web::Path<Uuid>) -> Reply {
    Ok(session(
        state.chat.end(*id, Party::Customer(customer.id)).await?,
    ))
}
