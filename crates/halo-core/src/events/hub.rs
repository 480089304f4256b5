//! The registry of this instance's open streams: one bounded channel per stream, keyed by
//! recipient. The pump hands every event to the streams of its recipients; a stream whose
//! buffer is full is cut off (it ends after what it holds, and the app resumes with
//! `Last-Event-ID`) rather than let a slow client grow the memory.

use halo_metrics::Metrics;
use halo_ports::{AppEvent, AudienceKind, LoggedEvent, OnlineReason};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::mpsc;
use uuid::Uuid;

/// Events a stream may hold unsent before it is cut off.
pub(crate) const STREAM_BUFFER: usize = 256;

pub(crate) type Key = (AudienceKind, Uuid);

struct Slot {
    id: u64,
    tx: mpsc::Sender<Arc<LoggedEvent>>,
}

pub(crate) struct Hub {
    streams: Mutex<HashMap<Key, Vec<Slot>>>,
    next_id: AtomicU64,
    metrics: Metrics,
}

/// A stream's place in the hub: dropping it (the stream ended, the client went away) removes
/// the slot and counts the stream closed.
pub(crate) struct Registration {
    hub: Arc<Hub>,
    key: Key,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut streams = self.hub.lock();
        if let Some(slots) = streams.get_mut(&self.key) {
            slots.retain(|slot| slot.id != self.id);
            if slots.is_empty() {
                streams.remove(&self.key);
            }
        }
        drop(streams);
        self.hub.metrics.sse_stream_closed();
    }
}

impl Hub {
    pub(crate) fn new(metrics: Metrics) -> Arc<Self> {
        Arc::new(Self {
            streams: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            metrics,
        })
    }

    /// The map holds only senders: a panic while holding the lock leaves it usable.
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Vec<Slot>>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn register(
        self: &Arc<Self>,
        key: Key,
    ) -> (Registration, mpsc::Receiver<Arc<LoggedEvent>>) {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().entry(key).or_default().push(Slot { id, tx });
        self.metrics.sse_stream_opened();
        let registration = Registration {
            hub: self.clone(),
            key,
            id,
        };
        (registration, rx)
    }

    /// Hands each event to the open streams of its recipients, in order.
    pub(crate) fn dispatch(&self, events: &[Arc<LoggedEvent>]) {
        let mut streams = self.lock();
        if streams.is_empty() {
            return;
        }
        for event in events {
            if event.recipients.is_empty() {
                // To the whole audience.
                for ((audience, _), slots) in streams.iter_mut() {
                    if *audience == event.audience {
                        slots.retain(|slot| self.hand(slot, event));
                    }
                }
                continue;
            }
            // A deactivated mitra's streams end after this event (SPEC §3.6).
            let last_word = matches!(
                event.event,
                AppEvent::Away {
                    reason: OnlineReason::Deactivated
                }
            );
            for recipient in &event.recipients {
                let Some(slots) = streams.get_mut(&(event.audience, *recipient)) else {
                    continue;
                };
                slots.retain(|slot| self.hand(slot, event) && !last_word);
            }
        }
    }

    /// Hands one event to one stream; false when the stream is gone or cut off (its client
    /// does not read), so the caller drops its slot.
    fn hand(&self, slot: &Slot, event: &Arc<LoggedEvent>) -> bool {
        match slot.tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.sse_stream_dropped("slow");
                tracing::info!(
                    event = "sse.dropped",
                    reason = "slow",
                    "event stream cut off: its client does not read"
                );
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Ends every stream (shutdown): each ends after what it holds.
    pub(crate) fn close_all(&self) {
        let mut streams = self.lock();
        let closed: usize = streams.values().map(Vec::len).sum();
        streams.clear();
        drop(streams);
        for _ in 0..closed {
            self.metrics.sse_stream_dropped("shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;
    use halo_ports::{AppEvent, WithdrawReason};

    fn event(seq: i64, audience: AudienceKind, recipients: &[Uuid]) -> Arc<LoggedEvent> {
        Arc::new(LoggedEvent {
            seq,
            audience,
            recipients: recipients.to_vec(),
            event: AppEvent::OfferWithdrawn {
                session_id: Uuid::from_u128(1),
                reason: WithdrawReason::Taken,
            },
        })
    }

    #[test]
    fn events_reach_the_streams_of_their_recipients_only() {
        let metrics = Metrics::new();
        let hub = Hub::new(metrics.clone());
        let (a, b) = (Uuid::from_u128(10), Uuid::from_u128(11));
        let (_ra, mut a1) = hub.register((AudienceKind::Mitra, a));
        let (_ra2, mut a2) = hub.register((AudienceKind::Mitra, a));
        let (_rb, mut b1) = hub.register((AudienceKind::Customer, b));
        assert_eq!(metrics.sse_streams_open(), 3);
        hub.dispatch(&[
            event(1, AudienceKind::Mitra, &[a]),
            // Same id, other audience: not the customer's.
            event(2, AudienceKind::Mitra, &[b]),
            event(3, AudienceKind::Customer, &[b]),
        ]);
        assert_eq!(a1.try_recv().unwrap().seq, 1);
        assert_eq!(a2.try_recv().unwrap().seq, 1);
        assert!(a1.try_recv().is_err());
        assert_eq!(b1.try_recv().unwrap().seq, 3);
        assert!(b1.try_recv().is_err());
    }

    #[test]
    fn a_stream_that_does_not_read_is_cut_off_and_ends_after_what_it_holds() {
        let metrics = Metrics::new();
        let hub = Hub::new(metrics.clone());
        let who = Uuid::from_u128(7);
        let (registration, mut rx) = hub.register((AudienceKind::Mitra, who));
        let flood: Vec<_> = (1..=STREAM_BUFFER as i64 + 1)
            .map(|seq| event(seq, AudienceKind::Mitra, &[who]))
            .collect();
        hub.dispatch(&flood);
        assert_eq!(metrics.sse_streams_dropped("slow"), 1);
        for seq in 1..=STREAM_BUFFER as i64 {
            assert_eq!(rx.try_recv().unwrap().seq, seq);
        }
        assert!(matches!(
            rx.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        assert_eq!(
            metrics.sse_streams_open(),
            1,
            "open until the stream is dropped"
        );
        drop(registration);
        assert_eq!(metrics.sse_streams_open(), 0);
        assert!(hub.lock().is_empty());
    }

    #[test]
    fn closing_all_ends_every_stream() {
        let metrics = Metrics::new();
        let hub = Hub::new(metrics.clone());
        let (_r, mut rx) = hub.register((AudienceKind::Customer, Uuid::from_u128(3)));
        hub.close_all();
        assert!(matches!(
            rx.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        assert_eq!(metrics.sse_streams_dropped("shutdown"), 1);
    }
}
