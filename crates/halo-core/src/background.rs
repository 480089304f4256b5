//! Background work of every instance: the three sweeps of CONTRACT §3, the mirror watcher that
//! reseeds on reconnect / flush / failed writes, and the settings safety-net reload. Each sweep
//! takes a short Valkey lease first, so N instances do the work once per cadence, not N times.

use crate::availability::{Availability, SeedReason};
use halo_domain::availability::is_fresh;
use halo_ports::OnlineReason;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

#[derive(Debug, Clone)]
pub struct Cadences {
    pub auto_offline: Duration,
    pub heartbeat_mirror: Duration,
    /// `None` disables the reconciliation sweep.
    pub reconciliation: Option<Duration>,
    pub mirror_watch: Duration,
    pub settings_refresh: Duration,
}

/// What one sweep tick did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SweepOutcome {
    Done {
        changed: usize,
    },
    /// Valkey failed: the whole tick was skipped, Postgres untouched.
    Skipped,
    /// Another instance holds this cadence's lease.
    LeaseHeld,
    /// Postgres failed after Valkey answered.
    Failed,
}

impl SweepOutcome {
    const fn label(&self) -> &'static str {
        match self {
            Self::Done { .. } => "done",
            Self::Skipped => "skipped",
            Self::LeaseHeld => "lease_held",
            Self::Failed => "failed",
        }
    }
}

/// The lease lives a little less than the cadence, so the next tick (on any instance) can run.
fn lease_ttl(cadence: Duration) -> Duration {
    (cadence * 9 / 10).max(Duration::from_millis(100))
}

impl Availability {
    async fn take_lease(&self, sweep: &'static str, lease: Option<Duration>) -> Result<bool, ()> {
        let Some(ttl) = lease else { return Ok(true) };
        self.mirror().try_lease(sweep, ttl).await.map_err(|error| {
            tracing::warn!(event = "sweep.skipped", sweep, error = %error, "sweep.skipped");
        })
    }

    fn finish(&self, sweep: &'static str, outcome: SweepOutcome, started: Instant) -> SweepOutcome {
        self.metrics().sweep_run(sweep, outcome.label());
        if let SweepOutcome::Done { changed } = outcome {
            let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            tracing::info!(event = "sweep.done", sweep, changed, ms, "sweep.done");
        }
        outcome
    }

    /// Online mitras whose heartbeat is stale or missing go offline (Postgres, audit row, then
    /// the mirror). On any Valkey error the tick is skipped: never mass-offline from Postgres.
    pub async fn auto_offline_tick(&self, lease: Option<Duration>) -> SweepOutcome {
        const SWEEP: &str = "auto_offline";
        let started = Instant::now();
        match self.take_lease(SWEEP, lease).await {
            Err(()) => return self.finish(SWEEP, SweepOutcome::Skipped, started),
            Ok(false) => return self.finish(SWEEP, SweepOutcome::LeaseHeld, started),
            Ok(true) => {}
        }
        let beats = match self.mirror().online_heartbeats().await {
            Ok(beats) => beats,
            Err(error) => {
                tracing::warn!(event = "sweep.skipped", sweep = SWEEP, error = %error, "sweep.skipped");
                return self.finish(SWEEP, SweepOutcome::Skipped, started);
            }
        };
        let now = halo_ports::Clock::now(self.clock());
        let stale_after = self.settings().get().stale_after();
        let stale: Vec<_> = beats
            .into_iter()
            .filter(|(_, at)| !is_fresh(*at, now, stale_after))
            .map(|(id, _)| id)
            .collect();
        if stale.is_empty() {
            return self.finish(SWEEP, SweepOutcome::Done { changed: 0 }, started);
        }
        let changed = match self
            .truth()
            .set_offline_many(&stale, OnlineReason::AutoOffline)
            .await
        {
            Ok(changed) => changed,
            Err(error) => {
                tracing::error!(sweep = SWEEP, error = %error, "auto-offline could not write postgres");
                return self.finish(SWEEP, SweepOutcome::Failed, started);
            }
        };
        // Remove every stale id, also those Postgres already had offline (mirror drift).
        self.mirror_offline(&stale).await;
        self.finish(
            SWEEP,
            SweepOutcome::Done {
                changed: changed.len(),
            },
            started,
        )
    }

    /// Copies every heartbeat to `last_heartbeat_at` in one statement; skipped on Valkey error.
    pub async fn heartbeat_mirror_tick(&self, lease: Option<Duration>) -> SweepOutcome {
        const SWEEP: &str = "heartbeat_mirror";
        let started = Instant::now();
        match self.take_lease(SWEEP, lease).await {
            Err(()) => return self.finish(SWEEP, SweepOutcome::Skipped, started),
            Ok(false) => return self.finish(SWEEP, SweepOutcome::LeaseHeld, started),
            Ok(true) => {}
        }
        let beats: Vec<_> = match self.mirror().online_heartbeats().await {
            Ok(beats) => beats
                .into_iter()
                .filter_map(|(id, at)| at.map(|at| (id, at)))
                .collect(),
            Err(error) => {
                tracing::warn!(event = "sweep.skipped", sweep = SWEEP, error = %error, "sweep.skipped");
                return self.finish(SWEEP, SweepOutcome::Skipped, started);
            }
        };
        match self.truth().record_heartbeats(&beats).await {
            Ok(rows) => {
                let changed = usize::try_from(rows).unwrap_or(usize::MAX);
                self.finish(SWEEP, SweepOutcome::Done { changed }, started)
            }
            Err(error) => {
                tracing::error!(sweep = SWEEP, error = %error, "heartbeat mirror could not write postgres");
                self.finish(SWEEP, SweepOutcome::Failed, started)
            }
        }
    }

    /// Reseeds the mirror from Postgres (heals drift).
    pub async fn reconciliation_tick(&self, lease: Option<Duration>) -> SweepOutcome {
        const SWEEP: &str = "reconciliation";
        let started = Instant::now();
        match self.take_lease(SWEEP, lease).await {
            Err(()) => return self.finish(SWEEP, SweepOutcome::Skipped, started),
            Ok(false) => return self.finish(SWEEP, SweepOutcome::LeaseHeld, started),
            Ok(true) => {}
        }
        match self.seed_from_postgres(SeedReason::Reconciliation).await {
            Ok(report) => self.finish(
                SWEEP,
                SweepOutcome::Done {
                    changed: report.online,
                },
                started,
            ),
            Err(error) => {
                tracing::warn!(event = "sweep.skipped", sweep = SWEEP, error = %error, "sweep.skipped");
                self.finish(SWEEP, SweepOutcome::Skipped, started)
            }
        }
    }

    /// Reloads settings and drops the beacon snapshot (a `config:invalidate` arrived, or the
    /// subscription was re-established and may have missed one).
    pub async fn on_config_invalidated(&self) {
        if let Err(error) = self.settings().reload(self.truth()).await {
            tracing::warn!(error = %error, "settings reload failed; keeping the cached values");
        }
        self.bust_beacon().await;
    }
}

/// State the mirror watcher keeps between ticks.
#[derive(Debug, Default)]
pub struct MirrorWatch {
    valkey_was_down: bool,
    /// `AvailabilityMirror::connection_drops` at the last check.
    drops_seen: u64,
}

impl MirrorWatch {
    /// One check: reseeds when Valkey came back (it was unreachable, or a connection was found
    /// dropped: a restart that came back with older data still has its generation marker),
    /// when the generation marker is gone (flushed or restarted empty), or when a best-effort
    /// write failed since the last check. Returns the reason of the seed it ran, if any.
    pub async fn tick(&mut self, availability: &Availability) -> Option<SeedReason> {
        let seeded = availability.mirror().is_seeded().await;
        // After the probe: it may be the call that found the connection dropped.
        let drops = availability.mirror().connection_drops();
        if drops != self.drops_seen {
            self.drops_seen = drops;
            self.valkey_was_down = true;
        }
        let seeded = match seeded {
            Ok(seeded) => seeded,
            Err(error) => {
                if !self.valkey_was_down {
                    tracing::warn!(error = %error, "valkey unreachable; serving from postgres until it returns");
                }
                self.valkey_was_down = true;
                return None;
            }
        };
        let reason = if self.valkey_was_down {
            SeedReason::Reconnect
        } else if !seeded {
            SeedReason::Flushed
        } else if !availability.mirror_trusted() {
            SeedReason::WriteFailed
        } else {
            return None;
        };
        self.valkey_was_down = false;
        match availability.seed_from_postgres(reason).await {
            Ok(_) => Some(reason),
            Err(error) => {
                tracing::warn!(error = %error, reason = reason.as_str(), "reseed failed; retrying on the next check");
                self.valkey_was_down = true;
                None
            }
        }
    }
}

/// Spawns every background loop; each stops when `shutdown` turns true.
pub fn spawn_background(
    availability: Arc<Availability>,
    cadences: &Cadences,
    shutdown: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    let av = availability.clone();
    let ttl = lease_ttl(cadences.auto_offline);
    tasks.push(every(cadences.auto_offline, shutdown.clone(), move || {
        let av = av.clone();
        async move {
            av.auto_offline_tick(Some(ttl)).await;
        }
    }));
    let av = availability.clone();
    let ttl = lease_ttl(cadences.heartbeat_mirror);
    tasks.push(every(
        cadences.heartbeat_mirror,
        shutdown.clone(),
        move || {
            let av = av.clone();
            async move {
                av.heartbeat_mirror_tick(Some(ttl)).await;
            }
        },
    ));
    if let Some(cadence) = cadences.reconciliation {
        let av = availability.clone();
        let ttl = lease_ttl(cadence);
        tasks.push(every(cadence, shutdown.clone(), move || {
            let av = av.clone();
            async move {
                av.reconciliation_tick(Some(ttl)).await;
            }
        }));
    }
    let av = availability.clone();
    let watch_state = Arc::new(tokio::sync::Mutex::new(MirrorWatch::default()));
    tasks.push(every(cadences.mirror_watch, shutdown.clone(), move || {
        let (av, watch_state) = (av.clone(), watch_state.clone());
        async move {
            watch_state.lock().await.tick(&av).await;
        }
    }));
    let av = availability;
    tasks.push(every(
        cadences.settings_refresh,
        shutdown.clone(),
        move || {
            let av = av.clone();
            async move {
                if let Err(error) = av.settings().reload(av.truth()).await {
                    tracing::warn!(error = %error, "periodic settings reload failed");
                }
            }
        },
    ));
    tasks
}

/// Runs `tick` every `period` (first run after one period) until shutdown.
fn every<F, Fut>(
    period: Duration,
    mut shutdown: watch::Receiver<bool>,
    mut tick: F,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => tick().await,
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    })
}
