//! The beacon ("anyone available?"): computed at most once per TTL across all instances while
//! the mirror is trusted (a shared snapshot under one recompute lock), at most once per TTL per
//! instance from Postgres otherwise.

use super::Availability;
use crate::error::AvailabilityError;
use halo_domain::{Beacon, MitraId, MitraState};
use halo_ports::{BeaconClaim, BeaconLock};
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a beacon recompute lock lives if its holder dies before storing the snapshot.
const BEACON_LOCK_TTL: Duration = Duration::from_secs(2);
/// How long a caller that found another instance recomputing waits for its snapshot.
const BEACON_WAIT: Duration = Duration::from_millis(300);
const BEACON_POLL: Duration = Duration::from_millis(10);

/// The last beacon this instance answered, and when it learnt it.
#[derive(Default)]
pub(super) struct LocalBeacon {
    last: Mutex<Option<(Beacon, Instant)>>,
    /// Held by the one caller of this instance computing a beacon outside the shared lock
    /// (Valkey down, or the lock's holder slow or dead): the others wait for its answer.
    computing: tokio::sync::Mutex<()>,
}

impl LocalBeacon {
    fn younger_than(&self, age: Duration) -> Option<Beacon> {
        let last = self.last.lock().ok()?;
        last.filter(|(_, at)| at.elapsed() < age)
            .map(|(beacon, _)| beacon)
    }

    fn remember(&self, beacon: Beacon) {
        if let Ok(mut last) = self.last.lock() {
            *last = Some((beacon, Instant::now()));
        }
    }

    fn forget(&self) {
        if let Ok(mut last) = self.last.lock() {
            *last = None;
        }
    }
}

impl Availability {
    /// The beacon: computed at most once per TTL across all instances (shared snapshot, one
    /// recompute lock); while the mirror is not trusted, from Postgres, at most once per TTL
    /// per instance.
    pub async fn count_available(&self) -> Result<Beacon, AvailabilityError> {
        let ttl = Duration::from_secs(self.settings.get().beacon_ttl_seconds().into());
        if !self.health.is_trusted() {
            self.metrics.valkey_fallback("count_available");
            return self.beacon_from_postgres(ttl).await;
        }
        let deadline = Instant::now() + BEACON_WAIT;
        loop {
            match self.mirror.claim_beacon(BEACON_LOCK_TTL).await {
                Ok(BeaconClaim::Cached(beacon)) => {
                    self.beacon.remember(beacon);
                    return Ok(beacon);
                }
                Ok(BeaconClaim::Compute(lock)) => return self.recompute_beacon(ttl, lock).await,
                // Someone computes it: this instance's last answer, if still within the TTL,
                // serves at once instead of waiting.
                Ok(BeaconClaim::Busy) if self.beacon.younger_than(ttl).is_some() => {
                    return self.beacon_while_busy(ttl).await;
                }
                Ok(BeaconClaim::Busy) if Instant::now() < deadline && self.health.is_trusted() => {
                    tokio::time::sleep(BEACON_POLL).await;
                }
                Ok(BeaconClaim::Busy) => return self.beacon_while_busy(ttl).await,
                Err(error) => {
                    self.mirror_read_failed("count_available", &error);
                    return self.beacon_from_postgres(ttl).await;
                }
            }
        }
    }

    fn beacon_of(&self, candidates: &[(MitraId, MitraState)]) -> Beacon {
        let count = candidates.iter().filter(|(_, s)| self.available(s)).count();
        self.metrics.beacon_recomputed();
        Beacon::from_count(count)
    }

    async fn recompute_beacon(
        &self,
        ttl: Duration,
        lock: BeaconLock,
    ) -> Result<Beacon, AvailabilityError> {
        let beacon = self.beacon_of(&self.candidate_states("count_available").await?);
        self.beacon.remember(beacon);
        let now = self.clock.now();
        self.side_effect("store_beacon", |m| m.store_beacon(beacon, now, ttl, &lock))
            .await;
        Ok(beacon)
    }

    /// The lock's holder is slow or died: this instance's last beacon if it is recent enough,
    /// else one computation per instance from live data (not stored: the lock is not ours).
    async fn beacon_while_busy(&self, ttl: Duration) -> Result<Beacon, AvailabilityError> {
        let recent = ttl + BEACON_LOCK_TTL;
        self.local_beacon(recent, || async {
            Ok(self.beacon_of(&self.candidate_states("count_available").await?))
        })
        .await
    }

    /// The mirror is not trusted: the beacon from Postgres, reused for the TTL.
    async fn beacon_from_postgres(&self, ttl: Duration) -> Result<Beacon, AvailabilityError> {
        self.local_beacon(ttl, || async {
            Ok(self.beacon_of(&self.candidates_in_postgres().await?))
        })
        .await
    }

    /// The last beacon if younger than `max_age`; else `compute`, by one caller at a time (the
    /// others find its answer when they get the lock).
    async fn local_beacon<F>(
        &self,
        max_age: Duration,
        compute: impl FnOnce() -> F,
    ) -> Result<Beacon, AvailabilityError>
    where
        F: Future<Output = Result<Beacon, AvailabilityError>>,
    {
        if let Some(beacon) = self.beacon.younger_than(max_age) {
            return Ok(beacon);
        }
        let _computing = self.beacon.computing.lock().await;
        if let Some(beacon) = self.beacon.younger_than(max_age) {
            return Ok(beacon);
        }
        let beacon = compute().await?;
        self.beacon.remember(beacon);
        Ok(beacon)
    }

    /// The beacon this instance last answered, if it is younger than the TTL; `None` else.
    /// Computes nothing: a reader that only watches the beacon (the customers' availability
    /// event, SPEC §12.9) must not make the polls' answers older than they would be.
    pub fn last_beacon(&self) -> Option<Beacon> {
        let ttl = Duration::from_secs(self.settings.get().beacon_ttl_seconds().into());
        self.beacon.younger_than(ttl)
    }

    /// Drops the shared snapshot and the local copy (config change).
    pub async fn bust_beacon(&self) {
        self.beacon.forget();
        self.side_effect("bust_beacon", |m| m.bust_beacon()).await;
    }
}
