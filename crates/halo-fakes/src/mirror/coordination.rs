//! The beacon snapshot with its recompute lock (`claim_beacon.lua`, `store_beacon.lua`),
//! leases and the invalidation channel; and the abuse limits' windows, which the adapter keeps
//! in the same Valkey.

use super::{forget_expired, live, Expiring, InMemoryMirror};
use async_trait::async_trait;
use halo_domain::Beacon;
use halo_ports::{BeaconClaim, BeaconLock, MirrorCoordination, MirrorError, RateCounter};
use std::sync::atomic::Ordering;
use std::time::Duration;
use time::OffsetDateTime;

#[async_trait]
impl MirrorCoordination for InMemoryMirror {
    async fn claim_beacon(&self, lock_ttl: Duration) -> Result<BeaconClaim, MirrorError> {
        let now = self.now();
        let mut s = self.enter("claim_beacon")?;
        s.ensure_seeded()?;
        if let Some(cached) = live(&mut s.snapshot, now) {
            return Ok(BeaconClaim::Cached(cached.value));
        }
        if live(&mut s.snapshot_lock, now).is_some() {
            return Ok(BeaconClaim::Busy);
        }
        let n = self.inner.lock_owners.fetch_add(1, Ordering::SeqCst);
        let owner = format!("in-memory-{n}");
        s.snapshot_lock = Some(Expiring::new(owner.clone(), now, lock_ttl));
        Ok(BeaconClaim::Compute(BeaconLock(owner)))
    }

    /// Stored whether or not the mirror is seeded (as the adapter's script does).
    async fn store_beacon(
        &self,
        beacon: Beacon,
        _computed_at: OffsetDateTime,
        ttl: Duration,
        lock: &BeaconLock,
    ) -> Result<(), MirrorError> {
        let now = self.now();
        let mut s = self.enter("store_beacon")?;
        s.snapshot = Some(Expiring::new(beacon, now, ttl));
        if live(&mut s.snapshot_lock, now).is_some_and(|held| held.value == lock.0) {
            s.snapshot_lock = None;
        }
        Ok(())
    }

    async fn bust_beacon(&self) -> Result<(), MirrorError> {
        self.enter("bust_beacon")?.snapshot = None;
        Ok(())
    }

    async fn try_lease(&self, name: &str, ttl: Duration) -> Result<bool, MirrorError> {
        let now = self.now();
        let mut s = self.enter("try_lease")?;
        forget_expired(&mut s.leases, name, now);
        if s.leases.contains_key(name) {
            return Ok(false);
        }
        s.leases
            .insert(name.to_owned(), Expiring::new((), now, ttl));
        Ok(true)
    }

    /// Counted (`invalidations_published`); there are no subscribers in memory.
    async fn publish_config_invalidate(&self) -> Result<(), MirrorError> {
        drop(self.enter("publish_config_invalidate")?);
        self.inner.invalidations.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A window starts at its first hit and expires with the window (`SET NX PX`, `INCR`, `PTTL`).
#[async_trait]
impl RateCounter for InMemoryMirror {
    async fn hit(&self, bucket: &str, window: Duration) -> Result<(u64, Duration), MirrorError> {
        let now = self.now();
        let mut s = self.enter("rate_limit")?;
        forget_expired(&mut s.rate_windows, bucket, now);
        let counted = s
            .rate_windows
            .entry(bucket.to_owned())
            .or_insert_with(|| Expiring::new(0, now, window));
        counted.value += 1;
        let count = counted.value;
        let left = counted
            .until
            .map_or(window, |until| (until - now).try_into().unwrap_or_default());
        Ok((count, left))
    }
}
