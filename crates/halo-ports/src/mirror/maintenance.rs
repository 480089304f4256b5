//! The mirror's upkeep: readiness, the seed and the drift report, the generation marker, and
//! the sweeps' primitives (fence, restore, the heartbeats of the online set).

use super::MirrorError;
use async_trait::async_trait;
use halo_domain::{MirrorImage, MitraId};
use time::OffsetDateTime;

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
/// Every method that does I/O: `MirrorError::Unavailable` as described in the module.
/// `online_heartbeats` returns `MirrorError::Unseeded` when the generation marker is missing;
/// `is_seeded` answers `false` instead.
#[async_trait]
pub trait MirrorMaintenance: Send + Sync + 'static {
    /// Answers when Valkey is reachable (readiness probe).
    async fn ping(&self) -> Result<(), MirrorError>;

    /// A token that changes whenever a mirror write lands; read before the truth for a seed.
    async fn write_token(&self) -> Result<u64, MirrorError>;

    /// Replaces every availability key with `image` atomically (no reader sees a half-built
    /// mirror), except the keys of mitras a mirror write touched after `token` was read (they
    /// are newer than the image); refused as `Superseded` when a seed that read a later token
    /// was applied. Heartbeats of online, active mitras become the newest of the value in
    /// Valkey and `image.heartbeat_floor`, `now` where neither exists. Capacity counts and idle
    /// ranks follow `image.capacity_order` (a newer recount's stay). May take several round
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

    /// How many times a connection was found dropped by the server, ever (no I/O). A change
    /// means Valkey restarted or failed over, possibly with older data: the watcher reseeds.
    fn connection_drops(&self) -> u64 {
        0
    }

    /// The auto-offline sweep's fence, atomic: takes out of `mitras:online` and the idle order
    /// (heartbeat key dropped) those of `ids` whose heartbeat is still missing or older than
    /// `cutoff`, and returns them. A ping that landed since the sweep read the heartbeats keeps
    /// its mitra online; a ping after the fence answers "offline", as the sweep decided.
    async fn fence_stale(
        &self,
        ids: &[MitraId],
        cutoff: OffsetDateTime,
    ) -> Result<Vec<MitraId>, MirrorError>;

    /// Mitras Postgres holds online with these fresh heartbeats (newer than the mirror's): in
    /// the online set with the newest of both heartbeats, and in the idle order at the rank of
    /// their newest count, unless deactivated meanwhile or written since `token` (read before
    /// Postgres was: that write is newer than this read).
    async fn restore_online(
        &self,
        beats: &[(MitraId, OffsetDateTime)],
        token: u64,
    ) -> Result<(), MirrorError>;

    /// Heartbeats of every mitra in `mitras:online` (`None` = no heartbeat key).
    async fn online_heartbeats(
        &self,
    ) -> Result<Vec<(MitraId, Option<OffsetDateTime>)>, MirrorError>;
}
