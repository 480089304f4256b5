//! The accounts and sessions port (Postgres): OTP codes, users, refresh sessions.

use crate::TruthError;
use async_trait::async_trait;
use halo_domain::{Phone, Role};
use time::OffsetDateTime;
use uuid::Uuid;

/// What checking an OTP code found. A valid code is consumed; a wrong one costs an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpCheck {
    Valid,
    Wrong,
    Expired,
    TooManyAttempts,
    /// No code was requested for this phone and role.
    Missing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: Uuid,
    pub display_name: Option<String>,
    pub active: bool,
}

/// A live refresh session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRef {
    pub sid: Uuid,
    pub user_id: Uuid,
    pub role: Role,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The session's current token: replaced by the new one.
    Rotated(SessionRef),
    /// A token this session already replaced (leaked or replayed): the session is revoked.
    Reused(SessionRef),
    /// Unknown, revoked or expired (or the mitra is deactivated): nothing changed.
    Refused,
}

/// # Errors
/// `TruthError::Unavailable` when Postgres does not answer.
#[async_trait]
pub trait AuthStore: Send + Sync + 'static {
    /// Stores (or replaces) the pending code for this phone and role, resetting attempts.
    async fn save_otp(
        &self,
        phone: &Phone,
        role: Role,
        code_hash: &str,
        expires_at: OffsetDateTime,
    ) -> Result<(), TruthError>;

    /// Checks a code: `Valid` consumes it, `Wrong` counts an attempt (refused from
    /// `max_attempts` on, even with the right code).
    async fn check_otp(
        &self,
        phone: &Phone,
        role: Role,
        code_hash: &str,
        max_attempts: u32,
        now: OffsetDateTime,
    ) -> Result<OtpCheck, TruthError>;

    /// The customer with this phone, created on first login.
    async fn customer_by_phone_or_create(&self, phone: &Phone) -> Result<UserRecord, TruthError>;

    /// The mitra with this phone (created only by operators).
    async fn mitra_by_phone(&self, phone: &Phone) -> Result<Option<UserRecord>, TruthError>;

    /// The operator's id and argon2 password hash.
    async fn operator_by_email(&self, email: &str) -> Result<Option<(Uuid, String)>, TruthError>;

    /// Opens a refresh session; returns its id (the `sid` claim).
    async fn create_session(
        &self,
        user_id: Uuid,
        role: Role,
        refresh_hash: &str,
        expires_at: OffsetDateTime,
    ) -> Result<Uuid, TruthError>;

    /// Replaces the refresh token of a live, unexpired session of `role`; a token the session
    /// already replaced revokes the session (`Reused`).
    async fn rotate_session(
        &self,
        old_hash: &str,
        role: Role,
        new_hash: &str,
        expires_at: OffsetDateTime,
    ) -> Result<Rotation, TruthError>;

    /// The database's clock: code and session deadlines are set and judged by it, so an
    /// instance whose clock is off neither extends nor shortens them.
    async fn database_now(&self) -> Result<OffsetDateTime, TruthError>;

    /// Revokes one session of its owner; false when it was not live.
    async fn revoke_session(&self, sid: Uuid, user_id: Uuid) -> Result<bool, TruthError>;

    /// Revokes every live session of a user (a deactivated mitra); returns how many.
    async fn revoke_user_sessions(&self, user_id: Uuid) -> Result<u64, TruthError>;
}

#[derive(Debug, thiserror::Error)]
#[error("the code could not be sent")]
pub struct OtpSendError(#[source] pub crate::BoxError);

/// Delivers one-time codes (SMS/WhatsApp in production; the log in development).
#[async_trait]
pub trait OtpSender: Send + Sync + 'static {
    async fn send(&self, phone: &Phone, role: Role, code: &str) -> Result<(), OtpSendError>;
}
