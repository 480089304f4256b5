//! `InMemoryAuth`: the refresh sessions of the `AuthStore` port over a map, with the Postgres
//! adapter's semantics (`auth_contract` checks them): a token rotates once, a replaced one
//! revokes its session, a session of a deactivated mitra does not rotate (its activity read
//! from the `InMemoryTruth` it is given, as Postgres reads `mitras`), revocation per session
//! or per user. OTP codes and accounts are not modelled: those calls answer
//! `TruthError::Query`.

use crate::truth::InMemoryTruth;
use async_trait::async_trait;
use halo_domain::{MitraId, Phone, Role};
use halo_ports::{AuthStore, Clock, OtpCheck, Rotation, SessionRef, TruthError, UserRecord};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug)]
struct Session {
    user_id: Uuid,
    role: Role,
    refresh_hash: String,
    expires_at: OffsetDateTime,
    revoked: bool,
}

impl Session {
    fn reference(&self, sid: Uuid) -> SessionRef {
        SessionRef {
            sid,
            user_id: self.user_id,
            role: self.role,
        }
    }
}

#[derive(Debug, Default)]
struct Sessions {
    by_id: BTreeMap<Uuid, Session>,
    /// Hashes a rotation replaced, with their session (`auth_refresh_rotations`).
    replaced: BTreeMap<String, Uuid>,
}

/// The sessions in memory. Deadlines are judged on the clock it is given.
pub struct InMemoryAuth {
    sessions: Mutex<Sessions>,
    clock: Arc<dyn Clock>,
    mitras: Arc<InMemoryTruth>,
}

impl InMemoryAuth {
    /// Sessions whose mitras' activity `mitras` holds.
    pub fn new(clock: Arc<dyn Clock>, mitras: Arc<InMemoryTruth>) -> Self {
        Self {
            sessions: Mutex::default(),
            clock,
            mitras,
        }
    }

    /// The user's sessions that are neither revoked nor expired.
    pub fn live_sessions(&self, user_id: Uuid) -> usize {
        let now = self.clock.now();
        let sessions = self.lock();
        let of_user = sessions.by_id.values().filter(|s| s.user_id == user_id);
        of_user.filter(|s| !s.revoked && s.expires_at > now).count()
    }

    fn lock(&self) -> MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A mitra's session needs the account active; other roles have no such flag here.
    fn account_active(&self, session: &Session) -> bool {
        session.role != Role::Mitra
            || self
                .mitras
                .state_of(MitraId::new(session.user_id))
                .is_some_and(|state| state.active)
    }
}

fn not_modelled<T>(what: &str) -> Result<T, TruthError> {
    Err(TruthError::Query(
        format!("InMemoryAuth does not model {what}").into(),
    ))
}

#[async_trait]
impl AuthStore for InMemoryAuth {
    async fn save_otp(
        &self,
        _: &Phone,
        _: Role,
        _: &str,
        _: OffsetDateTime,
    ) -> Result<(), TruthError> {
        not_modelled("OTP codes")
    }

    async fn check_otp(
        &self,
        _: &Phone,
        _: Role,
        _: &str,
        _: u32,
        _: OffsetDateTime,
    ) -> Result<OtpCheck, TruthError> {
        not_modelled("OTP codes")
    }

    async fn customer_by_phone_or_create(&self, _: &Phone) -> Result<UserRecord, TruthError> {
        not_modelled("accounts")
    }

    async fn mitra_by_phone(&self, _: &Phone) -> Result<Option<UserRecord>, TruthError> {
        not_modelled("accounts")
    }

    async fn operator_by_email(&self, _: &str) -> Result<Option<(Uuid, String)>, TruthError> {
        not_modelled("accounts")
    }

    async fn create_session(
        &self,
        user_id: Uuid,
        role: Role,
        refresh_hash: &str,
        expires_at: OffsetDateTime,
    ) -> Result<Uuid, TruthError> {
        let sid = Uuid::new_v4();
        let session = Session {
            user_id,
            role,
            refresh_hash: refresh_hash.to_owned(),
            expires_at,
            revoked: false,
        };
        self.lock().by_id.insert(sid, session);
        Ok(sid)
    }

    async fn rotate_session(
        &self,
        old_hash: &str,
        role: Role,
        new_hash: &str,
        expires_at: OffsetDateTime,
    ) -> Result<Rotation, TruthError> {
        let now = self.clock.now();
        let mut sessions = self.lock();
        let current = sessions.by_id.iter().find(|(_, s)| {
            s.refresh_hash == old_hash
                && s.role == role
                && !s.revoked
                && s.expires_at > now
                && self.account_active(s)
        });
        if let Some((&sid, _)) = current {
            sessions.replaced.insert(old_hash.to_owned(), sid);
            let session = sessions.by_id.get_mut(&sid).map(|session| {
                session.refresh_hash = new_hash.to_owned();
                session.expires_at = expires_at;
                session.reference(sid)
            });
            return Ok(session.map_or(Rotation::Refused, Rotation::Rotated));
        }
        // A hash this store already replaced: leaked or replayed, its session is revoked.
        let Some(&sid) = sessions.replaced.get(old_hash) else {
            return Ok(Rotation::Refused);
        };
        Ok(match sessions.by_id.get_mut(&sid) {
            Some(session) if !session.revoked => {
                session.revoked = true;
                Rotation::Reused(session.reference(sid))
            }
            _ => Rotation::Refused,
        })
    }

    async fn database_now(&self) -> Result<OffsetDateTime, TruthError> {
        Ok(self.clock.now())
    }

    async fn revoke_session(&self, sid: Uuid, user_id: Uuid) -> Result<bool, TruthError> {
        Ok(match self.lock().by_id.get_mut(&sid) {
            Some(session) if session.user_id == user_id && !session.revoked => {
                session.revoked = true;
                true
            }
            _ => false,
        })
    }

    async fn revoke_user_sessions(&self, user_id: Uuid) -> Result<u64, TruthError> {
        let mut sessions = self.lock();
        let mut revoked = 0;
        for session in sessions.by_id.values_mut() {
            if session.user_id == user_id && !session.revoked {
                session.revoked = true;
                revoked += 1;
            }
        }
        Ok(revoked)
    }
}
