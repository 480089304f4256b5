//! The Postgres truth port: durable writes and the fallback equivalents of every mirror read.

use crate::BoxError;
use async_trait::async_trait;
use halo_domain::{AppSettings, MitraId, MitraState, SettingError, SettingKey, TruthSnapshot};
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
}

impl OnlineReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::AutoOffline => "auto_offline",
            Self::Operator => "operator",
            Self::Deactivated => "deactivated",
        }
    }
}

/// One row of the operators' mitra list (Postgres columns; live state comes from the mirror).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MitraRow {
    pub id: MitraId,
    pub phone: String,
    pub display_name: String,
    pub active: bool,
    pub online: bool,
    pub created_at: OffsetDateTime,
}

/// A mitra's open-session count with its place in the order of counts: a count taken later
/// (after every transition committed before it) has a higher `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapacityCount {
    pub open: u32,
    pub seq: u64,
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

/// One audited settings change (`app_config_history`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingChange {
    pub key: String,
    pub old: i64,
    pub new: i64,
    pub changed_by: Option<uuid::Uuid>,
    pub changed_at: OffsetDateTime,
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

    /// Revokes every live refresh session of a user; returns how many were revoked.
    async fn revoke_auth_sessions(&self, user_id: MitraId) -> Result<u64, TruthError>;

    /// Heartbeat fallback while Valkey is down: guard and record the ping in one statement.
    /// Records the heartbeat only for an active, online mitra. `None` when the mitra is unknown.
    async fn heartbeat_fallback(
        &self,
        id: MitraId,
        at: OffsetDateTime,
    ) -> Result<Option<MitraFlags>, TruthError>;

    /// The flags only (route activity checks while Valkey is down). `None` when unknown.
    async fn mitra_flags(&self, id: MitraId) -> Result<Option<MitraFlags>, TruthError>;

    /// Count of the mitra's `active` + `pending_payment` sessions, ordered among the counts of
    /// this mitra (see `CapacityCount`).
    async fn count_open_sessions(&self, id: MitraId) -> Result<CapacityCount, TruthError>;

    /// Everything the availability rules need about these mitras, in one statement; unknown
    /// ids are left out.
    async fn mitra_states(&self, ids: &[MitraId])
        -> Result<Vec<(MitraId, MitraState)>, TruthError>;

    /// Everything the availability rules need about one mitra. `None` when unknown.
    async fn mitra_state(&self, id: MitraId) -> Result<Option<MitraState>, TruthError> {
        Ok(self
            .mitra_states(&[id])
            .await?
            .pop()
            .map(|(_, state)| state))
    }

    /// States of every online, active mitra (the fallback of the blast and the beacon).
    async fn candidate_states(&self) -> Result<Vec<(MitraId, MitraState)>, TruthError>;

    /// Number of mitras with `is_online = true`.
    async fn count_online(&self) -> Result<u64, TruthError>;

    /// Every mitra with its flags and open-session count, read in one consistent snapshot, and
    /// when (the database's clock).
    async fn mirror_truth(&self) -> Result<TruthSnapshot, TruthError>;

    /// Copies heartbeat timestamps to `last_heartbeat_at` in ONE statement; returns rows updated.
    async fn record_heartbeats(
        &self,
        beats: &[(MitraId, OffsetDateTime)],
    ) -> Result<u64, TruthError>;

    /// The operator settings from `app_config`, validated (defaults for missing keys).
    async fn load_settings(&self) -> Result<AppSettings, TruthError>;

    /// Applies `changes` to the settings as stored now, in one transaction that serializes
    /// with every other change: validated against the current values of the other keys (a
    /// cross-field rule cannot be broken by two changes racing), only the keys that change are
    /// written, each with an audit row (who, old, new). `Ok(Err(_))` when the result is not
    /// valid (nothing written).
    async fn change_settings(
        &self,
        changes: &[(SettingKey, i64)],
        changed_by: uuid::Uuid,
    ) -> Result<Result<AppSettings, SettingError>, TruthError>;

    /// The newest `limit` settings changes, newest first.
    async fn settings_history(&self, limit: u32) -> Result<Vec<SettingChange>, TruthError>;

    /// Creates a mitra (offline, active). `Conflict` when the phone is taken.
    async fn create_mitra(&self, phone: &str, display_name: &str) -> Result<MitraRow, TruthError>;

    /// A page of mitras, oldest first, and the total count.
    async fn list_mitras(
        &self,
        offset: u32,
        limit: u32,
    ) -> Result<(Vec<MitraRow>, u64), TruthError>;

    /// One mitra's row. `None` when unknown.
    async fn mitra_row(&self, id: MitraId) -> Result<Option<MitraRow>, TruthError>;
}
