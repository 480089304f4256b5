//! The Postgres truth port: durable availability writes and the fallback equivalents of every
//! mirror read. Operator administration (`MitraDirectory`) and settings (`SettingsStore`) have
//! ports of their own.

use crate::BoxError;
use async_trait::async_trait;
use halo_domain::{IdleRank, MitraId, MitraState, TruthSnapshot};
use std::collections::BTreeSet;
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum TruthError {
    #[error("mitra not found")]
    MitraNotFound,
    /// Postgres did not answer (connection refused, pool timeout, statement timeout).
    #[error("postgres unavailable")]
    Unavailable(#[source] BoxError),
    /// A unique value is already taken (e.g. a mitra's phone).
    #[error("already exists: {0}")]
    Conflict(String),
    /// Postgres answered with something the adapter cannot use (a bug or a schema mismatch).
    #[error("postgres query failed")]
    Query(#[source] BoxError),
}

/// Why a mitra's online flag changed; stored in `mitra_online_logs.reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnlineReason {
    /// The mitra's own toggle.
    Manual,
    /// The auto-offline sweep found the heartbeat stale.
    AutoOffline,
    /// An operator forced a ghost offline.
    Operator,
    /// Deactivation sets the mitra offline.
    Deactivated,
    /// It let `missed_offers_before_away` offers in a row expire (SPEC §12.7).
    MissedOffers,
}

impl OnlineReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::AutoOffline => "auto_offline",
            Self::Operator => "operator",
            Self::Deactivated => "deactivated",
            Self::MissedOffers => "missed_offers",
        }
    }
}

/// A mitra's open-session count with its place in the order of counts: a count taken later
/// (after every transition committed before it) has a higher `seq`. The recount also brings
/// the mitra's idle rank (SPEC §12.5) as of that count, so the mirror orders both alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapacityCount {
    pub open: u32,
    pub seq: u64,
    pub idle_rank: IdleRank,
}

/// What the auto-offline sweep's guarded update did with each id it was given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfflineSweep {
    /// Online with a stale or missing heartbeat: now offline (one audit row each).
    pub changed: Vec<MitraId>,
    /// Already offline in Postgres (the mirror had drifted).
    pub already_offline: Vec<MitraId>,
    /// Left online: Postgres holds this fresh heartbeat (a ping answered from Postgres, or a
    /// toggle, newer than what the mirror showed).
    pub fresh: Vec<(MitraId, OffsetDateTime)>,
}

/// The two flags the heartbeat guard needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MitraFlags {
    pub active: bool,
    pub online: bool,
}

/// # Errors
/// Every method returns `TruthError::Unavailable` when Postgres does not answer, and
/// `TruthError::MitraNotFound` only where its doc says so.
#[async_trait]
pub trait AvailabilityTruth: Send + Sync + 'static {
    /// Answers when Postgres is reachable (readiness probe).
    async fn ping(&self) -> Result<(), TruthError>;

    /// Sets `is_online`, with one audit row per real transition; going (or staying) online
    /// stamps `last_heartbeat_at`. Returns whether the flag changed.
    /// `MitraNotFound` when the mitra does not exist.
    async fn set_online(
        &self,
        id: MitraId,
        online: bool,
        reason: OnlineReason,
    ) -> Result<bool, TruthError>;

    /// The auto-offline sweep, one statement: sets offline those of `ids` that are online with
    /// a `last_heartbeat_at` missing or older than `stale_before` (the guard that keeps a
    /// mitra whose pings reached Postgres online), and says what it did with each id.
    async fn set_offline_many(
        &self,
        ids: &[MitraId],
        reason: OnlineReason,
        stale_before: OffsetDateTime,
    ) -> Result<OfflineSweep, TruthError>;

    /// Sets `mitras.is_active`. `MitraNotFound` when the mitra does not exist.
    async fn set_active(&self, id: MitraId, active: bool) -> Result<(), TruthError>;

    /// Heartbeat fallback while Valkey is down: guard and record the ping in one statement.
    /// Records the heartbeat only for an active, online mitra, and only when it is more than a
    /// second newer than the stored one (pings are seconds apart; freshness is judged in tens
    /// of seconds). `None` when the mitra is unknown. The answer's `active` is the flag; its
    /// `online` says whether the ping counts as an online mitra's: recorded now, or one was
    /// less than a second before it (never for an offline mitra).
    async fn heartbeat_fallback(
        &self,
        id: MitraId,
        at: OffsetDateTime,
    ) -> Result<Option<MitraFlags>, TruthError>;

    /// The flags only (route activity checks while Valkey is down). `None` when unknown.
    async fn mitra_flags(&self, id: MitraId) -> Result<Option<MitraFlags>, TruthError>;

    /// Count of the mitra's `active` + `pending_payment` sessions, ordered among the counts of
    /// this mitra (see `CapacityCount`), and its idle rank: moved to the latest start or end of
    /// its sessions when that is newer than the rank it had (a session's times count once it
    /// started: accepted or paid). `MitraNotFound` when the mitra does not exist.
    async fn count_open_sessions(&self, id: MitraId) -> Result<CapacityCount, TruthError>;

    /// Everything the availability rules need about these mitras, in one statement; unknown
    /// ids are left out.
    async fn mitra_states(&self, ids: &[MitraId])
        -> Result<Vec<(MitraId, MitraState)>, TruthError>;

    /// States of every online, active mitra (the fallback of the blast and the beacon).
    async fn candidate_states(&self) -> Result<Vec<(MitraId, MitraState)>, TruthError>;

    /// The fallback of an offer round (SPEC §12.5): up to `limit` online, active mitras not in
    /// `exclude` whose `last_heartbeat_at` is at or after `fresh_since` and whose open sessions
    /// are fewer than `max_customers`, in idle order (rank, then id), with their states. One
    /// statement, whose work grows with `limit` and the mitras it passes over, not with the
    /// number online.
    async fn offer_candidates(
        &self,
        limit: usize,
        exclude: &BTreeSet<MitraId>,
        fresh_since: OffsetDateTime,
        max_customers: u32,
    ) -> Result<Vec<(MitraId, MitraState)>, TruthError>;

    /// Number of mitras with `is_online = true`.
    async fn count_online(&self) -> Result<u64, TruthError>;

    /// Every mitra with its flags and open-session count, read in one consistent snapshot, and
    /// when (the database's clock).
    async fn mirror_truth(&self) -> Result<TruthSnapshot, TruthError>;

    /// Copies heartbeat timestamps to `last_heartbeat_at` in ONE statement, each only over an
    /// older value (never backwards); returns the rows it moved forward.
    async fn record_heartbeats(
        &self,
        beats: &[(MitraId, OffsetDateTime)],
    ) -> Result<u64, TruthError>;
}
