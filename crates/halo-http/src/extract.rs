//! Who is calling: bearer-token extractors per role. A missing, malformed, forged or expired
//! token is 401 `UNAUTHORIZED`; the wrong role is 403 `FORBIDDEN`. `ActiveMitra` also refuses a
//! deactivated mitra (mirror first, Postgres when Valkey is down) — every mitra route that
//! changes state takes it.

use crate::error::{ApiError, ErrorCode};
use crate::AppState;
use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use halo_auth::{Principal, TokenError};
use halo_domain::{MitraId, Role};
use std::future::{ready, Ready};
use uuid::Uuid;

fn state(req: &HttpRequest) -> Result<&web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "application state missing"))
}

fn principal(req: &HttpRequest) -> Result<Principal, ApiError> {
    let token = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "missing bearer token"))?;
    state(req)?.auth.verify_access(token).map_err(|e| match e {
        TokenError::Expired => ApiError::new(ErrorCode::Unauthorized, "token expired"),
        TokenError::Invalid => ApiError::new(ErrorCode::Unauthorized, "invalid token"),
    })
}

fn with_role(req: &HttpRequest, role: Role) -> Result<Principal, ApiError> {
    let principal = principal(req)?;
    if principal.role != role {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this route is for role {role}"),
        ));
    }
    Ok(principal)
}

/// Any authenticated caller (logout).
pub struct Caller(pub Principal);

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(principal(req).map(Self))
    }
}

pub struct Customer {
    pub id: Uuid,
}

impl FromRequest for Customer {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(with_role(req, Role::Customer).map(|p| Self { id: p.user_id }))
    }
}

/// A mitra, active or not (reads, heartbeat — which has its own guard).
pub struct Mitra {
    pub id: MitraId,
}

impl FromRequest for Mitra {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(with_role(req, Role::Mitra).map(|p| Self {
            id: MitraId::new(p.user_id),
        }))
    }
}

/// A mitra whose account is active (403 `ACCOUNT_INACTIVE` otherwise).
pub struct ActiveMitra {
    pub id: MitraId,
}

impl FromRequest for ActiveMitra {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let checked = with_role(req, Role::Mitra).and_then(|p| Ok((p, state(req)?.clone())));
        Box::pin(async move {
            let (principal, state) = checked?;
            let id = MitraId::new(principal.user_id);
            state.availability.ensure_active(id).await?;
            Ok(Self { id })
        })
    }
}

/// A control-centre operator.
pub struct Operator {
    pub id: Uuid,
}

impl FromRequest for Operator {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(with_role(req, Role::Cc).map(|p| Self { id: p.user_id }))
    }
}
