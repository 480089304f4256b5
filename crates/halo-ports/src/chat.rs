//! The chat-session port (Postgres). Every transition is one transaction whose conditions make it
//! safe under concurrency (first accept wins, capacity never exceeded, timers claimed once).

use crate::TruthError;
use async_trait::async_trait;
use halo_domain::{MitraId, SessionStatus};
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
    pub blast: Duration,
    pub payment: Duration,
}

/// # Errors
/// `TruthError::Unavailable` when Postgres does not answer.
#[async_trait]
pub trait ChatStore: Send + Sync + 'static {
    /// A blast: a `searching` session with one notification row per mitra, or a `failed` one
    /// (end reason `no_bestie_available`) when `notify` is empty.
    async fn create_blast(
        &self,
        customer: Uuid,
        minutes: u32,
        notify: &[MitraId],
    ) -> Result<ChatSession, TruthError>;

    /// A targeted request holding the mitra's slot (`pending_payment`). Serialized per mitra so
    /// the count and the insert cannot race.
    async fn create_targeted(
        &self,
        customer: Uuid,
        mitra: MitraId,
        minutes: u32,
        max_customers: u32,
    ) -> Result<TargetOutcome, TruthError>;

    async fn session(&self, id: Uuid) -> Result<Option<ChatSession>, TruthError>;

    /// `pending_payment` → `active` for its customer (starts the clock), unless older than the
    /// payment timeout. `None` if not applicable.
    async fn pay(
        &self,
        id: Uuid,
        customer: Uuid,
        timeouts: Timeouts,
    ) -> Result<Option<ChatSession>, TruthError>;

    /// First accept wins, within the blast timeout; serialized per mitra so concurrent accepts
    /// never exceed `max_customers`.
    async fn accept(
        &self,
        id: Uuid,
        mitra: MitraId,
        max_customers: u32,
        timeouts: Timeouts,
    ) -> Result<AcceptOutcome, TruthError>;

    /// Records a rejection of a blast that reached this mitra; false when it did not.
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

    /// Searching sessions (within the blast timeout) whose blast reached this mitra and that it
    /// has not answered.
    async fn open_requests(
        &self,
        mitra: MitraId,
        timeouts: Timeouts,
    ) -> Result<Vec<ChatSession>, TruthError>;

    /// Claims due timers (`FOR UPDATE SKIP LOCKED`) and applies them: active past `ends_at` →
    /// ended (`expired`); searching older than `blast_timeout` → failed (`blast_timeout`);
    /// pending_payment older than `payment_timeout` → cancelled (`payment_timeout`). At most
    /// `limit` per call; returns the sessions it transitioned.
    async fn expire_due(
        &self,
        now: OffsetDateTime,
        blast_timeout: Duration,
        payment_timeout: Duration,
        limit: u32,
    ) -> Result<Vec<ChatSession>, TruthError>;

    /// Count of sessions currently `active` (dashboard).
    async fn count_active(&self) -> Result<u64, TruthError>;
}

#[derive(Debug, thiserror::Error)]
#[error("payment failed: {0}")]
pub struct PaymentError(pub String);

/// Takes the customer's money for a session (a dev provider in development; real providers plug
/// in behind this trait).
#[async_trait]
pub trait PaymentProvider: Send + Sync + 'static {
    /// Charges once per `session`: the session id is the idempotency key, so a retried or
    /// doubled pay request charges once. Returns the provider's reference.
    async fn charge(
        &self,
        session: Uuid,
        customer: Uuid,
        minutes: u32,
    ) -> Result<String, PaymentError>;

    /// Gives back a charge whose session could not start (cancelled meanwhile).
    async fn refund(&self, session: Uuid, reference: &str) -> Result<(), PaymentError>;
}
