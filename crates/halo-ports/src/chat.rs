//! The chat-session port (Postgres). Every transition is one transaction whose conditions make it
//! safe under concurrency (first accept wins, capacity never exceeded, timers claimed once).

use crate::TruthError;
use async_trait::async_trait;
use halo_domain::{AppSettings, MitraId, SessionStatus};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatSession {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub mitra_id: Option<MitraId>,
    pub status: SessionStatus,
    pub minutes: u32,
    pub created_at: OffsetDateTime,
    pub accepted_at: Option<OffsetDateTime>,
    pub ends_at: Option<OffsetDateTime>,
    pub ended_at: Option<OffsetDateTime>,
    pub end_reason: Option<String>,
}

/// Who acts on a session: the condition every party transition checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Customer(Uuid),
    Mitra(MitraId),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptOutcome {
    Accepted(ChatSession),
    /// Another mitra accepted first, or the request is no longer searching.
    Taken,
    /// The mitra already holds `max_customers` sessions.
    AtCapacity,
    /// The blast never reached this mitra, or it rejected it.
    NotOffered,
    /// The mitra's account is deactivated (checked in Postgres under the mitra's lock, so a
    /// mirror that missed the deactivation cannot let it through).
    Inactive,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetOutcome {
    Created(ChatSession),
    AtCapacity,
    Inactive,
    /// The customer already holds its limit of open requests; this is the oldest.
    OpenRequest(Uuid),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlastOutcome {
    Created(ChatSession),
    /// The customer already holds its limit of open requests; this is the oldest.
    OpenRequest(Uuid),
}

/// How many open requests (searching or awaiting payment, within their timeouts) a customer
/// may hold; checked and the new one inserted under a per-customer lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenLimit {
    pub max_open: u32,
    pub timeouts: Timeouts,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RerouteOutcome {
    /// Moved, with the mitra it left.
    Moved {
        session: ChatSession,
        from: Option<MitraId>,
    },
    /// The session is not active.
    NotActive,
    /// The target is deactivated, or (unless forced) at capacity.
    Refused,
}

/// Timeouts a transition enforces itself, so that a late timer tick never lets an expired
/// request be accepted or paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// A search's whole lifetime (from its start: creation, or leaving the line).
    pub blast: Duration,
    pub payment: Duration,
    /// One offer round's lifetime (never longer than `blast`).
    pub offer: Duration,
    /// How long a request may wait in line.
    pub queue: Duration,
}

impl From<&AppSettings> for Timeouts {
    fn from(settings: &AppSettings) -> Self {
        Self {
            blast: settings.blast_timeout(),
            payment: settings.payment_timeout(),
            offer: settings.offer_timeout(),
            queue: settings.queue_max_wait(),
        }
    }
}

/// What a blast does when nobody can take it (SPEC §12.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenNobody {
    /// The session is recorded `failed` (`no_bestie_available`).
    Fail,
    /// The session waits in line (`queued`).
    Queue,
}

/// A searching session whose offer round is over: the next round goes to new candidates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueRound {
    pub session: Uuid,
    /// The round that ended; the next round's write succeeds only while it is still current.
    pub round: u32,
    /// Every mitra an earlier round of this session reached (not offered again).
    pub offered: Vec<MitraId>,
}

/// Sessions a transition moved, and the mitras it found had missed too many offers in a row
/// (their counter is reset and an `away` event appended; the caller sets them offline).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Moved {
    pub sessions: Vec<ChatSession>,
    pub away: Vec<MitraId>,
}

/// # Errors
/// `TruthError::Unavailable` when Postgres does not answer.
#[async_trait]
pub trait ChatStore: Send + Sync + 'static {
    /// A blast: a `searching` session with one offer (first round) per mitra; when `notify`
    /// is empty, a `failed` one (end reason `no_bestie_available`) or, with
    /// `WhenNobody::Queue`, a `queued` one at the end of the line.
    async fn create_blast(
        &self,
        customer: Uuid,
        minutes: u32,
        notify: &[MitraId],
        limit: OpenLimit,
        nobody: WhenNobody,
    ) -> Result<BlastOutcome, TruthError>;

    /// Searching sessions whose current round is over (by the database's clock), oldest due
    /// first, at most `limit`. Not claimed: `next_round` settles races.
    async fn due_rounds(&self, limit: u32) -> Result<Vec<DueRound>, TruthError>;

    /// Starts the round after `round` if it is still the current one of a searching session:
    /// its unanswered offers expire (`offer_withdrawn{expired}`, one missed offer each), then
    /// `notify` get the next (which may be nobody: the search goes on until its timeout).
    /// `missed_limit`: see `Moved::away`. `None` when another caller started it first.
    async fn next_round(
        &self,
        round: &DueRound,
        notify: &[MitraId],
        timeouts: Timeouts,
        missed_limit: Option<u32>,
    ) -> Result<Option<Moved>, TruthError>;

    /// The line, oldest first, at most `limit`.
    async fn queued(&self, limit: u32) -> Result<Vec<Uuid>, TruthError>;

    /// Mitras holding an open (unanswered, unexpired) offer of any session: a request leaving
    /// the line goes to others first.
    async fn mitras_with_open_offers(&self, timeouts: Timeouts)
        -> Result<Vec<MitraId>, TruthError>;

    /// Moves queued sessions out of the line, each to its mitras (a first round), in one
    /// transaction; one still queued by the time it runs is skipped. Every session left in
    /// line is told its new place. Returns the sessions that started searching.
    async fn dispatch(
        &self,
        assignments: &[(Uuid, Vec<MitraId>)],
        timeouts: Timeouts,
    ) -> Result<Vec<ChatSession>, TruthError>;

    /// A targeted request holding the mitra's slot (`pending_payment`). Serialized per customer
    /// (open-request limit) and per mitra (capacity) so no count and insert can race.
    async fn create_targeted(
        &self,
        customer: Uuid,
        mitra: MitraId,
        minutes: u32,
        max_customers: u32,
        limit: OpenLimit,
    ) -> Result<TargetOutcome, TruthError>;

    async fn session(&self, id: Uuid) -> Result<Option<ChatSession>, TruthError>;

    /// `pending_payment` → `active` for its customer (starts the clock), unless older than the
    /// payment timeout, and its payment captured with `reference`, in one transaction: the
    /// session starts exactly when its payment is settled. `None` if not applicable.
    async fn pay(
        &self,
        id: Uuid,
        customer: Uuid,
        timeouts: Timeouts,
        reference: &str,
    ) -> Result<Option<ChatSession>, TruthError>;

    /// Writes the outbox row before the provider is asked to charge: returns the attempt to
    /// charge (the same one while it is unsettled, so a retry charges once; a new one after a
    /// refund).
    async fn start_payment(&self, id: Uuid, customer: Uuid) -> Result<u32, TruthError>;

    /// The charge of `attempt` was given back: the payment is settled as refunded.
    async fn record_refund(&self, id: Uuid, attempt: u32) -> Result<(), TruthError>;

    /// Payments started more than `older_than` ago and never settled whose session is no
    /// longer awaiting payment: charged (maybe) for a session that did not start.
    async fn unsettled_payments(
        &self,
        older_than: Duration,
        limit: u32,
    ) -> Result<Vec<UnsettledPayment>, TruthError>;

    /// First accept wins, within the blast timeout and the mitra's offer round; serialized per
    /// mitra so concurrent accepts never exceed `max_customers`. Restarts its missed-offer
    /// count.
    async fn accept(
        &self,
        id: Uuid,
        mitra: MitraId,
        max_customers: u32,
        timeouts: Timeouts,
    ) -> Result<AcceptOutcome, TruthError>;

    /// Records a rejection of a blast that reached this mitra (an answer: its missed-offer
    /// count restarts); false when it did not.
    async fn reject(&self, id: Uuid, mitra: MitraId) -> Result<bool, TruthError>;

    /// Ends a session of this party: `active` → `ended`, `searching`/`pending_payment` →
    /// `cancelled`. `None` when the party has no such open session.
    async fn end(
        &self,
        id: Uuid,
        by: Party,
        reason: &str,
    ) -> Result<Option<ChatSession>, TruthError>;

    /// `ends_at += minutes` of an active session of this customer.
    async fn extend(
        &self,
        id: Uuid,
        customer: Uuid,
        minutes: u32,
    ) -> Result<Option<ChatSession>, TruthError>;

    /// Moves an active session to another mitra, serialized with that mitra's other slot-taking
    /// transitions. `max_customers: None` (forced) skips the capacity check, never the
    /// deactivation check.
    async fn reroute(
        &self,
        id: Uuid,
        to: MitraId,
        max_customers: Option<u32>,
    ) -> Result<RerouteOutcome, TruthError>;

    /// Searching sessions whose open offer (unanswered, within its round and the blast
    /// timeout) this mitra holds.
    async fn open_requests(
        &self,
        mitra: MitraId,
        timeouts: Timeouts,
    ) -> Result<Vec<ChatSession>, TruthError>;

    /// Claims due timers (`FOR UPDATE SKIP LOCKED`) and applies them: active past `ends_at` →
    /// ended (`expired`); searching longer than the blast timeout → failed (`blast_timeout`;
    /// its unanswered offers count as missed, see `Moved::away`); pending_payment older than
    /// the payment timeout → cancelled (`payment_timeout`); queued longer than the queue
    /// timeout → failed (`queue_timeout`). At most `limit` per call.
    async fn expire_due(
        &self,
        now: OffsetDateTime,
        timeouts: Timeouts,
        missed_limit: Option<u32>,
        limit: u32,
    ) -> Result<Moved, TruthError>;

    /// Count of sessions currently `active` (dashboard).
    async fn count_active(&self) -> Result<u64, TruthError>;

    /// The database's clock: every deadline is judged by it (accept, pay and extend compare
    /// with it in their own statements; the timer sweep asks it for `now`), so an instance
    /// whose clock runs ahead ends nothing early.
    async fn database_now(&self) -> Result<OffsetDateTime, TruthError>;
}

/// A payment the outbox sweep must settle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsettledPayment {
    pub session: Uuid,
    pub attempt: u32,
}

/// What the provider's idempotency key is made of: one key per session and attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargeKey {
    pub session: Uuid,
    pub attempt: u32,
}

impl std::fmt::Display for ChargeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.session, self.attempt)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("payment failed: {0}")]
pub struct PaymentError(pub String);

/// Takes the customer's money for a session (a dev provider in development; real providers plug
/// in behind this trait).
#[async_trait]
pub trait PaymentProvider: Send + Sync + 'static {
    /// Charges once per `key` (the idempotency key): a retried or doubled pay request
    /// charges once. Returns the provider's reference.
    async fn charge(
        &self,
        key: ChargeKey,
        customer: Uuid,
        minutes: u32,
    ) -> Result<String, PaymentError>;

    /// Gives back the charge made with `key`, if there is one (idempotent: a second refund,
    /// or a refund of a charge that never happened, changes nothing).
    async fn refund(&self, key: ChargeKey) -> Result<(), PaymentError>;
}
