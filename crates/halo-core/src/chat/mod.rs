//! The chat-session use cases over the `ChatStore` port, by concern: `lifecycle` (blast,
//! targeted request, accept, reject, end, extend, reroute), `payments` (pay, refunds, the
//! outbox sweep) and `timers` (the durable timers). Capacity is re-derived after every
//! transition that can change it; every transition that appended app events (the store writes
//! them in its transaction) is announced to the event pumps.

mod lifecycle;
mod payments;
mod queue;
mod rounds;
mod timers;

pub use payments::DevPayments;

use crate::events::Announcer;
use crate::Availability;
use halo_domain::MitraId;
use halo_ports::{
    ChatSession, ChatStore, EventLog, OnlineReason, OpenLimit, PaymentProvider, Timeouts,
};
use std::sync::Arc;

/// Sessions the timer sweep claims per statement.
const TIMER_BATCH: u32 = 500;

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
    /// Where a mitra set away for missed offers is told so (`None`: it is not told).
    events: Option<Arc<dyn EventLog>>,
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
            events: None,
        }
    }

    /// Tells mitras set away for missed offers so on their streams (SPEC §12.7).
    pub fn with_event_log(mut self, events: Arc<dyn EventLog>) -> Self {
        self.events = Some(events);
        self
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
        Timeouts::from(&self.availability.settings().get())
    }

    /// Mitras a transition found had missed too many offers in a row: set offline (audit
    /// reason `missed_offers`), then told `away` — only once it is offline, so the event
    /// never says what did not happen. Best effort, like a recount: the transition committed.
    async fn send_away(&self, mitras: &[MitraId]) {
        for &mitra in mitras {
            let reason = OnlineReason::MissedOffers;
            if let Err(error) = self.availability.set_offline(mitra, reason).await {
                tracing::warn!(%mitra, error = %error, "could not set a mitra that missed its offers offline");
                continue;
            }
            tracing::info!(%mitra, "mitra set offline: missed offers in a row");
            let Some(events) = &self.events else { continue };
            match events.append_away(mitra, reason).await {
                Ok(()) => self.announce(),
                Err(error) => tracing::warn!(%mitra, error = %error, "away event not appended"),
            }
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
}
