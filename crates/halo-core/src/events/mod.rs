//! The apps' event streams (SPEC §12): `Events::open` gives a stream its first state (or, with
//! `Last-Event-ID`, what it missed) from Postgres, then the live events the pump reads from the
//! log. The log is the only source: the Valkey signal only wakes the pumps sooner, so a lost
//! signal (Valkey down, a message published while a subscription was away) delays delivery
//! by one poll and loses nothing.
//!
//! Why nothing is lost nor repeated: the log's `seq` is in commit order (`EventLog`). A stream
//! registers for live events *before* it reads Postgres, and skips live events at or below the
//! last one it read there. An event the pump dispatched before the registration was visible
//! before it, so the stream's read (a snapshot taken later) includes it; every later event
//! reaches the stream's channel.

mod hub;

use crate::error::ChatError;
use crate::Availability;
use halo_ports::{
    AppEvent, Audience, ChatSession, EventLog, EventSignal, LoggedEvent, MirrorError, QueuePlace,
    SessionView, StateAt, Timeouts, TruthError,
};
use hub::{Hub, Registration};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};

/// Events the pump reads per statement.
const PUMP_BATCH: u32 = 1_000;
/// The pump's poll of the log while the signal can be trusted (Valkey trusted): a safety net
/// for a lost message.
const POLL_TRUSTED: Duration = Duration::from_secs(1);
/// The poll while it cannot: the only way events from other instances arrive.
const POLL_DEGRADED: Duration = Duration::from_millis(200);
/// A resume reads at most this many missed events per page, and this many in all before it
/// sends the current state instead.
const RESUME_PAGE: u32 = 500;
const RESUME_MAX: usize = 5_000;
/// How long events are kept for resumes, and how often older ones are pruned.
const RETENTION: time::Duration = time::Duration::hours(1);
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How often the pump looks whether the beacon went between zero and non-zero (the beacon
/// itself changes at most once per `beacon_cache_ttl_seconds`).
const AVAILABILITY_CHECK: Duration = Duration::from_secs(1);
const PRUNE_BATCH: u32 = 10_000;

/// One event for a stream: `id` is what the app sends back as `Last-Event-ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    pub event: AppEvent,
}

/// Tells the pumps that a commit appended events: this instance's at once, the others'
/// through the signal. Handed to `Chat`.
#[derive(Clone)]
pub struct Announcer {
    wake: Arc<Notify>,
    signal: Arc<dyn EventSignal>,
    availability: Arc<Availability>,
}

impl Announcer {
    /// Best effort, never waited for: not sent while Valkey is known down (the other
    /// instances poll faster then); a failure marks the mirror down like any Valkey call.
    pub fn announce(&self) {
        self.wake.notify_one();
        if self.availability.health().is_down() {
            return;
        }
        let signal = self.signal.clone();
        let availability = self.availability.clone();
        tokio::spawn(async move {
            if let Err(error) = signal.announce().await {
                availability
                    .metrics()
                    .mirror_write_failed("announce_events");
                if matches!(error, MirrorError::Unavailable(_)) {
                    availability.health().down(&error);
                }
                tracing::debug!(error = %error, "event signal not sent; the other instances poll");
            }
        });
    }
}

pub struct Events {
    log: Arc<dyn EventLog>,
    hub: Arc<Hub>,
    announcer: Announcer,
    availability: Arc<Availability>,
    /// Set once the pump knows its position: a stream registered before that could miss
    /// events between its read and the pump's start.
    ready: AtomicBool,
}

impl Events {
    pub fn new(
        log: Arc<dyn EventLog>,
        signal: Arc<dyn EventSignal>,
        availability: Arc<Availability>,
    ) -> Self {
        let hub = Hub::new(availability.metrics().clone());
        let announcer = Announcer {
            wake: Arc::new(Notify::new()),
            signal,
            availability: availability.clone(),
        };
        Self {
            log,
            hub,
            announcer,
            availability,
            ready: AtomicBool::new(false),
        }
    }

    pub fn announcer(&self) -> Announcer {
        self.announcer.clone()
    }

    /// The signal arrived from another instance (or its subscription was renewed: a message
    /// may have been lost meanwhile).
    pub fn on_signal(&self) {
        self.announcer.wake.notify_one();
    }

    /// Ends every open stream; the apps reconnect (to another instance) and resume.
    pub fn close_streams(&self) {
        self.hub.close_all();
    }

    fn timeouts(&self) -> Timeouts {
        Timeouts::from(&self.availability.settings().get())
    }

    /// A stream for `audience`: the events after `last_event_id` when the log still has them
    /// all, else the current state; then live events.
    pub async fn open(
        &self,
        audience: Audience,
        last_event_id: Option<i64>,
    ) -> Result<EventStream, ChatError> {
        if !self.ready.load(Ordering::Acquire) {
            return Err(
                TruthError::Unavailable("the event log has not been read yet".into()).into(),
            );
        }
        let (registration, live) = self.hub.register((audience.kind(), audience.id()));
        let resumed = match last_event_id {
            Some(after) if self.log.resumable(after).await? => self.missed(audience, after).await?,
            _ => None,
        };
        let (backlog, last) = match resumed {
            Some(missed) => missed,
            None => {
                let state = self.log.state(audience, self.timeouts()).await?;
                let position = state.position;
                (self.state_events(state), position)
            }
        };
        Ok(EventStream {
            backlog,
            live,
            last,
            metrics: self.availability.metrics().clone(),
            _registration: registration,
        })
    }

    /// The recipient's events after `after`, and the position they reach (the last one's, or
    /// `after`); `None` when there are too many (the state is shorter).
    async fn missed(
        &self,
        audience: Audience,
        after: i64,
    ) -> Result<Option<(VecDeque<Delivery>, i64)>, ChatError> {
        let mut missed = VecDeque::new();
        let mut last = after;
        loop {
            let page = self.log.read_for(audience, last, RESUME_PAGE).await?;
            let full = page.len() == RESUME_PAGE as usize;
            for logged in page {
                last = logged.seq;
                missed.push_back(Delivery {
                    id: logged.seq,
                    event: logged.event,
                });
            }
            if !full {
                return Ok(Some((missed, last)));
            }
            if missed.len() >= RESUME_MAX {
                return Ok(None);
            }
        }
    }

    /// The state as events, all with the state's position as their id: a reconnect with it
    /// resumes right after the state.
    fn state_events(&self, state: StateAt) -> VecDeque<Delivery> {
        let offers = state.offers.iter().map(|(s, expires_at)| AppEvent::Offer {
            session_id: s.id,
            minutes: s.minutes,
            expires_at: *expires_at,
        });
        let place = |id| {
            state
                .queue
                .iter()
                .find(|(queued, _)| *queued == id)
                .map(|(_, place)| *place)
        };
        let sessions = state.sessions.iter().map(|s| session_event(s, place(s.id)));
        state
            .availability
            .clone()
            .into_iter()
            .chain(offers)
            .chain(sessions)
            .map(|event| Delivery {
                id: state.position,
                event,
            })
            .collect()
    }

    /// The pump: reads the log after its position whenever it is woken (this instance's
    /// commits, the signal) or the poll interval passes, and hands the events to this
    /// instance's streams (SPEC §12.3). Ends the streams when `shutdown` turns true.
    ///
    /// It does nothing else: while it awaits anything but the log, no event reaches a
    /// stream. The availability check's beacon is recomputed, once per TTL, by whichever
    /// caller finds it expired, from every online mitra (tens of milliseconds at 10,000
    /// online: the pump's stall when the check ran here, docs/PERFORMANCE.md), and a prune is
    /// a `DELETE`: both run in `run_housekeeping`.
    pub async fn run_pump(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let Some(mut position) = self.start_position(&mut shutdown).await else {
            return;
        };
        self.ready.store(true, Ordering::Release);
        loop {
            position = self.catch_up(position).await;
            let poll = if self.availability.health().is_trusted() {
                POLL_TRUSTED
            } else {
                POLL_DEGRADED
            };
            tokio::select! {
                () = self.announcer.wake.notified() => {}
                () = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => break,
            }
        }
        self.hub.close_all();
    }

    /// The event log's upkeep, beside the pump: prunes events older than the resume window
    /// (SPEC §12.4) and appends the customers' `availability` event when the beacon went
    /// between zero and non-zero (SPEC §12.9). The appended event reaches the streams through
    /// the pump like any other (`announce`).
    pub async fn run_housekeeping(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut prune = tokio::time::interval(PRUNE_EVERY);
        let mut availability = tokio::time::interval(AVAILABILITY_CHECK);
        availability.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut available = None;
        loop {
            tokio::select! {
                _ = prune.tick() => {
                    self.prune().await;
                    // Compare with the log again: the newest availability event may have been
                    // pruned, or appended by an instance that left before the next change.
                    available = None;
                }
                _ = availability.tick() => self.check_availability(&mut available).await,
                _ = shutdown.changed() => break,
            }
        }
    }

    /// The log's head, retried until Postgres answers; `None` on shutdown.
    async fn start_position(&self, shutdown: &mut watch::Receiver<bool>) -> Option<i64> {
        loop {
            match self.log.head().await {
                Ok(head) => return Some(head),
                Err(error) => {
                    tracing::warn!(error = %error, "event pump cannot read the log yet; retrying")
                }
            }
            tokio::select! {
                () = tokio::time::sleep(POLL_DEGRADED) => {}
                _ = shutdown.changed() => return None,
            }
        }
    }

    /// Dispatches everything after `position`; returns the new position. A failed read is
    /// retried at the next wake-up, from the same position.
    async fn catch_up(&self, mut position: i64) -> i64 {
        loop {
            let batch = match self.log.read_after(position, PUMP_BATCH).await {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::debug!(error = %error, "event pump read failed; retrying");
                    return position;
                }
            };
            if let Some(through) = batch.through {
                position = through;
            }
            let events: Vec<Arc<LoggedEvent>> = batch.events.into_iter().map(Arc::new).collect();
            self.hub.dispatch(&events);
            if !batch.full {
                return position;
            }
        }
    }

    /// The customers' `availability` event: appended when the beacon this instance last
    /// answered a poll with (younger than its TTL; nothing is computed here) went from zero
    /// to non-zero or back since this instance last looked; the log drops the same change
    /// seen by another instance.
    async fn check_availability(&self, available: &mut Option<bool>) {
        let Some(beacon) = self.availability.last_beacon() else {
            return;
        };
        if *available == Some(beacon.available()) {
            return;
        }
        match self.log.append_availability(beacon.count).await {
            Ok(appended) => {
                *available = Some(beacon.available());
                if appended {
                    self.announcer.announce();
                }
            }
            Err(error) => tracing::debug!(error = %error, "availability event not appended"),
        }
    }

    async fn prune(&self) {
        match self.log.prune(RETENTION, PRUNE_BATCH).await {
            Ok(0) => {}
            Ok(pruned) => tracing::debug!(pruned, "old app events pruned"),
            Err(error) => tracing::debug!(error = %error, "app event pruning failed"),
        }
    }
}

fn session_event(session: &ChatSession, queue: Option<QueuePlace>) -> AppEvent {
    AppEvent::Session {
        session_id: session.id,
        status: SessionView::Is(session.status),
        mitra_id: session.mitra_id,
        ends_at: session.ends_at,
        queue,
    }
}

/// One open stream: first what `Events::open` read, then live events after it.
pub struct EventStream {
    backlog: VecDeque<Delivery>,
    live: mpsc::Receiver<Arc<LoggedEvent>>,
    /// The highest id sent (or covered by the first state): live events at or below it are
    /// already known to the app.
    last: i64,
    metrics: halo_metrics::Metrics,
    _registration: Registration,
}

impl EventStream {
    /// The next event; `None` when the stream was cut off (slow client, shutdown).
    pub async fn next(&mut self) -> Option<Delivery> {
        let delivery = match self.backlog.pop_front() {
            Some(delivery) => delivery,
            None => loop {
                let logged = self.live.recv().await?;
                if logged.seq > self.last {
                    self.last = logged.seq;
                    break Delivery {
                        id: logged.seq,
                        event: logged.event.clone(),
                    };
                }
            },
        };
        self.metrics.sse_event_sent();
        Some(delivery)
    }
}
