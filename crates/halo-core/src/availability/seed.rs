//! The seed (every mirror key rebuilt from Postgres) and the drift report.

use super::Availability;
use crate::error::SeedError;
use halo_domain::DriftReport;
use halo_ports::{MirrorError, SeedWrite};

/// A seed whose staged sets keep vanishing (a server that keeps losing its data) gives up after
/// this many tries; the watcher or the reconciliation sweep runs it again later.
const SEED_ATTEMPTS: usize = 5;

/// Why a seed ran (the `reason` of the `mirror.seed` event and metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedReason {
    Startup,
    Reconnect,
    Flushed,
    WriteFailed,
    Reconciliation,
    Operator,
}

impl SeedReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Startup => "startup",
            Self::Reconnect => "reconnect",
            Self::Flushed => "flushed",
            Self::WriteFailed => "write_failed",
            Self::Reconciliation => "reconciliation",
            Self::Operator => "operator",
        }
    }
}

/// The counts of the `mirror.seed` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedReport {
    pub online: usize,
    pub deactivated: usize,
    pub with_sessions: usize,
}

impl Availability {
    // ---- seed and drift ------------------------------------------------------------------

    /// Rebuilds every mirror key from Postgres, atomically, merging what is newer in Valkey:
    /// keys of mitras written after the seed read its token stay, and heartbeats become the
    /// newest of both stores. Never refused by concurrent writes (so it cannot be starved);
    /// an older seed never overwrites a newer one.
    pub async fn seed_from_postgres(&self, reason: SeedReason) -> Result<SeedReport, SeedError> {
        let ticket = self.health.seed_starting();
        for _ in 0..SEED_ATTEMPTS {
            let token = self
                .mirror
                .write_token()
                .await
                .map_err(|e| self.seed_failed(e))?;
            let image = self
                .truth
                .mirror_truth()
                .await
                .map_err(SeedError::Truth)?
                .image();
            let now = self.clock.now();
            let write = self
                .mirror
                .replace_all(&image, token, now)
                .await
                .map_err(|e| self.seed_failed(e))?;
            if write == SeedWrite::Raced {
                tracing::debug!("seed staging vanished before the swap; staging again");
                continue;
            }
            self.health.seed_applied(ticket);
            let report = SeedReport {
                online: image.online.len(),
                deactivated: image.deactivated.len(),
                with_sessions: image.with_sessions(),
            };
            self.metrics.seed(reason.as_str());
            tracing::info!(
                event = "mirror.seed",
                online = report.online,
                deactivated = report.deactivated,
                with_sessions = report.with_sessions,
                reason = reason.as_str(),
                superseded = write == SeedWrite::Superseded,
                "mirror.seed"
            );
            return Ok(report);
        }
        Err(SeedError::KeptRacing {
            attempts: SEED_ATTEMPTS,
        })
    }

    fn seed_failed(&self, error: MirrorError) -> SeedError {
        self.observe(&error);
        SeedError::Mirror(error)
    }

    /// Valkey against Postgres, key by key.
    pub async fn drift_report(&self) -> Result<DriftReport, SeedError> {
        let expected = self
            .truth
            .mirror_truth()
            .await
            .map_err(SeedError::Truth)?
            .image();
        let actual = self
            .mirror
            .read_image()
            .await
            .map_err(|e| self.seed_failed(e))?;
        Ok(expected.drift_against(&actual))
    }
}
