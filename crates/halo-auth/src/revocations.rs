//! The in-process list of revoked sessions, so that every authenticated request is checked
//! without a store round trip (heartbeats stay at zero Postgres queries).
//!
//! It is filled from Postgres, the truth: fully at start-up (every revocation younger than the
//! access-token TTL, since older sessions' access tokens have expired anyway), then by a poll of
//! what was revoked since the last poll. The instance that revokes a session also records it at
//! once. Another instance refuses the token within one poll interval.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// Re-reads a little before the last poll: a revocation stamped just before a poll may commit
/// just after it, and the app's clock may trail the database's.
const POLL_OVERLAP: Duration = Duration::seconds(60);

#[derive(Default)]
pub struct Revocations {
    revoked: RwLock<HashMap<Uuid, OffsetDateTime>>,
    last_poll: Mutex<Option<OffsetDateTime>>,
}

impl Revocations {
    pub fn is_revoked(&self, sid: Uuid) -> bool {
        self.revoked
            .read()
            .map(|revoked| revoked.contains_key(&sid))
            .unwrap_or(true)
    }

    pub fn record(&self, sid: Uuid, at: OffsetDateTime) {
        if let Ok(mut revoked) = self.revoked.write() {
            revoked.insert(sid, at);
        }
    }

    /// Where the next poll starts: everything within the token TTL the first time.
    pub fn poll_from(&self, now: OffsetDateTime, token_ttl: Duration) -> OffsetDateTime {
        let last = self.last_poll.lock().ok().and_then(|last| *last);
        last.map_or(now - token_ttl, |last| last - POLL_OVERLAP)
    }

    /// Records a poll's findings and forgets revocations whose tokens have all expired.
    pub fn merge(
        &self,
        polled_at: OffsetDateTime,
        found: Vec<(Uuid, OffsetDateTime)>,
        token_ttl: Duration,
    ) {
        if let Ok(mut revoked) = self.revoked.write() {
            revoked.extend(found);
            let horizon = polled_at - token_ttl - POLL_OVERLAP;
            revoked.retain(|_, at| *at > horizon);
        }
        if let Ok(mut last) = self.last_poll.lock() {
            *last = Some(polled_at);
        }
    }

    pub fn count(&self) -> usize {
        self.revoked.read().map_or(0, |revoked| revoked.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_poll_covers_the_token_ttl_and_later_ones_overlap() {
        let list = Revocations::default();
        let now = OffsetDateTime::now_utc();
        let ttl = Duration::hours(1);
        assert_eq!(list.poll_from(now, ttl), now - ttl);
        list.merge(now, Vec::new(), ttl);
        assert_eq!(list.poll_from(now, ttl), now - POLL_OVERLAP);
    }

    #[test]
    fn revocations_are_kept_while_their_tokens_may_live() {
        let list = Revocations::default();
        let now = OffsetDateTime::now_utc();
        let ttl = Duration::hours(1);
        let (fresh, stale) = (Uuid::new_v4(), Uuid::new_v4());
        list.merge(
            now,
            vec![
                (fresh, now - Duration::minutes(5)),
                (stale, now - Duration::hours(3)),
            ],
            ttl,
        );
        assert!(list.is_revoked(fresh));
        assert!(!list.is_revoked(stale), "its tokens expired long ago");
        let local = Uuid::new_v4();
        list.record(local, now);
        assert!(list.is_revoked(local));
        assert_eq!(list.count(), 2);
    }
}
