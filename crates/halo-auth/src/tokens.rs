//! HS256 access tokens. Stateless by design: a revoked session stops refreshing at once, and its
//! access token lives out its (short) TTL on routes that do not re-check activity.

use halo_domain::Role;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// Who a verified token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub user_id: Uuid,
    pub role: Role,
    /// The refresh session this token was issued under.
    pub sid: Uuid,
}

/// The pair returned by login and refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    role: String,
    sid: Uuid,
    iat: i64,
    exp: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("invalid token")]
    Invalid,
}

#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    access_ttl: Duration,
}

impl TokenKeys {
    pub fn new(secret: &[u8], access_ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            access_ttl,
        }
    }

    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    pub fn issue(&self, principal: Principal, now: OffsetDateTime) -> Result<String, TokenError> {
        let ttl = i64::try_from(self.access_ttl.as_secs()).unwrap_or(i64::MAX);
        let claims = Claims {
            sub: principal.user_id,
            role: principal.role.as_str().to_owned(),
            sid: principal.sid,
            iat: now.unix_timestamp(),
            exp: now.unix_timestamp().saturating_add(ttl),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|_| TokenError::Invalid)
    }

    pub fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        let data =
            decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| {
                match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                    _ => TokenError::Invalid,
                }
            })?;
        let role = data.claims.role.parse().map_err(|_| TokenError::Invalid)?;
        Ok(Principal {
            user_id: data.claims.sub,
            role,
            sid: data.claims.sid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn principal() -> Principal {
        Principal {
            user_id: Uuid::new_v4(),
            role: Role::Mitra,
            sid: Uuid::new_v4(),
        }
    }

    #[test]
    fn issued_tokens_verify_to_their_principal() {
        let keys = TokenKeys::new(SECRET, Duration::from_secs(60));
        let p = principal();
        let token = keys.issue(p, OffsetDateTime::now_utc()).unwrap();
        assert_eq!(keys.verify(&token), Ok(p));
    }

    #[test]
    fn expired_forged_and_garbage_tokens_are_refused() {
        let keys = TokenKeys::new(SECRET, Duration::from_secs(60));
        let old = OffsetDateTime::now_utc() - time::Duration::hours(2);
        assert_eq!(
            keys.verify(&keys.issue(principal(), old).unwrap()),
            Err(TokenError::Expired)
        );
        let other = TokenKeys::new(
            b"another-secret-another-secret-000",
            Duration::from_secs(60),
        );
        let forged = other.issue(principal(), OffsetDateTime::now_utc()).unwrap();
        assert_eq!(keys.verify(&forged), Err(TokenError::Invalid));
        assert_eq!(keys.verify("not.a.jwt"), Err(TokenError::Invalid));
        assert_eq!(keys.verify(""), Err(TokenError::Invalid));
    }
}
