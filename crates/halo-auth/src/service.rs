//! The login flows: OTP request and verify (apps), password login (operators), refresh with
//! rotation, logout.

use crate::secrets::{hash_password, new_otp_code, new_refresh_token, sha256_hex, verify_password};
use crate::tokens::{Principal, TokenError, TokenKeys, TokenPair};
use async_trait::async_trait;
use halo_domain::{Phone, Role};
use halo_ports::{
    AuthStore, Clock, OtpCheck, OtpSendError, OtpSender, Rotation, TruthError, UserRecord,
};
use std::sync::Arc;
use std::time::Duration;

/// How long a code stays valid, and how many wrong tries it takes.
pub const OTP_TTL: Duration = Duration::from_secs(300);
pub const OTP_MAX_ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("wrong or unknown code")]
    InvalidCode,
    #[error("the code expired; request a new one")]
    CodeExpired,
    #[error("too many wrong codes; request a new one")]
    TooManyAttempts,
    #[error("this account is not active")]
    AccountInactive,
    #[error("the session was revoked or expired; log in again")]
    SessionRevoked,
    #[error("wrong email or password")]
    InvalidCredentials,
    #[error("the code could not be sent")]
    OtpDelivery(#[source] OtpSendError),
    #[error("postgres unavailable")]
    StoreUnavailable(#[source] TruthError),
    #[error("store failure")]
    Store(#[source] TruthError),
    #[error("token signing failed")]
    Signing(#[source] TokenError),
}

impl From<TruthError> for AuthError {
    fn from(error: TruthError) -> Self {
        match error {
            TruthError::Unavailable(_) => Self::StoreUnavailable(error),
            other => Self::Store(other),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub refresh_ttl: Duration,
    /// Fixed code for development (`OTP_DEV_CODE`; refused in production by the config).
    pub dev_code: Option<String>,
}

/// A successful login: the tokens and who logged in.
#[derive(Debug, Clone)]
pub struct Login {
    pub tokens: TokenPair,
    pub user: UserRecord,
    pub role: Role,
}

/// The sender until an SMS/WhatsApp provider is plugged in: logs that a code was issued, and
/// the code itself only outside production (`reveal_code`), so production logs hold no codes.
#[derive(Debug, Default)]
pub struct LogOtpSender {
    pub reveal_code: bool,
}

#[async_trait]
impl OtpSender for LogOtpSender {
    async fn send(&self, phone: &Phone, role: Role, code: &str) -> Result<(), OtpSendError> {
        let shown = if self.reveal_code { code } else { "<redacted>" };
        tracing::info!(
            phone = %phone.masked(),
            role = role.as_str(),
            code = shown,
            "otp code issued (log sender)"
        );
        Ok(())
    }
}

pub struct Auth {
    store: Arc<dyn AuthStore>,
    sender: Arc<dyn OtpSender>,
    keys: TokenKeys,
    clock: Arc<dyn Clock>,
    settings: AuthSettings,
    /// Verified against when the operator's email is unknown (see `operator_login`).
    dummy_hash: String,
}

fn otp_hash(phone: &Phone, role: Role, code: &str) -> String {
    sha256_hex(&[phone.as_str(), role.as_str(), code])
}

fn seconds(d: Duration) -> time::Duration {
    time::Duration::seconds(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Auth {
    pub fn new(
        store: Arc<dyn AuthStore>,
        sender: Arc<dyn OtpSender>,
        keys: TokenKeys,
        clock: Arc<dyn Clock>,
        settings: AuthSettings,
    ) -> Self {
        Self {
            store,
            sender,
            keys,
            clock,
            settings,
            dummy_hash: hash_password("no operator has this password").unwrap_or_default(),
        }
    }

    /// Verifies an access token (signature and expiry; no store access).
    pub fn verify_access(&self, token: &str) -> Result<Principal, TokenError> {
        self.keys.verify(token)
    }

    /// Issues a code for an app login. For a mitra nothing is sent unless the account exists
    /// and is active, but the answer is the same (no account discovery).
    pub async fn request_otp(&self, role: Role, phone: &Phone) -> Result<(), AuthError> {
        if role == Role::Mitra {
            let mitra = self.store.mitra_by_phone(phone).await?;
            if !mitra.is_some_and(|m| m.active) {
                tracing::info!(
                    phone = %phone.masked(),
                    "otp requested for an unknown or inactive mitra"
                );
                return Ok(());
            }
        }
        let code = self.settings.dev_code.clone().unwrap_or_else(new_otp_code);
        let expires_at = self.store.database_now().await? + seconds(OTP_TTL);
        self.store
            .save_otp(phone, role, &otp_hash(phone, role, &code), expires_at)
            .await?;
        self.sender
            .send(phone, role, &code)
            .await
            .map_err(AuthError::OtpDelivery)
    }

    /// Checks the code, then logs in: a customer is created on first login; a mitra must exist
    /// (created by an operator) and be active (403 only after a valid code).
    pub async fn verify_otp(
        &self,
        role: Role,
        phone: &Phone,
        code: &str,
    ) -> Result<Login, AuthError> {
        // The code first: nothing about the account is told to someone without a valid code
        // (an unknown mitra phone never got one, so it answers as a wrong code).
        let now = self.store.database_now().await?;
        match self
            .store
            .check_otp(
                phone,
                role,
                &otp_hash(phone, role, code),
                OTP_MAX_ATTEMPTS,
                now,
            )
            .await?
        {
            OtpCheck::Valid => {}
            OtpCheck::Wrong | OtpCheck::Missing => return Err(AuthError::InvalidCode),
            OtpCheck::Expired => return Err(AuthError::CodeExpired),
            OtpCheck::TooManyAttempts => return Err(AuthError::TooManyAttempts),
        }
        let user = match role {
            Role::Mitra => match self.store.mitra_by_phone(phone).await? {
                Some(mitra) if mitra.active => mitra,
                _ => return Err(AuthError::AccountInactive),
            },
            _ => self.store.customer_by_phone_or_create(phone).await?,
        };
        let tokens = self.open_session(user.id, role).await?;
        Ok(Login { tokens, user, role })
    }

    /// Operator login by email and password.
    pub async fn operator_login(
        &self,
        email: &str,
        password: &str,
    ) -> Result<TokenPair, AuthError> {
        let email = email.trim().to_lowercase();
        let found = self.store.operator_by_email(&email).await?;
        // An unknown email still pays for one argon2 verification, so the answer's timing
        // does not tell which emails exist. It runs on the blocking pool: tens of milliseconds
        // of hashing on the request's thread would stall every heartbeat that thread serves.
        let hash = found
            .as_ref()
            .map_or(&self.dummy_hash, |(_, hash)| hash)
            .clone();
        let password = password.to_owned();
        let verification =
            tokio::task::spawn_blocking(move || verify_password(&hash, &password)).await;
        let matches = verification.unwrap_or_else(|error| {
            tracing::error!(%error, "password verification did not finish; refusing the login");
            false
        });
        match found {
            Some((id, _)) if matches => self.open_session(id, Role::Cc).await,
            _ => Err(AuthError::InvalidCredentials),
        }
    }

    /// Rotates the pair: the old refresh token stops working. Presenting a token that was
    /// already rotated revokes the whole session (refresh-token reuse detection, OAuth 2.0
    /// security BCP): whoever holds the current token must log in again too.
    pub async fn refresh(&self, role: Role, refresh_token: &str) -> Result<TokenPair, AuthError> {
        let new_token = new_refresh_token();
        let expires_at = self.store.database_now().await? + seconds(self.settings.refresh_ttl);
        let rotation = self
            .store
            .rotate_session(
                &sha256_hex(&[refresh_token]),
                role,
                &sha256_hex(&[&new_token]),
                expires_at,
            )
            .await?;
        let session = match rotation {
            Rotation::Rotated(session) => session,
            Rotation::Reused(session) => {
                tracing::warn!(event = "auth.refresh_reuse", sid = %session.sid, user = %session.user_id, role = session.role.as_str(), "a rotated refresh token was presented again; session revoked");
                return Err(AuthError::SessionRevoked);
            }
            Rotation::Refused => return Err(AuthError::SessionRevoked),
        };
        let principal = Principal {
            user_id: session.user_id,
            role: session.role,
            sid: session.sid,
        };
        self.pair(principal, new_token)
    }

    /// Revokes the caller's session; its refresh token stops working at once.
    pub async fn logout(&self, principal: Principal) -> Result<(), AuthError> {
        self.store
            .revoke_session(principal.sid, principal.user_id)
            .await?;
        Ok(())
    }

    async fn open_session(&self, user_id: uuid::Uuid, role: Role) -> Result<TokenPair, AuthError> {
        let refresh_token = new_refresh_token();
        let expires_at = self.store.database_now().await? + seconds(self.settings.refresh_ttl);
        let sid = self
            .store
            .create_session(user_id, role, &sha256_hex(&[&refresh_token]), expires_at)
            .await?;
        self.pair(Principal { user_id, role, sid }, refresh_token)
    }

    fn pair(&self, principal: Principal, refresh_token: String) -> Result<TokenPair, AuthError> {
        let access_token = self
            .keys
            .issue(principal, self.clock.now())
            .map_err(AuthError::Signing)?;
        Ok(TokenPair {
            access_token,
            refresh_token,
            expires_in: self.keys.access_ttl().as_secs(),
        })
    }
}
