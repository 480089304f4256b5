//! The chat-session lifecycle over the `ChatStore` port: blast, targeted request, pay, accept,
//! reject, end, extend, reroute and the durable timers. Capacity is re-derived after every
//! transition that can change it; every transition that appended app events (the store writes
//! them in its transaction) is announced to the event pumps.

use crate::error::{AvailabilityError, ChatError};
use crate::events::Announcer;
use crate::Availability;
use halo_domain::{MitraId, SessionStatus};
use halo_ports::{
    AcceptOutcome, BlastOutcome, ChargeKey, ChatSession, ChatStore, OpenLimit, Party, PaymentError,
    PaymentProvider, RerouteOutcome, TargetOutcome, Timeouts,
};
use std::collections::BTreeSet;
use std::sync::Arc;
use uuid::Uuid;

/// Sessions the timer sweep claims per statement.
const TIMER_BATCH: u32 = 500;
/// A payment unsettled for this long is the sweep's (a pay in flight settles it sooner).
const UNSETTLED_AFTER: time::Duration = time::Duration::seconds(30);

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
    /// Wakes the event pumps after a transition that appended app events (`None`: they poll).
    announcer: Option<Announcer>,
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
            announcer: None,
        }
    }

    /// Announces every committed transition to the event pumps (see `Events`).
    pub fn with_announcer(mut self, announcer: Announcer) -> Self {
        self.announcer = Some(announcer);
        self
    }

    /// The transition committed its app events: streams learn of them now, not at the next
    /// poll.
    fn announce(&self) {
        if let Some(announcer) = &self.announcer {
            announcer.announce();
        }
    }

    fn max_customers(&self) -> u32 {
        self.availability.settings().get().max_customers_per_mitra()
    }

    fn open_limit(&self) -> OpenLimit {
        OpenLimit {
            max_open: self
                .availability
                .settings()
                .get()
                .max_open_requests_per_customer(),
            timeouts: self.timeouts(),
        }
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
        let session = match self
            .store
            .create_blast(customer, minutes, &mitras, self.open_limit())
            .await?
        {
            BlastOutcome::Created(session) => {
                self.announce();
                session
            }
            BlastOutcome::OpenRequest(session) => {
                return Err(ChatError::OpenRequestExists { session })
            }
        };
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
            .create_targeted(
                customer,
                mitra,
                minutes,
                self.max_customers(),
                self.open_limit(),
            )
            .await?
        {
            TargetOutcome::Created(session) => {
                self.announce();
                self.recount(Some(mitra)).await;
                Ok(session)
            }
            TargetOutcome::AtCapacity | TargetOutcome::Inactive => {
                Err(ChatError::BestieUnavailable)
            }
            TargetOutcome::OpenRequest(session) => Err(ChatError::OpenRequestExists { session }),
        }
    }

    /// Pays a targeted request. A retry of a pay that succeeded (its answer lost) answers the
    /// active session again, and charges nothing.
    pub async fn pay(&self, id: Uuid, customer: Uuid) -> Result<ChatSession, ChatError> {
        let session = self.owned(id, Party::Customer(customer)).await?;
        if session.status == SessionStatus::Active && session.mitra_id.is_some() {
            return Ok(session);
        }
        if session.status != SessionStatus::PendingPayment {
            return Err(ChatError::InvalidState(session.status));
        }
        // The outbox row first: with Postgres down nothing is charged; after a charge every
        // way out settles it (captured with the session, or refunded), and a row left
        // unsettled (a crash) is settled by the timer sweep. The attempt makes the provider's
        // idempotency key: a doubled or retried request charges once.
        let key = ChargeKey {
            session: id,
            attempt: self.store.start_payment(id, customer).await?,
        };
        let reference = self
            .payments
            .charge(key, customer, session.minutes)
            .await
            .map_err(ChatError::Payment)?;
        self.payment_event("charged");
        match self
            .store
            .pay(id, customer, self.timeouts(), &reference)
            .await
        {
            Ok(Some(paid)) => {
                self.announce();
                tracing::info!(session = %id, reference, "payment captured");
                self.payment_event("captured");
                self.recount(paid.mitra_id).await;
                Ok(paid)
            }
            Ok(None) => {
                // Cancelled by the payment timer (or paid by a twin request) meanwhile.
                let now = self.owned(id, Party::Customer(customer)).await?;
                if now.status == SessionStatus::Active {
                    return Ok(now);
                }
                self.refund(key).await;
                Err(ChatError::InvalidState(now.status))
            }
            Err(error) => {
                // Charged, and the session did not start: give the money back now; if that
                // fails too, the outbox row stays for the sweep.
                tracing::error!(session = %id, error = %error, "the session did not start after its charge; refunding");
                self.refund(key).await;
                Err(error.into())
            }
        }
    }

    /// Gives back the charge of `key` and settles its outbox row; a failure of either leaves
    /// the row unsettled for the sweep (`settle_payments`), never money without a record.
    async fn refund(&self, key: ChargeKey) {
        if let Err(error) = self.payments.refund(key).await {
            tracing::error!(session = %key.session, error = %error, "refund failed; the payment sweep retries");
            return;
        }
        self.payment_event("refunded");
        tracing::info!(session = %key.session, attempt = key.attempt, "payment refunded: the session did not start");
        if let Err(error) = self.store.record_refund(key.session, key.attempt).await {
            tracing::error!(session = %key.session, error = %error, "refund not recorded; the payment sweep settles it");
        }
    }

    fn payment_event(&self, event: &'static str) {
        self.availability.metrics().payment_event(event);
    }

    /// The outbox sweep: payments started long enough ago, never settled, whose session no
    /// longer awaits payment (the process died between the charge and the start, or a refund
    /// failed) are refunded. Returns how many it settled.
    pub async fn settle_payments(&self) -> Result<usize, ChatError> {
        let unsettled = self
            .store
            .unsettled_payments(UNSETTLED_AFTER, TIMER_BATCH)
            .await?;
        for payment in &unsettled {
            self.refund(ChargeKey {
                session: payment.session,
                attempt: payment.attempt,
            })
            .await;
        }
        Ok(unsettled.len())
    }

    /// First accept wins; never beyond `max_customers_per_mitra`; never by a deactivated mitra
    /// (checked in Postgres under the mitra's lock, so no mirror read is needed here). The
    /// winner's retry (its answer lost on a flaky network) answers the session it won.
    pub async fn accept(&self, id: Uuid, mitra: MitraId) -> Result<ChatSession, ChatError> {
        let outcome = self
            .store
            .accept(id, mitra, self.max_customers(), self.timeouts())
            .await?;
        match outcome {
            AcceptOutcome::Accepted(session) => {
                self.announce();
                self.recount(Some(mitra)).await;
                Ok(session)
            }
            AcceptOutcome::Taken => match self.store.session(id).await? {
                Some(won) if won.mitra_id == Some(mitra) && won.accepted_at.is_some() => Ok(won),
                _ => Err(ChatError::RequestTaken),
            },
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

    /// Either party ends the session. A retry of an end that succeeded answers the ended
    /// session again.
    pub async fn end(&self, id: Uuid, by: Party) -> Result<ChatSession, ChatError> {
        let reason = match by {
            Party::Customer(_) => "ended_by_customer",
            Party::Mitra(_) => "ended_by_mitra",
        };
        let current = self.owned(id, by).await?;
        if current.end_reason.as_deref() == Some(reason) {
            return Ok(current);
        }
        let Some(ended) = self.store.end(id, by, reason).await? else {
            // Ended by this party's twin request meanwhile: the same answer.
            let now = self.owned(id, by).await?;
            if now.end_reason.as_deref() == Some(reason) {
                return Ok(now);
            }
            return Err(ChatError::InvalidState(now.status));
        };
        self.announce();
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
        let extended = self
            .store
            .extend(id, customer, minutes)
            .await?
            .ok_or(ChatError::InvalidState(SessionStatus::Ended))?;
        self.announce();
        Ok(extended)
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
                self.announce();
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

    /// One tick of the chat timers (see `Cadences::chat_timers`): due timers applied, then
    /// unsettled payments refunded. Failures are logged; the next tick tries again.
    pub async fn timers_tick(&self) {
        match self.expire_due().await {
            Ok(0) => {}
            Ok(moved) => tracing::info!(moved, "chat timers applied"),
            Err(error) => tracing::warn!(error = %error, "chat timer tick failed"),
        }
        match self.settle_payments().await {
            Ok(0) => {}
            Ok(settled) => tracing::info!(settled, "unsettled payments refunded"),
            Err(error) => tracing::warn!(error = %error, "payment sweep failed"),
        }
    }

    /// One timer tick: applies every due timer (claimed with SKIP LOCKED, so instances never
    /// double-process) and re-derives the capacity of every mitra involved. Due by the
    /// database's clock, not this instance's (one that runs ahead must not end paid sessions
    /// early). Returns how many sessions it moved.
    pub async fn expire_due(&self) -> Result<usize, ChatError> {
        let settings = self.availability.settings().get();
        let now = self.store.database_now().await?;
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
            if !batch.is_empty() {
                self.announce();
            }
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

/// Development payments: always succeed; idempotent per key like a real provider (a second
/// charge with the same key returns the first one's reference, a refund gives back the charge
/// of its key once).
#[derive(Debug, Default)]
pub struct DevPayments {
    charges: std::sync::Mutex<std::collections::HashMap<String, (String, bool)>>,
}

#[async_trait::async_trait]
impl PaymentProvider for DevPayments {
    async fn charge(
        &self,
        key: ChargeKey,
        _customer: Uuid,
        minutes: u32,
    ) -> Result<String, PaymentError> {
        let mut charges = self
            .charges
            .lock()
            .map_err(|_| PaymentError("dev provider poisoned".into()))?;
        let (reference, _) = charges
            .entry(key.to_string())
            .or_insert_with(|| (format!("dev-{key}-{minutes}m"), false));
        Ok(reference.clone())
    }

    async fn refund(&self, key: ChargeKey) -> Result<(), PaymentError> {
        let mut charges = self
            .charges
            .lock()
            .map_err(|_| PaymentError("dev provider poisoned".into()))?;
        if let Some((reference, refunded)) = charges.get_mut(&key.to_string()) {
            if !*refunded {
                *refunded = true;
                tracing::info!(%key, reference = reference.as_str(), "dev refund");
            }
        }
        Ok(())
    }
}
