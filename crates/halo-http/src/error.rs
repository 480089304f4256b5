//! The one API error type, driven by one table of code → HTTP status. Server faults log their
//! cause and return a generic message; client faults say what is wrong.

use crate::dto::{ErrorBody, ErrorDetail};
use actix_web::http::StatusCode;
use actix_web::{error, web, HttpRequest, HttpResponse, ResponseError};
use halo_auth::AuthError;
use halo_core::{AvailabilityError, ChatError, SeedError};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    ValidationFailed,
    PayloadTooLarge,
    Unauthorized,
    SessionRevoked,
    InvalidCredentials,
    InvalidOtp,
    OtpExpired,
    OtpAttemptsExceeded,
    RateLimited,
    Forbidden,
    AccountInactive,
    NotFound,
    MethodNotAllowed,
    Conflict,
    InvalidState,
    NoBestieAvailable,
    BestieUnavailable,
    BestieUnreachable,
    RequestTaken,
    AtCapacity,
    OpenRequestExists,
    PaymentFailed,
    StoreUnavailable,
    OtpDeliveryFailed,
    Internal,
}

impl ErrorCode {
    /// Every code, in the table's order (the API document lists them per operation).
    pub const ALL: [ErrorCode; 26] = [
        Self::BadRequest,
        Self::ValidationFailed,
        Self::PayloadTooLarge,
        Self::Unauthorized,
        Self::SessionRevoked,
        Self::InvalidCredentials,
        Self::InvalidOtp,
        Self::OtpExpired,
        Self::OtpAttemptsExceeded,
        Self::RateLimited,
        Self::Forbidden,
        Self::AccountInactive,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::Conflict,
        Self::InvalidState,
        Self::NoBestieAvailable,
        Self::BestieUnavailable,
        Self::BestieUnreachable,
        Self::RequestTaken,
        Self::AtCapacity,
        Self::OpenRequestExists,
        Self::PaymentFailed,
        Self::StoreUnavailable,
        Self::OtpDeliveryFailed,
        Self::Internal,
    ];

    /// The code whose wire form is `wire` (`"NOT_FOUND"` → `NotFound`).
    pub fn from_wire(wire: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|code| code.spec().0 == wire)
    }

    /// What the code tells the caller, for the API document.
    pub const fn meaning(self) -> &'static str {
        match self {
            Self::BadRequest => "malformed JSON, a body that is not application/json, or a path or query that does not parse",
            Self::ValidationFailed => "a field is missing, of the wrong type or out of its range (the message names it)",
            Self::PayloadTooLarge => "the body is larger than 16 KiB",
            Self::Unauthorized => "the bearer token is missing, malformed, forged or expired",
            Self::SessionRevoked => "the refresh token is unknown, expired, already used or its session was revoked: log in again",
            Self::InvalidCredentials => "unknown email or wrong password",
            Self::InvalidOtp => "wrong code, or no code was requested for this phone",
            Self::OtpExpired => "the code is older than 5 minutes",
            Self::OtpAttemptsExceeded => "5 wrong codes: request a new one",
            Self::RateLimited => "too many calls; Retry-After says when to try again",
            Self::Forbidden => "the token is of another role",
            Self::AccountInactive => "the mitra account is deactivated",
            Self::NotFound => "no such resource, or not one of the caller's",
            Self::MethodNotAllowed => "the path exists, not with this method; Allow lists the methods it has",
            Self::Conflict => "the resource already exists",
            Self::InvalidState => "the session's status does not allow this",
            Self::NoBestieAvailable => "no mitra is available right now",
            Self::BestieUnavailable => "the chosen mitra is not available right now",
            Self::BestieUnreachable => "the session's mitra is not reachable right now",
            Self::RequestTaken => "another mitra took the request first",
            Self::AtCapacity => "the mitra already serves max_customers_per_mitra customers",
            Self::OpenRequestExists => "the customer already holds max_open_requests_per_customer open requests; open_session_id names the oldest",
            Self::PaymentFailed => "the payment provider refused the charge",
            Self::StoreUnavailable => "Postgres did not answer; retry shortly",
            Self::OtpDeliveryFailed => "the SMS could not be sent; retry shortly",
            Self::Internal => "a server fault (logged)",
        }
    }

    /// The table: wire code and HTTP status.
    pub const fn spec(self) -> (&'static str, StatusCode) {
        match self {
            Self::BadRequest => ("BAD_REQUEST", StatusCode::BAD_REQUEST),
            Self::ValidationFailed => ("VALIDATION_FAILED", StatusCode::UNPROCESSABLE_ENTITY),
            Self::PayloadTooLarge => ("PAYLOAD_TOO_LARGE", StatusCode::PAYLOAD_TOO_LARGE),
            Self::Unauthorized => ("UNAUTHORIZED", StatusCode::UNAUTHORIZED),
            Self::SessionRevoked => ("SESSION_REVOKED", StatusCode::UNAUTHORIZED),
            Self::InvalidCredentials => ("INVALID_CREDENTIALS", StatusCode::UNAUTHORIZED),
            Self::InvalidOtp => ("INVALID_OTP", StatusCode::UNAUTHORIZED),
            Self::OtpExpired => ("OTP_EXPIRED", StatusCode::UNAUTHORIZED),
            Self::OtpAttemptsExceeded => ("OTP_ATTEMPTS_EXCEEDED", StatusCode::TOO_MANY_REQUESTS),
            Self::RateLimited => ("RATE_LIMITED", StatusCode::TOO_MANY_REQUESTS),
            Self::Forbidden => ("FORBIDDEN", StatusCode::FORBIDDEN),
            Self::AccountInactive => ("ACCOUNT_INACTIVE", StatusCode::FORBIDDEN),
            Self::NotFound => ("NOT_FOUND", StatusCode::NOT_FOUND),
            Self::MethodNotAllowed => ("METHOD_NOT_ALLOWED", StatusCode::METHOD_NOT_ALLOWED),
            Self::Conflict => ("CONFLICT", StatusCode::CONFLICT),
            Self::InvalidState => ("INVALID_STATE", StatusCode::CONFLICT),
            Self::NoBestieAvailable => ("NO_BESTIE_AVAILABLE", StatusCode::CONFLICT),
            Self::BestieUnavailable => ("BESTIE_UNAVAILABLE", StatusCode::CONFLICT),
            Self::BestieUnreachable => ("BESTIE_UNREACHABLE", StatusCode::CONFLICT),
            Self::RequestTaken => ("REQUEST_TAKEN", StatusCode::CONFLICT),
            Self::AtCapacity => ("AT_CAPACITY", StatusCode::CONFLICT),
            Self::OpenRequestExists => ("OPEN_REQUEST_EXISTS", StatusCode::CONFLICT),
            Self::PaymentFailed => ("PAYMENT_FAILED", StatusCode::PAYMENT_REQUIRED),
            Self::StoreUnavailable => ("STORE_UNAVAILABLE", StatusCode::SERVICE_UNAVAILABLE),
            Self::OtpDeliveryFailed => ("OTP_DELIVERY_FAILED", StatusCode::SERVICE_UNAVAILABLE),
            Self::Internal => ("INTERNAL", StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// `OPEN_REQUEST_EXISTS`: the request the customer already has open.
    pub open_session_id: Option<uuid::Uuid>,
    /// `RATE_LIMITED`: seconds until a retry can succeed (`Retry-After`).
    pub retry_after: Option<u64>,
}

/// Stores come back within seconds (reconnect, failover): clients retry after this.
const STORE_RETRY_AFTER_SECONDS: u64 = 1;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            open_session_id: None,
            retry_after: None,
        }
    }

    /// A store outage (a failover, a restart): worth a retry in a second (`Retry-After`).
    fn unavailable(cause: &dyn fmt::Display) -> Self {
        tracing::warn!(error = %cause, "store unavailable");
        Self {
            retry_after: Some(STORE_RETRY_AFTER_SECONDS),
            ..Self::new(
                ErrorCode::StoreUnavailable,
                "the service is temporarily unavailable, retry shortly",
            )
        }
    }

    fn internal(cause: &dyn fmt::Debug) -> Self {
        tracing::error!(error = ?cause, "internal error");
        Self::new(ErrorCode::Internal, "internal error")
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.spec().0, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.spec().1
    }

    fn error_response(&self) -> HttpResponse {
        let (code, status) = self.code.spec();
        let mut response = HttpResponse::build(status);
        if let Some(seconds) = self.retry_after {
            response.insert_header((actix_web::http::header::RETRY_AFTER, seconds.to_string()));
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                code,
                message: self.message.clone(),
                open_session_id: self.open_session_id,
            },
        })
    }
}

impl From<AvailabilityError> for ApiError {
    fn from(error: AvailabilityError) -> Self {
        match error {
            AvailabilityError::MitraNotFound => Self::new(ErrorCode::NotFound, "mitra not found"),
            AvailabilityError::Deactivated => Self::new(
                ErrorCode::AccountInactive,
                "this mitra account is deactivated",
            ),
            AvailabilityError::Conflict(what) => Self::new(ErrorCode::Conflict, what),
            AvailabilityError::InvalidSetting(e) => {
                Self::new(ErrorCode::ValidationFailed, format!("{}: {e}", e.field()))
            }
            AvailabilityError::StoreUnavailable(cause) => Self::unavailable(&cause),
            AvailabilityError::Store(cause) => Self::internal(&cause),
        }
    }
}

impl From<ChatError> for ApiError {
    fn from(error: ChatError) -> Self {
        let message = error.to_string();
        let code = match error {
            ChatError::Availability(inner) => return inner.into(),
            ChatError::NoBestieAvailable { .. } => ErrorCode::NoBestieAvailable,
            ChatError::BestieUnavailable => ErrorCode::BestieUnavailable,
            ChatError::BestieUnreachable => ErrorCode::BestieUnreachable,
            ChatError::RequestTaken => ErrorCode::RequestTaken,
            ChatError::AtCapacity => ErrorCode::AtCapacity,
            ChatError::OpenRequestExists { session } => {
                return Self {
                    open_session_id: Some(session),
                    ..Self::new(ErrorCode::OpenRequestExists, message)
                }
            }
            ChatError::NotFound => ErrorCode::NotFound,
            ChatError::InvalidState(_) => ErrorCode::InvalidState,
            ChatError::Payment(_) => ErrorCode::PaymentFailed,
        };
        Self::new(code, message)
    }
}

impl From<halo_core::Limited> for ApiError {
    fn from(limited: halo_core::Limited) -> Self {
        // Whole seconds, rounded up: a retry after the header's time must be allowed.
        let millis = limited.retry_after.as_millis();
        let seconds = u64::try_from(millis.div_ceil(1000))
            .unwrap_or(u64::MAX)
            .max(1);
        Self {
            retry_after: Some(seconds),
            ..Self::new(ErrorCode::RateLimited, limited.to_string())
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        let message = error.to_string();
        let code = match error {
            AuthError::InvalidCode => ErrorCode::InvalidOtp,
            AuthError::CodeExpired => ErrorCode::OtpExpired,
            AuthError::TooManyAttempts => ErrorCode::OtpAttemptsExceeded,
            AuthError::AccountInactive => ErrorCode::AccountInactive,
            AuthError::SessionRevoked => ErrorCode::SessionRevoked,
            AuthError::InvalidCredentials => ErrorCode::InvalidCredentials,
            AuthError::OtpDelivery(cause) => {
                tracing::warn!(error = %cause, "otp delivery failed");
                ErrorCode::OtpDeliveryFailed
            }
            AuthError::StoreUnavailable(cause) => return Self::unavailable(&cause),
            AuthError::Store(cause) => return Self::internal(&cause),
            AuthError::Signing(cause) => return Self::internal(&cause),
        };
        Self::new(code, message)
    }
}

impl From<SeedError> for ApiError {
    fn from(error: SeedError) -> Self {
        Self::unavailable(&error)
    }
}

/// Malformed JSON, wrong types and oversize bodies become 400/413/422 with a code, never 500.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(crate::MAX_BODY_BYTES)
        .error_handler(|err, _req| {
            let api = match &err {
                error::JsonPayloadError::OverflowKnownLength { .. }
                | error::JsonPayloadError::Overflow { .. } => {
                    ApiError::new(ErrorCode::PayloadTooLarge, "request body too large")
                }
                error::JsonPayloadError::ContentType => ApiError::new(
                    ErrorCode::BadRequest,
                    "expected Content-Type: application/json",
                ),
                error::JsonPayloadError::Deserialize(e) if e.is_data() => {
                    ApiError::new(ErrorCode::ValidationFailed, e.to_string())
                }
                other => ApiError::new(
                    ErrorCode::BadRequest,
                    format!("malformed JSON body: {other}"),
                ),
            };
            api.into()
        })
}

/// Invalid path parameters (e.g. a malformed UUID) → 400.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err, _req| {
        ApiError::new(ErrorCode::BadRequest, format!("invalid path: {err}")).into()
    })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        ApiError::new(ErrorCode::BadRequest, format!("invalid query: {err}")).into()
    })
}

/// What no route took: 405 `METHOD_NOT_ALLOWED` with `Allow` when the path has routes for
/// other methods (the routes of the API document), else 404 `NOT_FOUND`.
pub async fn unrouted(req: HttpRequest) -> HttpResponse {
    let allowed = req
        .app_data::<web::Data<crate::openapi::Routes>>()
        .map(|routes| routes.methods_of(req.path()))
        .unwrap_or_default();
    if allowed.is_empty() {
        return ApiError::new(
            ErrorCode::NotFound,
            format!("no route for {} {}", req.method(), req.path()),
        )
        .error_response();
    }
    let allow = allowed.join(", ");
    let mut response = ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} {}: allowed are {allow}", req.method(), req.path()),
    )
    .error_response();
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&allow) {
        response
            .headers_mut()
            .insert(actix_web::http::header::ALLOW, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use halo_ports::{OtpSendError, PaymentError, TruthError};

    fn answer(error: impl Into<ApiError>) -> (&'static str, u16) {
        let (code, status) = error.into().code.spec();
        (code, status.as_u16())
    }

    fn outage() -> TruthError {
        TruthError::Unavailable("connection refused".into())
    }

    // Codes whose causes the dev providers and a healthy store cannot produce over HTTP.
    #[test]
    fn provider_failures_and_outages_map_to_their_codes() {
        let payment = ChatError::Payment(PaymentError("card declined".into()));
        assert_eq!(answer(payment), ("PAYMENT_FAILED", 402));
        let delivery = AuthError::OtpDelivery(OtpSendError("sms gateway down".into()));
        assert_eq!(answer(delivery), ("OTP_DELIVERY_FAILED", 503));
        assert_eq!(
            answer(AuthError::from(outage())),
            ("STORE_UNAVAILABLE", 503)
        );
        assert_eq!(
            answer(ChatError::from(outage())),
            ("STORE_UNAVAILABLE", 503)
        );
        let bug = AuthError::from(TruthError::Query("syntax error".into()));
        assert_eq!(answer(bug), ("INTERNAL", 500));
    }

    #[test]
    fn an_outage_says_when_to_retry() {
        let response = ApiError::from(ChatError::from(outage())).error_response();
        assert_eq!(
            response
                .headers()
                .get(actix_web::http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
    }
}
