//! The chat-session lifecycle over the `ChatStore` port: blast, targeted request, pay, accept,
//! reject, end, extend, reroute and the durable timers. Capacity is re-derived after every
//! transition that can change it.

use crate::{Availability, AvailabilityError};
use halo_domain::{MitraId, SessionStatus};
use halo_ports::{
    AcceptOutcome, ChatSession, ChatStore, Party, PaymentError, PaymentProvider, RerouteOutcome,
    TargetOutcome, Timeouts, TruthError,
};
use std::collections::BTreeSet;
use std::sync::Arc;
use uuid::Uuid;

/// Sessions the timer sweep claims per statement.
const TIMER_BATCH: u32 = 500;

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("no bestie is available right now")]
    NoBestieAvailable { session: Box<ChatSession> },
    #[error("this bestie is not available right now")]
    BestieUnavailable,
    #[error("this bestie is not reachable right now")]
    BestieUnreachable,
    #[error("another bestie already took this request")]
    RequestTaken,
    #[error("you are at capacity")]
    AtCapacity,
    #[error("session not found")]
    NotFound,
    #[error("the session is {0}, which does not allow this")]
    InvalidState(SessionStatus),
    #[error("payment failed")]
    Payment(#[source] PaymentError),
    #[error(transparent)]
    Availability(#[from] AvailabilityError),
}

impl From<TruthError> for ChatError {
    fn from(error: TruthError) -> Self {
        Self::Availability(error.into())
    }
}

/// A blast that reached someone.
#[derive(Debug, Clone)]
pub struct Blast {
    pub session: ChatSession,
    pub notified: usize,
}

pub struct Chat {
    store: Arc<dyn ChatStore>,
    availability: Arc<Availability>,
    payments: Arc<dyn PaymentProvider>,
}

impl Chat {
    pub fn new(
        store: Arc<dyn ChatStore>,
        availability: Arc<Availability>,
        payments: Arc<dyn PaymentProvider>,
    ) -> Self {
        Self {
            store,
            availability,
            payments,
        }
    }

    fn max_customers(&self) -> u32 {
        self.availability.settings().get().max_customers_per_mitra()
    }

    fn timeouts(&self) -> Timeouts {
        let settings = self.availability.settings().get();
        Timeouts {
            blast: settings.blast_timeout(),
            payment: settings.payment_timeout(),
        }
    }

    /// Best-effort capacity re-derivation: the transition already committed, so a failure
    /// here is logged, not returned (the reconciliation sweep heals it).
    async fn recount(&self, mitra: Option<MitraId>) {
        let Some(mitra) = mitra else { return };
        if let Err(error) = self.availability.recompute_capacity_for_mitra(mitra).await {
            tracing::warn!(%mitra, error = %error, "capacity recount failed after a transition");
        }
    }

    /// Blast to every available mitra (capacity excluded). Nobody available → the session is
    /// recorded as `failed` and the error carries it.
    pub async fn blast(&self, customer: Uuid, minutes: u32) -> Result<Blast, ChatError> {
        let mitras = self.availability.find_available_mitras().await?;
        let session = self.store.create_blast(customer, minutes, &mitras).await?;
        if mitras.is_empty() {
            return Err(ChatError::NoBestieAvailable {
                session: Box::new(session),
            });
        }
        Ok(Blast {
            session,
            notified: mitras.len(),
        })
    }

    /// "Chat again" with one mitra: must be available; holds its slot until paid.
    pub async fn request_mitra(
        &self,
        customer: Uuid,
        mitra: MitraId,
        minutes: u32,
    ) -> Result<ChatSession, ChatError> {
        if !self.availability.is_mitra_available(mitra).await? {
            return Err(ChatError::BestieUnavailable);
        }
        match self
            .store
            .create_targeted(customer, mitra, minutes, self.max_customers())
            .await?
        {
            TargetOutcome::Created(session) => {
                self.recount(Some(mitra)).await;
                Ok(session)
            }
            TargetOutcome::AtCapacity | TargetOutcome::Inactive => {
                Err(ChatError::BestieUnavailable)
            }
        }
    }

    pub async fn pay(&self, id: Uuid, customer: Uuid) -> Result<ChatSession, ChatError> {
        let session = self.owned(id, Party::Customer(customer)).await?;
        if session.status != SessionStatus::PendingPayment {
            return Err(ChatError::InvalidState(session.status));
        }
        // The session id is the provider's idempotency key: a doubled request charges once.
        let reference = self
            .payments
            .charge(id, customer, session.minutes)
            .await
            .map_err(ChatError::Payment)?;
        tracing::info!(session = %id, reference, "payment captured");
        if let Some(paid) = self.store.pay(id, customer, self.timeouts()).await? {
            self.recount(paid.mitra_id).await;
            return Ok(paid);
        }
        // Cancelled by the payment timer (or paid by a twin request) meanwhile.
        let now = self.owned(id, Party::Customer(customer)).await?;
        if now.status != SessionStatus::Active {
            self.payments
                .refund(id, &reference)
                .await
                .map_err(ChatError::Payment)?;
            tracing::info!(session = %id, reference, "payment refunded: the session did not start");
        }
        Err(ChatError::InvalidState(now.status))
    }

    /// First accept wins; never beyond `max_customers_per_mitra`; never by a deactivated mitra
    /// (checked in Postgres under the mitra's lock, so no mirror read is needed here).
    pub async fn accept(&self, id: Uuid, mitra: MitraId) -> Result<ChatSession, ChatError> {
        let outcome = self
            .store
            .accept(id, mitra, self.max_customers(), self.timeouts())
            .await?;
        match outcome {
            AcceptOutcome::Accepted(session) => {
                self.recount(Some(mitra)).await;
                Ok(session)
            }
            AcceptOutcome::Taken => Err(ChatError::RequestTaken),
            AcceptOutcome::AtCapacity => Err(ChatError::AtCapacity),
            AcceptOutcome::NotOffered => Err(ChatError::NotFound),
            AcceptOutcome::Inactive => Err(AvailabilityError::Deactivated.into()),
        }
    }

    pub async fn reject(&self, id: Uuid, mitra: MitraId) -> Result<(), ChatError> {
        if self.store.reject(id, mitra).await? {
            Ok(())
        } else {
            Err(ChatError::NotFound)
        }
    }

    /// Either party ends the session.
    pub async fn end(&self, id: Uuid, by: Party) -> Result<ChatSession, ChatError> {
        let reason = match by {
            Party::Customer(_) => "ended_by_customer",
            Party::Mitra(_) => "ended_by_mitra",
        };
        let current = self.owned(id, by).await?;
        let ended = self.store.end(id, by, reason).await?;
        let ended = ended.ok_or(ChatError::InvalidState(current.status))?;
        self.recount(ended.mitra_id).await;
        Ok(ended)
    }

    /// Adds minutes to an active session, only while its mitra is reachable.
    pub async fn extend(
        &self,
        id: Uuid,
        customer: Uuid,
        minutes: u32,
    ) -> Result<ChatSession, ChatError> {
        let session = self.owned(id, Party::Customer(customer)).await?;
        if session.status != SessionStatus::Active {
            return Err(ChatError::InvalidState(session.status));
        }
        let mitra = session
            .mitra_id
            .ok_or(ChatError::InvalidState(session.status))?;
        if !self.availability.is_mitra_reachable(mitra).await? {
            return Err(ChatError::BestieUnreachable);
        }
        self.store
            .extend(id, customer, minutes)
            .await?
            .ok_or(ChatError::InvalidState(SessionStatus::Ended))
    }

    /// Operator: move an active session to `to` (which must be available unless forced).
    pub async fn reroute(
        &self,
        id: Uuid,
        to: MitraId,
        force: bool,
    ) -> Result<ChatSession, ChatError> {
        if !force && !self.availability.is_mitra_available(to).await? {
            return Err(ChatError::BestieUnavailable);
        }
        let session = self.store.session(id).await?.ok_or(ChatError::NotFound)?;
        // Under the target's lock: never a deactivated target, and (unless forced) never past
        // its capacity, whatever accepted meanwhile.
        let capacity = (!force).then(|| self.max_customers());
        match self.store.reroute(id, to, capacity).await? {
            RerouteOutcome::Moved { session, from } => {
                self.recount(from).await;
                self.recount(Some(to)).await;
                Ok(session)
            }
            RerouteOutcome::NotActive => Err(ChatError::InvalidState(session.status)),
            RerouteOutcome::Refused => Err(ChatError::BestieUnavailable),
        }
    }

    /// The session, if `party` takes part in it (others get NotFound: no id probing).
    pub async fn owned(&self, id: Uuid, party: Party) -> Result<ChatSession, ChatError> {
        let session = self.store.session(id).await?.ok_or(ChatError::NotFound)?;
        let allowed = match party {
            Party::Customer(customer) => session.customer_id == customer,
            Party::Mitra(mitra) => session.mitra_id == Some(mitra),
        };
        if allowed {
            Ok(session)
        } else {
            Err(ChatError::NotFound)
        }
    }

    pub async fn open_requests(&self, mitra: MitraId) -> Result<Vec<ChatSession>, ChatError> {
        Ok(self.store.open_requests(mitra, self.timeouts()).await?)
    }

    pub async fn active_sessions(&self) -> Result<u64, ChatError> {
        Ok(self.store.count_active().await?)
    }

    /// One timer tick: applies every due timer (claimed with SKIP LOCKED, so instances never
    /// double-process) and re-derives the capacity of every mitra involved. Returns how many
    /// sessions it moved.
    pub async fn expire_due(&self) -> Result<usize, ChatError> {
        let settings = self.availability.settings().get();
        let now = halo_ports::Clock::now(self.availability.clock());
        let mut moved = 0;
        loop {
            let batch = self
                .store
                .expire_due(
                    now,
                    settings.blast_timeout(),
                    settings.payment_timeout(),
                    TIMER_BATCH,
                )
                .await?;
            moved += batch.len();
            self.availability
                .metrics()
                .timer_transitions_applied(batch.len());
            let mitras: BTreeSet<MitraId> = batch.iter().filter_map(|s| s.mitra_id).collect();
            for mitra in mitras {
                self.recount(Some(mitra)).await;
            }
            if batch.len() < TIMER_BATCH as usize {
                return Ok(moved);
            }
        }
    }
}

/// Development payments: always succeed.
#[derive(Debug, Default)]
pub struct DevPayments;

#[async_trait::async_trait]
impl PaymentProvider for DevPayments {
    async fn charge(
        &self,
        session: Uuid,
        _customer: Uuid,
        minutes: u32,
    ) -> Result<String, PaymentError> {
        Ok(format!("dev-{session}-{minutes}m"))
    }

    async fn refund(&self, session: Uuid, reference: &str) -> Result<(), PaymentError> {
        tracing::info!(%session, reference, "dev refund");
        Ok(())
    }
}
