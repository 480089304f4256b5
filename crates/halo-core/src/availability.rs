//! The use cases: toggles, deactivation, heartbeat, capacity, reads, seed and drift.

use crate::error::AvailabilityError;
use crate::settings_cache::SettingsCache;
use halo_domain::{Beacon, DriftReport, MirrorImage, MitraId, MitraState};
use halo_metrics::Metrics;
use halo_ports::{
    AvailabilityMirror, AvailabilityTruth, BeaconClaim, Clock, HeartbeatOutcome, MirrorError,
    OnlineReason, SeedWrite,
};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A seed that keeps racing concurrent writes gives up after this many tries; the watcher or
/// the reconciliation sweep runs it again later.
const SEED_ATTEMPTS: usize = 5;
/// How long a beacon recompute lock lives if its holder dies before storing the snapshot.
const BEACON_LOCK_TTL: Duration = Duration::from_secs(2);
/// How long a caller that found another instance recomputing waits for its snapshot.
const BEACON_WAIT: Duration = Duration::from_millis(300);
const BEACON_POLL: Duration = Duration::from_millis(10);

/// What an `async_trait` mirror method returns.
type MirrorFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, MirrorError>> + Send + 'a>>;

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

/// The heartbeat's answer to the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatAck {
    /// False when the mitra is offline (e.g. swept while the app slept): the app shows it.
    pub online: bool,
    pub interval_seconds: u32,
}

/// The availability library's entry point. Cheap to share behind an `Arc`.
pub struct Availability {
    truth: Arc<dyn AvailabilityTruth>,
    mirror: Arc<dyn AvailabilityMirror>,
    clock: Arc<dyn Clock>,
    settings: SettingsCache,
    metrics: Metrics,
    /// Best-effort mirror writes that failed, ever. While it differs from `healed_through`
    /// the mirror is known to be behind Postgres: this instance reads and guards from Postgres
    /// until the watcher has reseeded.
    failed_writes: AtomicU64,
    /// `failed_writes` as it was when the last successful seed started.
    healed_through: AtomicU64,
    /// The beacon computed from Postgres while Valkey is down, so an outage costs one Postgres
    /// query per TTL per instance instead of one per poll.
    fallback_beacon: Mutex<Option<(Beacon, Instant)>>,
}

impl Availability {
    pub fn new(
        truth: Arc<dyn AvailabilityTruth>,
        mirror: Arc<dyn AvailabilityMirror>,
        clock: Arc<dyn Clock>,
        settings: SettingsCache,
        metrics: Metrics,
    ) -> Self {
        Self {
            truth,
            mirror,
            clock,
            settings,
            metrics,
            failed_writes: AtomicU64::new(0),
            healed_through: AtomicU64::new(0),
            fallback_beacon: Mutex::new(None),
        }
    }

    pub fn settings(&self) -> &SettingsCache {
        &self.settings
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn truth(&self) -> &dyn AvailabilityTruth {
        self.truth.as_ref()
    }

    pub fn mirror(&self) -> &dyn AvailabilityMirror {
        self.mirror.as_ref()
    }

    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// Best-effort removal from the online mirror (used by the auto-offline sweep).
    pub(crate) async fn mirror_offline(&self, ids: &[MitraId]) {
        let result = self.mirror.mark_offline(ids).await;
        self.mirror_written("mark_offline", result);
    }

    /// False while a failed mirror write has not been healed by a seed.
    pub fn mirror_trusted(&self) -> bool {
        self.failed_writes.load(Ordering::SeqCst) == self.healed_through.load(Ordering::SeqCst)
    }

    /// Reads from the mirror, unless it is known to be behind (then the caller falls back).
    async fn read_mirror<'a, T>(
        &'a self,
        read: impl FnOnce(&'a dyn AvailabilityMirror) -> MirrorFuture<'a, T>,
    ) -> Result<T, MirrorError> {
        if !self.mirror_trusted() {
            return Err(MirrorError::Corrupt(
                "mirror behind postgres after a failed write; awaiting reseed".into(),
            ));
        }
        read(self.mirror.as_ref()).await
    }

    /// Absorbs a best-effort mirror write error: log, count, mark dirty.
    fn mirror_written(&self, op: &'static str, result: Result<(), MirrorError>) {
        if let Err(error) = result {
            self.metrics.mirror_write_failed(op);
            self.failed_writes.fetch_add(1, Ordering::SeqCst);
            tracing::warn!(event = "mirror.write_failed", op, error = %error, "mirror.write_failed");
        }
    }

    /// Absorbs the failure of a Valkey side effect that is not mirror data (the beacon cache,
    /// a publish): logged and counted, the mirror stays trusted.
    fn side_effect_failed(&self, op: &'static str, result: Result<(), MirrorError>) {
        if let Err(error) = result {
            self.metrics.mirror_write_failed(op);
            tracing::warn!(event = "mirror.write_failed", op, error = %error, "mirror.write_failed");
        }
    }

    fn fell_back(&self, op: &'static str, error: &MirrorError) {
        self.metrics.valkey_fallback(op);
        tracing::warn!(event = "mirror.fallback", op, error = %error, "mirror.fallback");
    }

    // ---- writes: Postgres first, then the mirror ------------------------------------------

    /// The mitra's own toggle to online. Refused for a deactivated mitra.
    pub async fn set_online(&self, id: MitraId) -> Result<(), AvailabilityError> {
        self.ensure_active(id).await?;
        self.truth
            .set_online(id, true, OnlineReason::Manual)
            .await?;
        let open = self.truth.open_session_count(id).await?;
        let result = self.mirror.mark_online(id, self.clock.now(), open).await;
        self.mirror_written("mark_online", result);
        Ok(())
    }

    /// Sets the mitra offline (own toggle, operator force, deactivation).
    pub async fn set_offline(
        &self,
        id: MitraId,
        reason: OnlineReason,
    ) -> Result<(), AvailabilityError> {
        self.truth.set_online(id, false, reason).await?;
        let result = self.mirror.mark_offline(&[id]).await;
        self.mirror_written("mark_offline", result);
        Ok(())
    }

    /// Deactivate or reactivate: Postgres, then the mirror; deactivation then revokes every
    /// refresh session of the mitra and sets it offline.
    pub async fn update_mitra_status(
        &self,
        id: MitraId,
        active: bool,
    ) -> Result<(), AvailabilityError> {
        self.truth.set_active(id, active).await?;
        let result = self.mirror.set_deactivated(id, !active).await;
        self.mirror_written("set_deactivated", result);
        if !active {
            let revoked = self.truth.revoke_auth_sessions(id).await?;
            tracing::info!(mitra = %id, revoked, "revoked auth sessions of deactivated mitra");
            self.set_offline(id, OnlineReason::Deactivated).await?;
        }
        Ok(())
    }

    /// Re-derives the mitra's capacity from Postgres (a count, never INCR/DECR) and mirrors it.
    pub async fn recompute_capacity_for_mitra(
        &self,
        id: MitraId,
    ) -> Result<u32, AvailabilityError> {
        let open = self.truth.open_session_count(id).await?;
        let result = self.mirror.set_capacity(id, open).await;
        self.mirror_written("set_capacity", result);
        Ok(open)
    }

    // ---- the heartbeat: Valkey only, Postgres guard when Valkey is down --------------------

    pub async fn heartbeat(&self, id: MitraId) -> Result<HeartbeatAck, AvailabilityError> {
        let now = self.clock.now();
        let interval_seconds = self.settings.get().heartbeat_interval_seconds();
        let outcome = self.read_mirror(|mirror| mirror.heartbeat(id, now)).await;
        let online = match outcome {
            Ok(HeartbeatOutcome::Deactivated) => return Err(AvailabilityError::Deactivated),
            Ok(HeartbeatOutcome::Recorded) => true,
            Ok(HeartbeatOutcome::Offline) => false,
            Err(error) => {
                self.fell_back("heartbeat", &error);
                let flags = self
                    .truth
                    .heartbeat_fallback(id, now)
                    .await?
                    .ok_or(AvailabilityError::MitraNotFound)?;
                if !flags.active {
                    return Err(AvailabilityError::Deactivated);
                }
                flags.online
            }
        };
        Ok(HeartbeatAck {
            online,
            interval_seconds,
        })
    }

    /// Refuses a deactivated mitra: mirror first, Postgres when Valkey is down.
    pub async fn ensure_active(&self, id: MitraId) -> Result<(), AvailabilityError> {
        let answer = self.read_mirror(|mirror| mirror.is_deactivated(id)).await;
        let deactivated = match answer {
            Ok(deactivated) => deactivated,
            Err(error) => {
                self.fell_back("is_deactivated", &error);
                let flags = self
                    .truth
                    .mitra_flags(id)
                    .await?
                    .ok_or(AvailabilityError::MitraNotFound)?;
                !flags.active
            }
        };
        if deactivated {
            return Err(AvailabilityError::Deactivated);
        }
        Ok(())
    }

    // ---- reads: Valkey first, the same rules over Postgres on a Valkey error ---------------

    /// Online, active and fresh: may keep or extend a session it already has.
    pub async fn is_mitra_reachable(&self, id: MitraId) -> Result<bool, AvailabilityError> {
        let settings = self.settings.get();
        let now = self.clock.now();
        let state = self.mitra_state(id, "is_mitra_reachable").await?;
        Ok(state.is_some_and(|s| s.is_reachable(now, settings.stale_after())))
    }

    /// Online, active, fresh and under capacity: may take a new customer ("chat again").
    pub async fn is_mitra_available(&self, id: MitraId) -> Result<bool, AvailabilityError> {
        let settings = self.settings.get();
        let now = self.clock.now();
        let state = self.mitra_state(id, "is_mitra_available").await?;
        Ok(state.is_some_and(|s| {
            s.is_available(
                now,
                settings.stale_after(),
                settings.max_customers_per_mitra(),
            )
        }))
    }

    /// What the status screen and the operator list show about one mitra.
    pub async fn mitra_status(&self, id: MitraId) -> Result<MitraState, AvailabilityError> {
        self.mitra_state(id, "mitra_status")
            .await?
            .ok_or(AvailabilityError::MitraNotFound)
    }

    /// One mitra's state: the mirror, or Postgres when the mirror fails (`None` = unknown).
    async fn mitra_state(
        &self,
        id: MitraId,
        op: &'static str,
    ) -> Result<Option<MitraState>, AvailabilityError> {
        Ok(self.mitra_states_for(&[id], op).await?.pop().flatten())
    }

    /// Live states of many mitras (an operator's page): one mirror round trip, or one Postgres
    /// statement when the mirror fails. In the order of `ids`; `None` = unknown.
    pub async fn mitra_statuses(
        &self,
        ids: &[MitraId],
    ) -> Result<Vec<Option<MitraState>>, AvailabilityError> {
        self.mitra_states_for(ids, "mitra_statuses").await
    }

    async fn mitra_states_for(
        &self,
        ids: &[MitraId],
        op: &'static str,
    ) -> Result<Vec<Option<MitraState>>, AvailabilityError> {
        match self.read_mirror(|mirror| mirror.mitra_states(ids)).await {
            Ok(states) => Ok(states.into_iter().map(Some).collect()),
            Err(error) => {
                self.fell_back(op, &error);
                let known: HashMap<MitraId, MitraState> =
                    self.truth.mitra_states(ids).await?.into_iter().collect();
                Ok(ids.iter().map(|id| known.get(id).copied()).collect())
            }
        }
    }

    /// The mitras a blast reaches: available by every rule, capacity included.
    pub async fn find_available_mitras(&self) -> Result<Vec<MitraId>, AvailabilityError> {
        let candidates = self.candidate_states("find_available_mitras").await?;
        let settings = self.settings.get();
        let now = self.clock.now();
        Ok(candidates
            .into_iter()
            .filter(|(_, s)| {
                s.is_available(
                    now,
                    settings.stale_after(),
                    settings.max_customers_per_mitra(),
                )
            })
            .map(|(id, _)| id)
            .collect())
    }

    async fn candidate_states(
        &self,
        op: &'static str,
    ) -> Result<Vec<(MitraId, MitraState)>, AvailabilityError> {
        let answer = self.read_mirror(|mirror| mirror.candidate_states()).await;
        match answer {
            Ok(states) => Ok(states),
            Err(error) => {
                self.fell_back(op, &error);
                Ok(self.truth.candidate_states().await?)
            }
        }
    }

    /// The beacon: computed at most once per TTL across all instances (shared snapshot, one
    /// recompute lock); while Valkey is down, from Postgres, cached in-process for the TTL.
    pub async fn count_available(&self) -> Result<Beacon, AvailabilityError> {
        let ttl = Duration::from_secs(self.settings.get().beacon_ttl_seconds().into());
        let deadline = Instant::now() + BEACON_WAIT;
        loop {
            let claim = self
                .read_mirror(|mirror| mirror.claim_beacon(BEACON_LOCK_TTL))
                .await;
            match claim {
                Ok(BeaconClaim::Cached(beacon)) => return Ok(beacon),
                Ok(BeaconClaim::Compute) => return self.recompute_beacon(ttl).await,
                Ok(BeaconClaim::Busy) if Instant::now() < deadline => {
                    tokio::time::sleep(BEACON_POLL).await;
                }
                // The holder is slow or died: answer from live data without storing.
                Ok(BeaconClaim::Busy) => return self.live_beacon("count_available").await,
                Err(error) => {
                    self.fell_back("count_available", &error);
                    return self.fallback_beacon(ttl).await;
                }
            }
        }
    }

    async fn live_beacon(&self, op: &'static str) -> Result<Beacon, AvailabilityError> {
        let candidates = self.candidate_states(op).await?;
        Ok(self.beacon_of(&candidates))
    }

    fn beacon_of(&self, candidates: &[(MitraId, MitraState)]) -> Beacon {
        let settings = self.settings.get();
        let now = self.clock.now();
        let count = candidates
            .iter()
            .filter(|(_, s)| {
                s.is_available(
                    now,
                    settings.stale_after(),
                    settings.max_customers_per_mitra(),
                )
            })
            .count();
        self.metrics.beacon_recomputed();
        Beacon::from_count(count)
    }

    async fn recompute_beacon(&self, ttl: Duration) -> Result<Beacon, AvailabilityError> {
        let beacon = self.live_beacon("count_available").await?;
        let stored = self
            .mirror
            .store_beacon(beacon, self.clock.now(), ttl)
            .await;
        self.side_effect_failed("store_beacon", stored);
        Ok(beacon)
    }

    async fn fallback_beacon(&self, ttl: Duration) -> Result<Beacon, AvailabilityError> {
        if let Some(beacon) = self.cached_fallback_beacon(ttl) {
            return Ok(beacon);
        }
        // Valkey just failed: straight to Postgres rather than trying it a second time.
        let beacon = self.beacon_of(&self.truth.candidate_states().await?);
        if let Ok(mut slot) = self.fallback_beacon.lock() {
            *slot = Some((beacon, Instant::now()));
        }
        Ok(beacon)
    }

    fn cached_fallback_beacon(&self, ttl: Duration) -> Option<Beacon> {
        let slot = self.fallback_beacon.lock().ok()?;
        slot.filter(|(_, at)| at.elapsed() < ttl)
            .map(|(beacon, _)| beacon)
    }

    /// Drops the shared snapshot and the local fallback copy (config change).
    pub async fn bust_beacon(&self) {
        if let Ok(mut slot) = self.fallback_beacon.lock() {
            *slot = None;
        }
        let result = self.mirror.bust_beacon().await;
        self.side_effect_failed("bust_beacon", result);
    }

    /// The dashboard's online count: `SCARD mitras:online`, Postgres when Valkey is down.
    pub async fn dashboard_online_count(&self) -> Result<u64, AvailabilityError> {
        let answer = self.read_mirror(|mirror| mirror.online_count()).await;
        match answer {
            Ok(n) => Ok(n),
            Err(error) => {
                self.fell_back("dashboard_online_count", &error);
                Ok(self.truth.count_online().await?)
            }
        }
    }

    // ---- operator settings --------------------------------------------------------------

    /// Validates and saves a settings change, then makes every instance see it: this one at
    /// once, the others through `config:invalidate` (and their periodic reload if it is lost).
    pub async fn update_settings(
        &self,
        changes: Vec<(halo_domain::SettingKey, i64)>,
        updated_by: uuid::Uuid,
    ) -> Result<halo_domain::AppSettings, AvailabilityError> {
        let current = self.truth.load_settings().await?;
        let next = current.with_changes(changes)?;
        self.truth.save_settings(&next, updated_by).await?;
        self.settings.set(next);
        self.bust_beacon().await;
        let published = self.mirror.publish_config_invalidate().await;
        self.side_effect_failed("publish_config_invalidate", published);
        Ok(next)
    }

    // ---- seed and drift ------------------------------------------------------------------

    /// Rebuilds every mirror key from Postgres, atomically. Retries when a mirror write landed
    /// between the truth read and the swap (the seed data could be older than the mirror).
    pub async fn seed_from_postgres(&self, reason: SeedReason) -> Result<SeedReport, SeedError> {
        let failures_seen = self.failed_writes.load(Ordering::SeqCst);
        for _ in 0..SEED_ATTEMPTS {
            let token = self.mirror.write_token().await.map_err(SeedError::Mirror)?;
            let truth = self.truth.mirror_truth().await.map_err(SeedError::Truth)?;
            let image = MirrorImage::expected_from(&truth);
            let now = self.clock.now();
            match self
                .mirror
                .replace_all(&image, token, now)
                .await
                .map_err(SeedError::Mirror)?
            {
                SeedWrite::Applied => {
                    // Failures from before this seed read the truth are healed; later ones not.
                    self.healed_through
                        .fetch_max(failures_seen, Ordering::SeqCst);
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
                        "mirror.seed"
                    );
                    return Ok(report);
                }
                SeedWrite::Raced => tracing::debug!("seed raced a mirror write; retrying"),
            }
        }
        Err(SeedError::KeptRacing)
    }

    /// Valkey against Postgres, key by key.
    pub async fn drift_report(&self) -> Result<DriftReport, SeedError> {
        let truth = self.truth.mirror_truth().await.map_err(SeedError::Truth)?;
        let actual = self.mirror.read_image().await.map_err(SeedError::Mirror)?;
        Ok(MirrorImage::expected_from(&truth).drift_against(&actual))
    }
}

/// Why a seed or a drift report could not run: both need both stores.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("valkey unavailable for the seed")]
    Mirror(#[source] MirrorError),
    #[error("postgres unavailable for the seed")]
    Truth(#[source] halo_ports::TruthError),
    #[error("the seed raced concurrent mirror writes {SEED_ATTEMPTS} times")]
    KeptRacing,
}
