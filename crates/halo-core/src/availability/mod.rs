//! The availability use cases, one file per concern: `writes` (toggles, deactivation,
//! capacity), `heartbeat`, `reads` (states, the blast's candidates, the dashboard count),
//! `beacon`, `settings`, `seed` (seed and drift). Every Valkey call goes through one of the three
//! doors in `doors` (`read_or_fallback`, `write_mirror`, `side_effect`), which ask the
//! `MirrorHealth` first and report what the call found.

mod beacon;
mod doors;
mod heartbeat;
mod reads;
mod seed;
mod settings;
mod sweeps;
mod watch;
mod writes;

pub use heartbeat::HeartbeatAck;
pub use seed::{SeedReason, SeedReport};
pub use sweeps::SweepOutcome;
pub use watch::MirrorWatch;

use crate::mirror_health::{MirrorHealth, MirrorState};
use crate::settings_cache::SettingsCache;
use beacon::LocalBeacon;
use halo_domain::MitraState;
use halo_metrics::Metrics;
use halo_ports::{AvailabilityMirror, AvailabilityTruth, Clock, SettingsStore};
use std::sync::Arc;

/// The stores the availability use cases work on, each through its own port. One adapter may
/// stand behind several (Postgres is both the truth and the settings store).
#[derive(Clone)]
pub struct AvailabilityStores {
    pub truth: Arc<dyn AvailabilityTruth>,
    pub settings: Arc<dyn SettingsStore>,
    pub mirror: Arc<dyn AvailabilityMirror>,
    pub clock: Arc<dyn Clock>,
}

/// What the readiness probe reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreProbe {
    pub postgres_up: bool,
    /// False while the mirror is known to be down (then no ping is sent).
    pub valkey_up: bool,
    pub mirror: MirrorState,
}

/// Whether a state is read to decide availability or to show it (see
/// `with_postgres_heartbeat_lag`).
#[derive(Debug, Clone, Copy)]
enum Read {
    Decide,
    Show,
}

/// The availability library's entry point. Cheap to share behind an `Arc`.
pub struct Availability {
    truth: Arc<dyn AvailabilityTruth>,
    settings_store: Arc<dyn SettingsStore>,
    mirror: Arc<dyn AvailabilityMirror>,
    clock: Arc<dyn Clock>,
    settings: SettingsCache,
    metrics: Metrics,
    health: MirrorHealth,
    beacon: LocalBeacon,
    /// How far `last_heartbeat_at` may lag a mitra's newest ping (see
    /// `with_postgres_heartbeat_lag`).
    postgres_heartbeat_lag: time::Duration,
}

impl Availability {
    /// `settings` is the cache this instance's rules read (loaded from the settings store at
    /// start-up, refreshed by `config:invalidate` and the periodic reload).
    pub fn new(stores: AvailabilityStores, settings: SettingsCache, metrics: Metrics) -> Self {
        Self {
            truth: stores.truth,
            settings_store: stores.settings,
            mirror: stores.mirror,
            clock: stores.clock,
            settings,
            health: MirrorHealth::new(metrics.clone()),
            metrics,
            beacon: LocalBeacon::default(),
            postgres_heartbeat_lag: time::Duration::ZERO,
        }
    }

    /// Pings answered by Valkey reach `last_heartbeat_at` once per heartbeat-mirror cycle, so
    /// when a read falls back to Postgres a mitra's newest ping may be up to one cycle newer
    /// than what Postgres holds. Availability decisions read from Postgres (blast, beacon,
    /// reachable, available) count a heartbeat as that much newer: otherwise, with
    /// `stale_after_seconds` shorter than the cycle, every mitra would look stale at the start
    /// of an outage until its next ping. The cost is the other way round: a mitra that died
    /// just after the last cycle counts for up to one cycle longer. The sweep's own guard and
    /// the status views read Postgres as it is.
    #[must_use]
    pub fn with_postgres_heartbeat_lag(mut self, lag: std::time::Duration) -> Self {
        self.postgres_heartbeat_lag = time::Duration::try_from(lag).unwrap_or(time::Duration::ZERO);
        self
    }

    /// A state read from Postgres, as an availability decision reads it (see above).
    fn allowing_lag(&self, mut state: MitraState) -> MitraState {
        state.last_heartbeat = state
            .last_heartbeat
            .map(|at| at + self.postgres_heartbeat_lag);
        state
    }

    pub fn settings(&self) -> &SettingsCache {
        &self.settings
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn health(&self) -> &MirrorHealth {
        &self.health
    }

    pub fn mirror_state(&self) -> MirrorState {
        self.health.state()
    }

    /// True while hot paths use the mirror (see `MirrorHealth`).
    pub fn mirror_trusted(&self) -> bool {
        self.health.is_trusted()
    }

    /// Both stores, for `/readyz`: Postgres pinged; Valkey pinged unless it is known to be
    /// down (a probe must not wait on it either), and a failed ping opens the breaker.
    pub async fn probe(&self) -> StoreProbe {
        let valkey = async {
            if self.health.is_down() {
                return false;
            }
            match self.mirror.ping().await {
                Ok(()) => true,
                Err(error) => {
                    self.observe(&error);
                    false
                }
            }
        };
        let (postgres, valkey_up) = tokio::join!(self.truth.ping(), valkey);
        StoreProbe {
            postgres_up: postgres.is_ok(),
            valkey_up,
            mirror: self.health.state(),
        }
    }
}

#[cfg(test)]
mod decisions_tests;
