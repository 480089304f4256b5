//! The mirror's health as this instance sees it: the one place every path asks "may I use
//! Valkey?". A circuit breaker: while the state is not `Trusted`, hot paths answer from
//! Postgres without sending anything to Valkey; only the watcher (background) probes it, and
//! only a seed brings it back.
//!
//! ```text
//!             seed applied (no incident since it started)
//!   Unseeded ─────────────────────────────────────────────► Trusted
//!      ▲  ▲                                                 │  │  │
//!      │  └─────── generation marker missing ───────────────┘  │  │
//!      │                                                        │  │ a mirror write failed
//!      │         a call failed (timeout, refused, dropped)      │  ▼
//!      │  Down ◄────────────────────────────────────────────────┘ Behind
//!      │   │  ▲                                                    │
//!      │   │  └──────────── a call failed ─────────────────────────┘
//!      └───┘ (Down and Unseeded end only with a seed, as Behind does)
//! ```
//!
//! Writers: hot paths and writes report what a call found (`down`, `unseeded`, `write_failed`);
//! seeds report `seed_applied`. Readers: every read and write of `Availability`, the sweeps,
//! `/readyz` and the `halo_mirror_state` gauge.

use halo_metrics::Metrics;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use tokio::sync::Notify;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorState {
    /// No seed has been applied since this instance started, or the generation marker was
    /// found missing (flushed, restarted empty): the mirror says nothing about Postgres.
    Unseeded,
    /// Seeded, and no call has failed since: hot paths use it.
    Trusted,
    /// A mirror write of this instance failed: the mirror misses a change until a seed that
    /// started after the failure has been applied.
    Behind,
    /// Calls are failing (timeout, refused, connection dropped): nothing is sent from request
    /// paths until the watcher's probe answers and a seed has been applied.
    Down,
}

impl MirrorState {
    pub const ALL: [MirrorState; 4] = [Self::Unseeded, Self::Trusted, Self::Behind, Self::Down];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unseeded => "unseeded",
            Self::Trusted => "trusted",
            Self::Behind => "behind",
            Self::Down => "down",
        }
    }

    const fn code(self) -> u8 {
        match self {
            Self::Unseeded => 0,
            Self::Trusted => 1,
            Self::Behind => 2,
            Self::Down => 3,
        }
    }

    const fn from_code(code: u8) -> Self {
        match code {
            1 => Self::Trusted,
            2 => Self::Behind,
            3 => Self::Down,
            _ => Self::Unseeded,
        }
    }
}

/// What a seed must know of the health when it starts, to say afterwards what it healed.
#[derive(Debug, Clone, Copy)]
pub struct SeedTicket {
    failed_writes: u64,
    incidents: u64,
}

#[derive(Debug)]
struct Facts {
    down: bool,
    unseeded: bool,
    /// Failed mirror writes, ever; `healed_through` of them are older than an applied seed.
    failed_writes: u64,
    healed_through: u64,
    /// `down` and `unseeded` reports, ever: a seed clears them only if none came in while it ran.
    incidents: u64,
    /// A seed has made the mirror trusted at least once (start-up).
    seeded_once: bool,
    /// When the mirror last became trusted again after being down or unseeded (not the
    /// start-up seed): pings sent to the lost mirror before are gone.
    recovered_at: Option<std::time::Instant>,
}

impl Facts {
    const fn state(&self) -> MirrorState {
        if self.down {
            MirrorState::Down
        } else if self.unseeded {
            MirrorState::Unseeded
        } else if self.failed_writes != self.healed_through {
            MirrorState::Behind
        } else {
            MirrorState::Trusted
        }
    }
}

pub struct MirrorHealth {
    /// The state, published after every change: hot paths read it without the lock.
    current: AtomicU8,
    facts: Mutex<Facts>,
    /// Wakes the watcher when the state leaves `Trusted`, so it probes and reseeds at once.
    wake: Notify,
    metrics: Metrics,
}

impl MirrorHealth {
    /// Starts `Unseeded`: nothing is trusted before this instance's first seed.
    pub fn new(metrics: Metrics) -> Self {
        let health = Self {
            current: AtomicU8::new(MirrorState::Unseeded.code()),
            facts: Mutex::new(Facts {
                down: false,
                unseeded: true,
                failed_writes: 0,
                healed_through: 0,
                incidents: 0,
                seeded_once: false,
                recovered_at: None,
            }),
            wake: Notify::new(),
            metrics,
        };
        health.publish_gauge(MirrorState::Unseeded);
        health
    }

    pub fn state(&self) -> MirrorState {
        MirrorState::from_code(self.current.load(Ordering::Acquire))
    }

    pub fn is_trusted(&self) -> bool {
        self.state() == MirrorState::Trusted
    }

    pub fn is_down(&self) -> bool {
        self.state() == MirrorState::Down
    }

    /// A call failed as an outage (timeout, refused or dropped connection).
    pub fn down(&self, why: &dyn std::fmt::Display) {
        self.change(why, |facts| {
            facts.down = true;
            facts.incidents += 1;
        });
    }

    /// A read found the generation marker missing.
    pub fn unseeded(&self) {
        self.change(&"generation marker missing", |facts| {
            facts.unseeded = true;
            facts.incidents += 1;
        });
    }

    /// A mirror write failed or was not sent: the mirror misses a change.
    pub fn write_failed(&self) {
        self.change(&"a mirror write failed", |facts| facts.failed_writes += 1);
    }

    pub fn seed_starting(&self) -> SeedTicket {
        let facts = self.lock();
        SeedTicket {
            failed_writes: facts.failed_writes,
            incidents: facts.incidents,
        }
    }

    /// A seed that started with `ticket` was applied (or a newer one was): failures before it
    /// are healed, and an outage or flush reported before it is over.
    pub fn seed_applied(&self, ticket: SeedTicket) {
        self.change(&"seed applied", |facts| {
            facts.healed_through = facts.healed_through.max(ticket.failed_writes);
            if facts.incidents == ticket.incidents {
                facts.down = false;
                facts.unseeded = false;
            }
        });
    }

    /// True when the mirror became trusted again after an outage or a flush less than `window`
    /// ago (the auto-offline sweep gives live mitras that long to ping the reseeded mirror).
    pub fn recovered_within(&self, window: time::Duration) -> bool {
        let window = std::time::Duration::try_from(window).unwrap_or_default();
        self.lock()
            .recovered_at
            .is_some_and(|at| at.elapsed() < window)
    }

    /// Resolves when the state left `Trusted` since the last call (the watcher waits on it).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Facts> {
        // The facts stay consistent through a panic elsewhere (each change is one assignment).
        self.facts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies `update`; on a state change publishes it, sets the gauge, logs `mirror.state`
    /// once, and wakes the watcher when the mirror stopped being trusted.
    fn change(&self, why: &dyn std::fmt::Display, update: impl FnOnce(&mut Facts)) {
        let mut facts = self.lock();
        let before = facts.state();
        update(&mut facts);
        let after = facts.state();
        if before == after {
            return;
        }
        if after == MirrorState::Trusted {
            let recovered = matches!(before, MirrorState::Down | MirrorState::Unseeded);
            if recovered && facts.seeded_once {
                facts.recovered_at = Some(std::time::Instant::now());
            }
            facts.seeded_once = true;
        }
        self.current.store(after.code(), Ordering::Release);
        // Gauge and log under the lock: racing transitions publish in the order they happened.
        self.publish_gauge(after);
        if after == MirrorState::Trusted {
            tracing::info!(event = "mirror.state", from = before.as_str(), to = after.as_str(), why = %why, "mirror.state");
        } else {
            tracing::warn!(event = "mirror.state", from = before.as_str(), to = after.as_str(), why = %why, "mirror.state");
            self.wake.notify_one();
        }
        drop(facts);
    }

    fn publish_gauge(&self, state: MirrorState) {
        let all = MirrorState::ALL.map(MirrorState::as_str);
        self.metrics.mirror_state(state.as_str(), &all);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> MirrorHealth {
        MirrorHealth::new(Metrics::new())
    }

    fn seeded(h: &MirrorHealth) {
        h.seed_applied(h.seed_starting());
    }

    #[test]
    fn a_flush_reported_while_a_seed_runs_is_not_healed_by_it() {
        let h = health();
        seeded(&h);
        let ticket = h.seed_starting();
        h.unseeded();
        h.seed_applied(ticket);
        assert_eq!(h.state(), MirrorState::Unseeded);
    }

    #[test]
    fn the_watcher_is_woken_only_when_the_mirror_stops_being_trusted() {
        use futures_util::FutureExt;
        let h = health();
        seeded(&h);
        assert!(h.woken().now_or_never().is_none(), "nothing happened yet");
        h.down(&"test");
        assert!(h.woken().now_or_never().is_some(), "left trusted: woken");
        seeded(&h);
        assert_eq!(h.state(), MirrorState::Trusted);
        assert!(
            h.woken().now_or_never().is_none(),
            "back to trusted: no wake"
        );
    }

    #[test]
    fn starts_unseeded_and_a_seed_makes_it_trusted() {
        let h = health();
        assert_eq!(h.state(), MirrorState::Unseeded);
        seeded(&h);
        assert_eq!(h.state(), MirrorState::Trusted);
    }

    #[test]
    fn down_wins_over_every_other_fact_and_only_a_seed_ends_it() {
        let h = health();
        seeded(&h);
        h.write_failed();
        assert_eq!(h.state(), MirrorState::Behind);
        h.down(&"refused");
        assert_eq!(h.state(), MirrorState::Down);
        seeded(&h);
        assert_eq!(h.state(), MirrorState::Trusted);
    }

    #[test]
    fn a_failure_during_a_seed_is_not_healed_by_it() {
        let h = health();
        seeded(&h);
        let ticket = h.seed_starting();
        h.write_failed();
        h.seed_applied(ticket);
        assert_eq!(h.state(), MirrorState::Behind);
        let ticket = h.seed_starting();
        h.down(&"timeout");
        h.seed_applied(ticket);
        assert_eq!(
            h.state(),
            MirrorState::Down,
            "the outage came after the seed began"
        );
        seeded(&h);
        assert_eq!(h.state(), MirrorState::Trusted);
    }

    #[test]
    fn a_missing_marker_makes_it_unseeded() {
        let h = health();
        seeded(&h);
        h.unseeded();
        assert_eq!(h.state(), MirrorState::Unseeded);
        assert!(!h.is_trusted());
    }

    #[test]
    fn a_recovery_opens_a_grace_window_but_the_first_seed_does_not() {
        let h = health();
        seeded(&h);
        assert!(!h.recovered_within(time::Duration::seconds(60)), "start-up");
        h.down(&"refused");
        seeded(&h);
        assert!(h.recovered_within(time::Duration::seconds(60)));
        assert!(!h.recovered_within(time::Duration::ZERO));
    }

    #[test]
    fn the_gauge_shows_one_state() {
        let metrics = Metrics::new();
        let h = MirrorHealth::new(metrics.clone());
        seeded(&h);
        let text = metrics.render();
        assert!(
            text.contains("halo_mirror_state{state=\"trusted\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("halo_mirror_state{state=\"unseeded\"} 0"),
            "{text}"
        );
    }
}
