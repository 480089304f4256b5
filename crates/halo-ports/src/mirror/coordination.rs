//! The mirror as the instances' meeting point: the shared beacon snapshot and its recompute
//! lock, cluster-wide leases, and the config invalidation channel.

use super::MirrorError;
use async_trait::async_trait;
use halo_domain::Beacon;
use std::time::Duration;
use time::OffsetDateTime;

/// The beacon snapshot as found, or the right to compute it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeaconClaim {
    /// A snapshot younger than its TTL exists.
    Cached(Beacon),
    /// No snapshot; this caller holds the recompute lock (this owner token) and must store one.
    Compute(BeaconLock),
    /// No snapshot; another caller holds the lock and is computing it.
    Busy,
}

/// The recompute lock's owner token: only its owner releases the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeaconLock(pub String);

/// # Errors
/// Every method: `MirrorError::Unavailable` as described in the module. `claim_beacon` returns
/// `MirrorError::Unseeded` when the generation marker is missing.
#[async_trait]
pub trait MirrorCoordination: Send + Sync + 'static {
    /// Reads the beacon snapshot; on a miss, tries to take the recompute lock for `lock_ttl`.
    async fn claim_beacon(&self, lock_ttl: Duration) -> Result<BeaconClaim, MirrorError>;

    /// Stores the snapshot with a TTL and releases the recompute lock if `lock` still owns it.
    async fn store_beacon(
        &self,
        beacon: Beacon,
        computed_at: OffsetDateTime,
        ttl: Duration,
        lock: &BeaconLock,
    ) -> Result<(), MirrorError>;

    /// Deletes the snapshot (config change).
    async fn bust_beacon(&self) -> Result<(), MirrorError>;

    /// Takes a cluster-wide lease for `ttl`; false when another instance holds it.
    async fn try_lease(&self, name: &str, ttl: Duration) -> Result<bool, MirrorError>;

    /// Publishes on `config:invalidate`.
    async fn publish_config_invalidate(&self) -> Result<(), MirrorError>;
}
