//! The Valkey mirror port: availability keys, the shared beacon snapshot, sweep leases and the
//! seed. Every method is one round trip unless its doc says otherwise (an adapter may send a
//! read again once when it finds its connection dropped).

use crate::BoxError;
use crate::CapacityCount;
use async_trait::async_trait;
use halo_domain::{Beacon, MirrorImage, MitraId, MitraState};
use std::time::Duration;
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// Valkey did not answer in time, refused the connection, or dropped it.
    #[error("valkey unavailable")]
    Unavailable(#[source] BoxError),
    /// Valkey answered with data the adapter cannot read (a corrupted key, a bug).
    #[error("valkey returned unreadable data: {0}")]
    Corrupt(String),
    /// The generation marker is missing (flushed, or restarted empty): the mirror's answers
    /// are not derived from Postgres until the next seed. Found in the same round trip as the
    /// read that returns it.
    #[error("valkey holds no seeded mirror (generation marker missing)")]
    Unseeded,
}

/// What the heartbeat guard found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatOutcome {
    /// The mitra is in `mitras:deactivated`: refuse the ping.
    Deactivated,
    /// The ping was recorded (the mitra is online).
    Recorded,
    /// The mitra is not online: nothing recorded (a heartbeat never sets a mitra online).
    Offline,
}

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

/// The outcome of replacing the whole mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedWrite {
    /// The image is in, except for the mitras a mirror write touched after the seed's write
    /// token was read: their live keys are newer than the image and were kept.
    Applied,
    /// A seed that read the truth later was already applied: this older one changed nothing
    /// (the mirror already holds data at least as new).
    Superseded,
    /// The staged sets were not what was staged (they expired during a stall): nothing
    /// changed. Stage again.
    Raced,
}

/// # Errors
/// Every method returns `MirrorError::Unavailable` when Valkey does not answer in time, or when
/// the connection was found dropped (the server may have come back with older data: the
/// request is not sent again). Reads that answer about availability (`is_deactivated`,
/// `mitra_states`, `candidate_states`, `online_heartbeats`, `online_count`, `claim_beacon`, and
/// `heartbeat` when the key is missing) return `MirrorError::Unseeded` when the generation
/// marker is missing.
#[async_trait]
pub trait AvailabilityMirror: Send + Sync + 'static {
    /// Answers when Valkey is reachable (readiness probe).
    async fn ping(&self) -> Result<(), MirrorError>;

    /// Refuses deactivated mitras, records the ping only for online ones: one round trip for an
    /// online active mitra, two otherwise.
    async fn heartbeat(
        &self,
        id: MitraId,
        at: OffsetDateTime,
    ) -> Result<HeartbeatOutcome, MirrorError>;

    /// Adds to `mitras:online`, sets the capacity (unless a newer count landed, see
    /// `set_capacity`), and stamps the heartbeat unless the mitra is deactivated (heartbeat
    /// keys exist only for online, active mitras).
    async fn mark_online(
        &self,
        id: MitraId,
        at: OffsetDateTime,
        capacity: CapacityCount,
    ) -> Result<(), MirrorError>;

    /// Removes from `mitras:online` and drops the heartbeats of all `ids`.
    async fn mark_offline(&self, ids: &[MitraId]) -> Result<(), MirrorError>;

    /// The auto-offline sweep's fence, atomic: takes out of `mitras:online` (heartbeat key
    /// dropped) those of `ids` whose heartbeat is still missing or older than `cutoff`, and
    /// returns them. A ping that landed since the sweep read the heartbeats keeps its mitra
    /// online; a ping after the fence answers "offline", as the sweep decided.
    async fn fence_stale(
        &self,
        ids: &[MitraId],
        cutoff: OffsetDateTime,
    ) -> Result<Vec<MitraId>, MirrorError>;

    /// Mitras Postgres holds online with these fresh heartbeats (newer than the mirror's): in
    /// the online set with the newest of both heartbeats, unless deactivated meanwhile or
    /// written since `token` (read before Postgres was: that write is newer than this read).
    async fn restore_online(
        &self,
        beats: &[(MitraId, OffsetDateTime)],
        token: u64,
    ) -> Result<(), MirrorError>;

    /// Adds to or removes from `mitras:deactivated`; adding also takes the mitra out of
    /// `mitras:online` and drops its heartbeat key.
    async fn set_deactivated(&self, id: MitraId, deactivated: bool) -> Result<(), MirrorError>;

    /// Writes the count unless a count with a higher `seq` already landed: recounts that
    /// finish out of order leave the newest count, as in Postgres.
    async fn set_capacity(&self, id: MitraId, capacity: CapacityCount) -> Result<(), MirrorError>;

    async fn is_deactivated(&self, id: MitraId) -> Result<bool, MirrorError>;

    /// Everything the availability rules need about these mitras, in their order: one round
    /// trip however many (an operator's page of mitras).
    async fn mitra_states(&self, ids: &[MitraId]) -> Result<Vec<MitraState>, MirrorError>;

    /// Everything the availability rules need about one mitra.
    async fn mitra_state(&self, id: MitraId) -> Result<MitraState, MirrorError> {
        self.mitra_states(&[id])
            .await?
            .pop()
            .ok_or_else(|| MirrorError::Corrupt("no state for the mitra asked about".into()))
    }

    /// States of the online, non-deactivated mitras: one round trip whatever their number.
    async fn candidate_states(&self) -> Result<Vec<(MitraId, MitraState)>, MirrorError>;

    /// Heartbeats of every mitra in `mitras:online` (`None` = no heartbeat key).
    async fn online_heartbeats(
        &self,
    ) -> Result<Vec<(MitraId, Option<OffsetDateTime>)>, MirrorError>;

    /// `SCARD mitras:online`.
    async fn online_count(&self) -> Result<u64, MirrorError>;

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

    /// A token that changes whenever a mirror write lands; read before the truth for a seed.
    async fn write_token(&self) -> Result<u64, MirrorError>;

    /// Replaces every availability key with `image` atomically (no reader sees a half-built
    /// mirror), except the keys of mitras a mirror write touched after `token` was read (they
    /// are newer than the image); refused as `Superseded` when a seed that read a later token
    /// was applied. Heartbeats of online, active mitras become the newest of the value in
    /// Valkey and `image.heartbeat_floor`, `now` where neither exists. May take several round
    /// trips.
    async fn replace_all(
        &self,
        image: &MirrorImage,
        token: u64,
        now: OffsetDateTime,
    ) -> Result<SeedWrite, MirrorError>;

    /// Reads every availability key (drift report). Several round trips.
    async fn read_image(&self) -> Result<MirrorImage, MirrorError>;

    /// True when the generation marker written by the last seed exists (false = flushed).
    async fn is_seeded(&self) -> Result<bool, MirrorError>;

    /// Takes a cluster-wide lease for `ttl`; false when another instance holds it.
    async fn try_lease(&self, name: &str, ttl: Duration) -> Result<bool, MirrorError>;

    /// Publishes on `config:invalidate`.
    async fn publish_config_invalidate(&self) -> Result<(), MirrorError>;

    /// How many times a connection was found dropped by the server, ever (no I/O). A change
    /// means Valkey restarted or failed over, possibly with older data: the watcher reseeds.
    fn connection_drops(&self) -> u64 {
        0
    }
}
