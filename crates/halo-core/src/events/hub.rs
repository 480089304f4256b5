//! The registry of this instance's open streams: one bounded channel per stream, keyed by
//! recipient. The pump hands every event to the streams of its recipients; a stream whose
//! buffer is full is cut off (it ends after what it holds, and the app resumes with
//! `Last-Event-ID`) rather than let a slow client grow the memory.

use halo_metrics::Metrics;
use halo_ports::{AudienceKind, LoggedEvent};
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
            for recipient in &event.recipients {
                let Some(slots) = streams.get_mut(&(event.audience, *recipient)) else {
                    continue;
                };
                slots.retain(|slot| match slot.tx.try_send(event.clone()) {
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
                });
            }
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
