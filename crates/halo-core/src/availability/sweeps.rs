//! The three sweeps every instance runs on a cadence (see `crate::background`): auto-offline,
//! the heartbeat mirror to Postgres, and reconciliation. Each takes a short Valkey lease first,
//! so N instances do the work once per cadence, not N times.

use super::{Availability, SeedReason};
use crate::mirror_health::MirrorState;
use halo_domain::{is_fresh, stale_cutoff};
use halo_ports::{MirrorError, OnlineReason};
use std::time::{Duration, Instant};

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
        self.mirror
            .try_lease(sweep, ttl)
            .await
            .map_err(|error| self.sweep_read_failed(sweep, &error))
    }

    /// Whether this instance runs a fleet-wide chat chore this tick (offer rounds, the line):
    /// the lease's holder while the mirror is trusted, else every instance — those chores'
    /// writes are conditional in Postgres, so racing costs only repeated reads.
    pub async fn leads(&self, chore: &'static str, ttl: Duration) -> bool {
        if self.mirror_state() != MirrorState::Trusted {
            return true;
        }
        match self.mirror.try_lease(chore, ttl).await {
            Ok(held) => held,
            Err(error) => {
                self.observe(&error);
                true
            }
        }
    }

    /// The write token, read before Postgres is (see `restore_online`); `None` when Valkey
    /// failed (reported, the tick skipped).
    async fn sweep_token(&self, sweep: &'static str) -> Option<u64> {
        self.mirror
            .write_token()
            .await
            .map_err(|error| self.sweep_read_failed(sweep, &error))
            .ok()
    }

    fn sweep_read_failed(&self, sweep: &'static str, error: &MirrorError) {
        tracing::warn!(event = "sweep.skipped", sweep, error = %error, "sweep.skipped");
        self.observe(error);
    }

    fn finish(&self, sweep: &'static str, outcome: SweepOutcome, started: Instant) -> SweepOutcome {
        self.metrics.sweep_run(sweep, outcome.label());
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
        let stale_after = self.settings.get().stale_after();
        if self.health.recovered_within(stale_after) {
            // After an outage or a flush the pings that reached only the lost mirror are gone:
            // every live mitra gets `stale_after` to ping the reseeded mirror first.
            tracing::info!(
                event = "sweep.skipped",
                sweep = SWEEP,
                "mirror recovered less than stale_after ago"
            );
            return self.finish(SWEEP, SweepOutcome::Skipped, started);
        }
        let beats = match self.mirror.online_heartbeats().await {
            Ok(beats) => beats,
            Err(error) => {
                self.sweep_read_failed(SWEEP, &error);
                return self.finish(SWEEP, SweepOutcome::Skipped, started);
            }
        };
        let now = self.clock.now();
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
        let pg_fresh: Vec<_> = match self.truth.mitra_states(&stale).await {
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
        let fenced = match self.mirror.fence_stale(&stale, cutoff).await {
            Ok(fenced) => fenced,
            Err(error) => {
                // The fence may have landed: the mirror may be missing online mitras.
                self.health.write_failed();
                self.sweep_read_failed(SWEEP, &error);
                return self.finish(SWEEP, SweepOutcome::Skipped, started);
            }
        };
        if fenced.is_empty() {
            return self.finish(SWEEP, SweepOutcome::Done { changed: 0 }, started);
        }
        let Some(token) = self.sweep_token(SWEEP).await else {
            // Fenced but not yet offline in Postgres: the mirror is behind until a seed.
            self.health.write_failed();
            return self.finish(SWEEP, SweepOutcome::Skipped, started);
        };
        let swept = match self
            .truth
            .set_offline_many(&fenced, OnlineReason::AutoOffline, cutoff)
            .await
        {
            Ok(swept) => swept,
            Err(error) => {
                tracing::error!(sweep = SWEEP, error = %error, "auto-offline could not write postgres");
                // Postgres still has them online: the mirror is behind until the next seed.
                self.health.write_failed();
                return self.finish(SWEEP, SweepOutcome::Failed, started);
            }
        };
        self.mirror_restore(&swept.fresh, token).await;
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
        let beats: Vec<_> = match self.mirror.online_heartbeats().await {
            Ok(beats) => beats
                .into_iter()
                .filter_map(|(id, at)| at.map(|at| (id, at)))
                .collect(),
            Err(error) => {
                self.sweep_read_failed(SWEEP, &error);
                return self.finish(SWEEP, SweepOutcome::Skipped, started);
            }
        };
        match self.truth.record_heartbeats(&beats).await {
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
}
