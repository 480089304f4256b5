//! Background work of every instance: the three sweeps of CONTRACT §3, the mirror watcher that
//! reseeds on reconnect / flush / failed writes, and the settings safety-net reload. Each sweep
//! takes a short Valkey lease first, so N instances do the work once per cadence, not N times.

use crate::availability::{Availability, SeedReason};
use crate::mirror_health::MirrorState;
use halo_domain::availability::{is_fresh, stale_cutoff};
use halo_ports::{MirrorError, OnlineReason};
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
    /// Valkey failed or the mirror is not trusted: the whole tick was skipped, Postgres
    /// untouched.
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

const RECONCILIATION: &str = "reconciliation";

/// The lease lives a little less than the cadence, so the next tick (on any instance) can run.
fn lease_ttl(cadence: Duration) -> Duration {
    (cadence * 9 / 10).max(Duration::from_millis(100))
}

impl Availability {
    /// The sweeps that read the mirror run only while it is trusted (a mirror that is behind or
    /// came back with old data would mass-offline live mitras); none sends anything while it
    /// is down. Then the lease.
    async fn take_lease(&self, sweep: &'static str, lease: Option<Duration>) -> Result<bool, ()> {
        let state = self.mirror_state();
        let reads_mirror = sweep != RECONCILIATION;
        if state == MirrorState::Down || (reads_mirror && state != MirrorState::Trusted) {
            tracing::info!(
                event = "sweep.skipped",
                sweep,
                mirror = state.as_str(),
                "sweep.skipped"
            );
            return Err(());
        }
        let Some(ttl) = lease else { return Ok(true) };
        self.mirror()
            .try_lease(sweep, ttl)
            .await
            .map_err(|error| self.sweep_read_failed(sweep, &error))
    }

    /// The write token, read before Postgres is (see `restore_online`); `None` when Valkey
    /// failed (reported, the tick skipped).
    async fn sweep_token(&self, sweep: &'static str) -> Option<u64> {
        self.mirror()
            .write_token()
            .await
            .map_err(|error| self.sweep_read_failed(sweep, &error))
            .ok()
    }

    fn sweep_read_failed(&self, sweep: &'static str, error: &MirrorError) {
        tracing::warn!(event = "sweep.skipped", sweep, error = %error, "sweep.skipped");
        match error {
            MirrorError::Unavailable(_) => self.health().down(error),
            MirrorError::Unseeded => self.health().unseeded(),
            MirrorError::Corrupt(_) => {}
        }
    }

    fn finish(&self, sweep: &'static str, outcome: SweepOutcome, started: Instant) -> SweepOutcome {
        self.metrics().sweep_run(sweep, outcome.label());
        if let SweepOutcome::Done { changed } = outcome {
            let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            tracing::info!(event = "sweep.done", sweep, changed, ms, "sweep.done");
        }
        outcome
    }

    /// Online mitras whose heartbeat is stale or missing go offline. Skipped unless the mirror
    /// is trusted: never mass-offline from Postgres alone, nor from a mirror that may be old.
    ///
    /// Each step guards against what happened since the one before: mitras whose Postgres
    /// heartbeat is fresh (pings answered from Postgres, a toggle) are kept and their mirror
    /// heartbeat healed; the fence takes out of the online set only mitras whose mirror
    /// heartbeat is *still* stale (a ping that landed since the read keeps its mitra, later
    /// pings answer "offline"); Postgres sets offline only those whose `last_heartbeat_at` is
    /// stale too (a toggle during the tick stamps it); fenced mitras Postgres kept go back.
    pub async fn auto_offline_tick(&self, lease: Option<Duration>) -> SweepOutcome {
        const SWEEP: &str = "auto_offline";
        let started = Instant::now();
        match self.take_lease(SWEEP, lease).await {
            Err(()) => return self.finish(SWEEP, SweepOutcome::Skipped, started),
            Ok(false) => return self.finish(SWEEP, SweepOutcome::LeaseHeld, started),
            Ok(true) => {}
        }
        let stale_after = self.settings().get().stale_after();
        if self.health().recovered_within(stale_after) {
            // After an outage or a flush the pings that reached only the lost mirror are gone:
            // every live mitra gets `stale_after` to ping the reseeded mirror first.
            tracing::info!(
                event = "sweep.skipped",
                sweep = SWEEP,
                "mirror recovered less than stale_after ago"
            );
            return self.finish(SWEEP, SweepOutcome::Skipped, started);
        }
        let beats = match self.mirror().online_heartbeats().await {
            Ok(beats) => beats,
            Err(error) => {
                self.sweep_read_failed(SWEEP, &error);
                return self.finish(SWEEP, SweepOutcome::Skipped, started);
            }
        };
        let now = halo_ports::Clock::now(self.clock());
        let stale: Vec<_> = beats
            .into_iter()
            .filter(|(_, at)| !is_fresh(*at, now, stale_after))
            .map(|(id, _)| id)
            .collect();
        if stale.is_empty() {
            return self.finish(SWEEP, SweepOutcome::Done { changed: 0 }, started);
        }
        let cutoff = stale_cutoff(now, stale_after);
        // Postgres may know a newer heartbeat (pings answered from it while the mirror was not
        // trusted, a toggle): those are fresh, and the mirror learns their heartbeat unless a
        // write (a toggle offline) landed since the token read before Postgres was.
        let Some(token) = self.sweep_token(SWEEP).await else {
            return self.finish(SWEEP, SweepOutcome::Skipped, started);
        };
        let pg_fresh: Vec<_> = match self.truth().mitra_states(&stale).await {
            Ok(states) => states
                .into_iter()
                .filter(|(_, s)| s.is_reachable(now, stale_after))
                .filter_map(|(id, s)| s.last_heartbeat.map(|at| (id, at)))
                .collect(),
            Err(error) => {
                tracing::error!(sweep = SWEEP, error = %error, "auto-offline could not read postgres");
                return self.finish(SWEEP, SweepOutcome::Failed, started);
            }
        };
        self.mirror_restore(&pg_fresh, token).await;
        let stale: Vec<_> = stale
            .into_iter()
            .filter(|id| !pg_fresh.iter().any(|(fresh, _)| fresh == id))
            .collect();
        let fenced = match self.mirror().fence_stale(&stale, cutoff).await {
            Ok(fenced) => fenced,
            Err(error) => {
                // The fence may have landed: the mirror may be missing online mitras.
                self.health().write_failed();
                self.sweep_read_failed(SWEEP, &error);
                return self.finish(SWEEP, SweepOutcome::Skipped, started);
            }
        };
        if fenced.is_empty() {
            return self.finish(SWEEP, SweepOutcome::Done { changed: 0 }, started);
        }
        let Some(token) = self.sweep_token(SWEEP).await else {
            // Fenced but not yet offline in Postgres: the mirror is behind until a seed.
            self.health().write_failed();
            return self.finish(SWEEP, SweepOutcome::Skipped, started);
        };
        let swept = match self
            .truth()
            .set_offline_many(&fenced, OnlineReason::AutoOffline, cutoff)
            .await
        {
            Ok(swept) => swept,
            Err(error) => {
                tracing::error!(sweep = SWEEP, error = %error, "auto-offline could not write postgres");
                // Postgres still has them online: the mirror is behind until the next seed.
                self.health().write_failed();
                return self.finish(SWEEP, SweepOutcome::Failed, started);
            }
        };
        self.mirror_restore(&swept.fresh, token).await;
        if !swept.fresh.is_empty() {
            tracing::info!(
                sweep = SWEEP,
                kept = swept.fresh.len(),
                "postgres held fresh heartbeats; kept online"
            );
        }
        self.finish(
            SWEEP,
            SweepOutcome::Done {
                changed: swept.changed.len(),
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
                self.sweep_read_failed(SWEEP, &error);
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

    /// Reseeds the mirror from Postgres (heals drift, also a mirror that is behind).
    pub async fn reconciliation_tick(&self, lease: Option<Duration>) -> SweepOutcome {
        const SWEEP: &str = RECONCILIATION;
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

/// The background probe of the mirror's health (`MirrorHealth`): it is the only one that
/// sends to Valkey while the mirror is down, and the only way back to `Trusted` is its seed.
#[derive(Debug, Default)]
pub struct MirrorWatch {
    /// `AvailabilityMirror::connection_drops` at the last check.
    drops_seen: u64,
}

impl MirrorWatch {
    /// One check: probes the generation marker, then reseeds unless the mirror is trusted —
    /// after an outage or a dropped connection (`reconnect`: the server may have come back with
    /// older data, which still has its generation marker), when the marker is gone (`flushed`),
    /// or after a failed write (`write_failed`). Returns the reason of the seed it ran, if any.
    pub async fn tick(&mut self, availability: &Availability) -> Option<SeedReason> {
        let health = availability.health();
        let probe = availability.mirror().is_seeded().await;
        // After the probe: it may be the call that found the connection dropped.
        let drops = availability.mirror().connection_drops();
        if drops != self.drops_seen {
            self.drops_seen = drops;
            health.down(&"a valkey connection was dropped");
        }
        let was_down = health.is_down();
        match probe {
            Err(error) => {
                health.down(&error);
                return None;
            }
            Ok(false) => health.unseeded(),
            Ok(true) => {}
        }
        let reason = match health.state() {
            MirrorState::Trusted => return None,
            MirrorState::Down => SeedReason::Reconnect,
            MirrorState::Unseeded if was_down => SeedReason::Reconnect,
            MirrorState::Unseeded => SeedReason::Flushed,
            MirrorState::Behind => SeedReason::WriteFailed,
        };
        match availability.seed_from_postgres(reason).await {
            Ok(_) => Some(reason),
            Err(error) => {
                tracing::warn!(error = %error, reason = reason.as_str(), "reseed failed; retrying on the next check");
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
    tasks.push(spawn_watcher(
        availability.clone(),
        cadences.mirror_watch,
        shutdown.clone(),
    ));
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

/// The watcher checks every `period`, and at once when the mirror stops being trusted.
fn spawn_watcher(
    availability: Arc<Availability>,
    period: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut watch = MirrorWatch::default();
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                () = availability.health().woken() => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            watch.tick(&availability).await;
        }
    })
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
