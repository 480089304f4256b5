//! The app-event ports: the durable log the apps' streams are read from (Postgres), and the
//! best-effort signal that tells other instances something was appended (Valkey pub/sub).
//!
//! The log is the truth: a stream is served from it alone when the signal is lost (pub/sub is
//! at-most-once, and Valkey may be down). Events are written by the chat transitions
//! themselves, in their own transactions (`ChatStore`); nothing here appends.

use crate::{ChatSession, MirrorError, OnlineReason, Timeouts, TruthError};
use async_trait::async_trait;
use halo_domain::{MitraId, SessionStatus};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// Who a stream is for (the events' audience and recipient).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Audience {
    Customer(Uuid),
    Mitra(MitraId),
}

impl Audience {
    pub fn kind(self) -> AudienceKind {
        match self {
            Audience::Customer(_) => AudienceKind::Customer,
            Audience::Mitra(_) => AudienceKind::Mitra,
        }
    }

    pub fn id(self) -> Uuid {
        match self {
            Audience::Customer(id) => id,
            Audience::Mitra(id) => id.uuid(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudienceKind {
    Customer,
    Mitra,
}

/// Why an offer is no longer open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WithdrawReason {
    /// Another mitra accepted it.
    Taken,
    /// The offer's round or the blast timed out.
    Expired,
    /// The customer cancelled it.
    Cancelled,
}

impl WithdrawReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            WithdrawReason::Taken => "taken",
            WithdrawReason::Expired => "expired",
            WithdrawReason::Cancelled => "cancelled",
        }
    }
}

/// What a `session` event says the session is, for its recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionView {
    Is(SessionStatus),
    /// Moved to another mitra by an operator: no longer this (previous) mitra's.
    Reassigned,
}

impl SessionView {
    pub const fn as_str(self) -> &'static str {
        match self {
            SessionView::Is(status) => status.as_str(),
            SessionView::Reassigned => "reassigned",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppEvent {
    /// A blast reached this mitra; it can accept until `expires_at`.
    Offer {
        session_id: Uuid,
        minutes: u32,
        expires_at: OffsetDateTime,
    },
    OfferWithdrawn {
        session_id: Uuid,
        reason: WithdrawReason,
    },
    Session {
        session_id: Uuid,
        status: SessionView,
        mitra_id: Option<MitraId>,
        ends_at: Option<OffsetDateTime>,
        /// A queued session's place in line (customer events only).
        queue: Option<QueuePlace>,
    },
    /// To every customer: the number of available mitras went from zero to non-zero or back
    /// (`count` is the one the change was seen with).
    Availability { available: bool, count: u32 },
    /// The system set this mitra offline: it let too many offers in a row expire
    /// (`MissedOffers`), or an operator deactivated it (`Deactivated`: its streams end after
    /// this event).
    Away { reason: OnlineReason },
}

/// Where a waiting request stands (SPEC §12.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuePlace {
    /// 1 = next to be offered.
    pub position: u32,
    /// A moving average of recent waits; `None` before anyone has waited.
    pub estimated_wait_seconds: Option<u32>,
}

/// One row of the log: `seq` orders every event of every audience (see `EventLog`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEvent {
    pub seq: i64,
    pub audience: AudienceKind,
    /// Empty: every stream of the audience.
    pub recipients: Vec<Uuid>,
    pub event: AppEvent,
}

/// What one `read_after` read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventBatch {
    pub events: Vec<LoggedEvent>,
    /// The last `seq` read, skipped rows included (`None`: nothing after `after`).
    pub through: Option<i64>,
    /// `limit` rows were read: there may be more.
    pub full: bool,
}

/// A recipient's current state, read in one snapshot with the log position it reflects:
/// every event up to `position` is in it, none after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateAt {
    pub position: i64,
    /// A mitra's open offers with each one's expiry (empty for a customer).
    pub offers: Vec<(ChatSession, OffsetDateTime)>,
    /// Open sessions (queued, searching, awaiting payment or active) of the recipient.
    pub sessions: Vec<ChatSession>,
    /// The place in line of each queued session in `sessions`.
    pub queue: Vec<(Uuid, QueuePlace)>,
    /// A customer's: the newest `availability` event in the log, if any.
    pub availability: Option<AppEvent>,
}

/// The event log. Ordering guarantee every adapter MUST keep: `seq` is assigned in commit
/// order, so once a reader sees `seq = n`, no event with a smaller `seq` can appear later.
/// Reading "after the last seq seen" therefore never skips nor repeats an event.
///
/// # Errors
/// `TruthError::Unavailable` when Postgres does not answer; `Query` otherwise.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// The highest `seq` committed (0 when the log is empty).
    async fn head(&self) -> Result<i64, TruthError>;

    /// Every audience's events after `after`, in `seq` order, from at most `limit` rows. A row
    /// this version cannot read (a kind a newer release writes, during a rolling upgrade) is
    /// skipped, not an error, so the reader moves past it.
    async fn read_after(&self, after: i64, limit: u32) -> Result<EventBatch, TruthError>;

    /// One recipient's events after `after`, in `seq` order, at most `limit`; `recipients`
    /// holds that recipient only.
    async fn read_for(
        &self,
        audience: Audience,
        after: i64,
        limit: u32,
    ) -> Result<Vec<LoggedEvent>, TruthError>;

    /// Whether every event after `after` is still in the log (not pruned), and `after` is a
    /// position the log has reached.
    async fn resumable(&self, after: i64) -> Result<bool, TruthError>;

    /// The recipient's current state and its log position, in one snapshot.
    async fn state(&self, audience: Audience, timeouts: Timeouts) -> Result<StateAt, TruthError>;

    /// Appends an `availability` event with `count` unless the newest one already says the
    /// same (zero or not), under the log's order; true when it appended. Several instances
    /// seeing the same change append it once.
    async fn append_availability(&self, count: u32) -> Result<bool, TruthError>;

    /// Appends `away{reason}` to the mitra (a deactivation: the chat transitions append their
    /// own in their transactions).
    async fn append_away(&self, mitra: MitraId, reason: OnlineReason) -> Result<(), TruthError>;

    /// Deletes events older than `older_than` (a prefix of the log), at most `limit`.
    async fn prune(&self, older_than: Duration, limit: u32) -> Result<u64, TruthError>;
}

/// Tells the other instances that the log grew (Valkey pub/sub). At most once, best effort: a
/// lost signal delays delivery until their next poll of the log, nothing more.
///
/// # Errors
/// `MirrorError::Unavailable` when Valkey does not answer.
#[async_trait]
pub trait EventSignal: Send + Sync + 'static {
    async fn announce(&self) -> Result<(), MirrorError>;
}
