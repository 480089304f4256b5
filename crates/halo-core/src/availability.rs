//! The use cases: toggles, deactivation, heartbeat, capacity, reads, seed and drift. Every
//! Valkey call goes through one of three doors (`read_or_fallback`, `write_mirror`,
//! `side_effect`), which ask the `MirrorHealth` first and report what the call found.

use crate::error::AvailabilityError;
use crate::mirror_health::{MirrorHealth, MirrorState};
use crate::settings_cache::SettingsCache;
use halo_domain::{Beacon, DriftReport, MitraId, MitraState};
use halo_metrics::Metrics;
use halo_ports::{
    AvailabilityMirror, AvailabilityTruth, BeaconClaim, BeaconLock, Clock, HeartbeatOutcome,
    MirrorError, OnlineReason, SeedWrite,
};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A seed whose staged sets keep vanishing (a server that keeps losing its data) gives up after
/// this many tries; the watcher or the reconciliation sweep runs it again later.
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

/// The last beacon this instance answered, and when it learnt it.
#[derive(Default)]
struct LocalBeacon {
    last: Mutex<Option<(Beacon, Instant)>>,
    /// Held by the one caller of this instance computing a beacon outside the shared lock
    /// (Valkey down, or the lock's holder slow or dead): the others wait for its answer.
    computing: tokio::sync::Mutex<()>,
}

impl LocalBeacon {
    fn younger_than(&self, age: Duration) -> Option<Beacon> {
        let last = self.last.lock().ok()?;
        last.filter(|(_, at)| at.elapsed() < age)
            .map(|(beacon, _)| beacon)
    }

    fn remember(&self, beacon: Beacon) {
        if let Ok(mut last) = self.last.lock() {
            *last = Some((beacon, Instant::now()));
        }
    }

    fn forget(&self) {
        if let Ok(mut last) = self.last.lock() {
            *last = None;
        }
    }
}

/// The availability library's entry point. Cheap to share behind an `Arc`.
pub struct Availability {
    truth: Arc<dyn AvailabilityTruth>,
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

    pub fn truth(&self) -> &dyn AvailabilityTruth {
        self.truth.as_ref()
    }

    pub fn mirror(&self) -> &dyn AvailabilityMirror {
        self.mirror.as_ref()
    }

    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
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

    // ---- the three doors to Valkey ---------------------------------------------------------

    /// A read from the mirror while it is trusted, else from Postgres without touching Valkey.
    /// A failed mirror read falls back too, and tells the health what it found.
    async fn read_or_fallback<'a, T, F>(
        &'a self,
        op: &'static str,
        mirror_read: impl FnOnce(&'a dyn AvailabilityMirror) -> MirrorFuture<'a, T>,
        truth_read: impl FnOnce() -> F,
    ) -> Result<T, AvailabilityError>
    where
        F: Future<Output = Result<T, AvailabilityError>>,
    {
        if self.health.is_trusted() {
            match mirror_read(self.mirror.as_ref()).await {
                Ok(answer) => return Ok(answer),
                Err(error) => self.mirror_read_failed(op, &error),
            }
        } else {
            // The breaker is open: no log per request, the state change was logged once.
            self.metrics.valkey_fallback(op);
        }
        truth_read().await
    }

    fn mirror_read_failed(&self, op: &'static str, error: &MirrorError) {
        self.metrics.valkey_fallback(op);
        tracing::warn!(event = "mirror.fallback", op, error = %error, "mirror.fallback");
        self.observe(error);
    }

    /// What a failed call says about the mirror's health.
    fn observe(&self, error: &MirrorError) {
        match error {
            MirrorError::Unavailable(_) => self.health.down(error),
            MirrorError::Unseeded => self.health.unseeded(),
            MirrorError::Corrupt(_) => {}
        }
    }

    /// A best-effort mirror write after a Postgres commit. Not sent while Valkey is down (it
    /// would only wait out the deadline); either way a write that did not land marks the
    /// mirror behind until a seed heals it.
    async fn write_mirror<'a>(
        &'a self,
        op: &'static str,
        write: impl FnOnce(&'a dyn AvailabilityMirror) -> MirrorFuture<'a, ()>,
    ) {
        if self.health.is_down() {
            // Not an incident of its own (the outage was reported once): a seed that began
            // before it must still be able to end the outage; this write is healed by the next.
            self.metrics.mirror_write_failed(op);
            self.health.write_failed();
            tracing::warn!(
                event = "mirror.write_failed",
                op,
                error = "valkey down; not sent",
                "mirror.write_failed"
            );
            return;
        }
        if let Err(error) = write(self.mirror.as_ref()).await {
            self.metrics.mirror_write_failed(op);
            self.health.write_failed();
            self.observe(&error);
            tracing::warn!(event = "mirror.write_failed", op, error = %error, "mirror.write_failed");
        }
    }

    /// A Valkey side effect that is not mirror data (the beacon cache, a publish): skipped
    /// while Valkey is down; a failure is logged and counted, the mirror stays as trusted as
    /// it was.
    async fn side_effect<'a>(
        &'a self,
        op: &'static str,
        effect: impl FnOnce(&'a dyn AvailabilityMirror) -> MirrorFuture<'a, ()>,
    ) {
        if self.health.is_down() {
            return;
        }
        if let Err(error) = effect(self.mirror.as_ref()).await {
            self.metrics.mirror_write_failed(op);
            if matches!(error, MirrorError::Unavailable(_)) {
                self.health.down(&error);
            }
            tracing::warn!(event = "mirror.write_failed", op, error = %error, "mirror.write_failed");
        }
    }

    /// Puts back mitras the sweep found fresh in Postgres, unless written since `token`.
    pub(crate) async fn mirror_restore(
        &self,
        beats: &[(MitraId, time::OffsetDateTime)],
        token: u64,
    ) {
        if !beats.is_empty() {
            self.write_mirror("restore_online", |m| m.restore_online(beats, token))
                .await;
        }
    }

    // ---- writes: Postgres first, then the mirror ------------------------------------------

    /// The mitra's own toggle to online. Refused for a deactivated mitra.
    pub async fn set_online(&self, id: MitraId) -> Result<(), AvailabilityError> {
        self.ensure_active(id).await?;
        self.truth
            .set_online(id, true, OnlineReason::Manual)
            .await?;
        // The toggle committed: a recount that fails now leaves the mirror behind, the caller
        // is told it is online.
        let Some(capacity) = self.count_or_mark_behind(id, "mark_online").await else {
            return Ok(());
        };
        let now = self.clock.now();
        self.write_mirror("mark_online", |m| m.mark_online(id, now, capacity))
            .await;
        Ok(())
    }

    /// Sets the mitra offline (own toggle, operator force, deactivation).
    pub async fn set_offline(
        &self,
        id: MitraId,
        reason: OnlineReason,
    ) -> Result<(), AvailabilityError> {
        self.truth.set_online(id, false, reason).await?;
        self.write_mirror("mark_offline", |m| {
            m.mark_offline(std::slice::from_ref(&id))
        })
        .await;
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
        self.write_mirror("set_deactivated", |m| m.set_deactivated(id, !active))
            .await;
        if !active {
            let revoked = self.truth.revoke_auth_sessions(id).await?;
            tracing::info!(mitra = %id, revoked, "revoked auth sessions of deactivated mitra");
            self.set_offline(id, OnlineReason::Deactivated).await?;
        }
        Ok(())
    }

    /// Re-derives the mitra's capacity from Postgres (a count, never INCR/DECR) and mirrors it.
    /// Counts are ordered (see `CapacityCount`): of two racing recounts the later one stays.
    /// A count that fails in Postgres leaves the mirror behind, like a failed mirror write.
    pub async fn recompute_capacity_for_mitra(
        &self,
        id: MitraId,
    ) -> Result<u32, AvailabilityError> {
        let capacity = self
            .truth
            .count_open_sessions(id)
            .await
            .inspect_err(|_| self.mirror_missed("set_capacity"))?;
        self.write_mirror("set_capacity", |m| m.set_capacity(id, capacity))
            .await;
        Ok(capacity.open)
    }

    /// The open-session count for a mirror write; `None` (the mirror marked behind) when
    /// Postgres cannot count.
    async fn count_or_mark_behind(
        &self,
        id: MitraId,
        op: &'static str,
    ) -> Option<halo_ports::CapacityCount> {
        match self.truth.count_open_sessions(id).await {
            Ok(capacity) => Some(capacity),
            Err(error) => {
                tracing::warn!(event = "mirror.write_failed", op, error = %error, "recount failed; mirror behind");
                self.mirror_missed(op);
                None
            }
        }
    }

    /// A mirror write that could not even be prepared: the mirror misses a change.
    fn mirror_missed(&self, op: &'static str) {
        self.metrics.mirror_write_failed(op);
        self.health.write_failed();
    }

    // ---- the heartbeat: Valkey only, Postgres guard when Valkey is not trusted -------------

    pub async fn heartbeat(&self, id: MitraId) -> Result<HeartbeatAck, AvailabilityError> {
        let now = self.clock.now();
        let interval_seconds = self.settings.get().heartbeat_interval_seconds();
        let outcome = self
            .read_or_fallback(
                "heartbeat",
                |m| m.heartbeat(id, now),
                || async {
                    let flags = self
                        .truth
                        .heartbeat_fallback(id, now)
                        .await?
                        .ok_or(AvailabilityError::MitraNotFound)?;
                    Ok(match (flags.active, flags.online) {
                        (false, _) => HeartbeatOutcome::Deactivated,
                        (true, true) => HeartbeatOutcome::Recorded,
                        (true, false) => HeartbeatOutcome::Offline,
                    })
                },
            )
            .await?;
        let online = match outcome {
            HeartbeatOutcome::Deactivated => return Err(AvailabilityError::Deactivated),
            HeartbeatOutcome::Recorded => true,
            HeartbeatOutcome::Offline => false,
        };
        Ok(HeartbeatAck {
            online,
            interval_seconds,
        })
    }

    /// Refuses a deactivated mitra: mirror first, Postgres when it is not trusted.
    pub async fn ensure_active(&self, id: MitraId) -> Result<(), AvailabilityError> {
        let deactivated = self
            .read_or_fallback(
                "is_deactivated",
                |m| m.is_deactivated(id),
                || async {
                    let flags = self
                        .truth
                        .mitra_flags(id)
                        .await?
                        .ok_or(AvailabilityError::MitraNotFound)?;
                    Ok(!flags.active)
                },
            )
            .await?;
        if deactivated {
            return Err(AvailabilityError::Deactivated);
        }
        Ok(())
    }

    // ---- reads: Valkey first, the same rules over Postgres otherwise ------------------------

    /// Online, active and fresh: may keep or extend a session it already has.
    pub async fn is_mitra_reachable(&self, id: MitraId) -> Result<bool, AvailabilityError> {
        let settings = self.settings.get();
        let now = self.clock.now();
        let state = self
            .mitra_state(id, "is_mitra_reachable", Read::Decide)
            .await?;
        Ok(state.is_some_and(|s| s.is_reachable(now, settings.stale_after())))
    }

    /// Online, active, fresh and under capacity: may take a new customer ("chat again").
    pub async fn is_mitra_available(&self, id: MitraId) -> Result<bool, AvailabilityError> {
        let state = self
            .mitra_state(id, "is_mitra_available", Read::Decide)
            .await?;
        Ok(state.is_some_and(|s| self.available(&s)))
    }

    /// The availability rule with this instance's settings and clock.
    fn available(&self, state: &MitraState) -> bool {
        let settings = self.settings.get();
        state.is_available(
            self.clock.now(),
            settings.stale_after(),
            settings.max_customers_per_mitra(),
        )
    }

    /// What the status screen and the operator list show about one mitra.
    pub async fn mitra_status(&self, id: MitraId) -> Result<MitraState, AvailabilityError> {
        self.mitra_state(id, "mitra_status", Read::Show)
            .await?
            .ok_or(AvailabilityError::MitraNotFound)
    }

    /// One mitra's state (`None` = unknown).
    async fn mitra_state(
        &self,
        id: MitraId,
        op: &'static str,
        read: Read,
    ) -> Result<Option<MitraState>, AvailabilityError> {
        Ok(self
            .mitra_states_for(&[id], op, read)
            .await?
            .pop()
            .flatten())
    }

    /// Live states of many mitras (an operator's page): one mirror round trip, or one Postgres
    /// statement. In the order of `ids`; `None` = unknown.
    pub async fn mitra_statuses(
        &self,
        ids: &[MitraId],
    ) -> Result<Vec<Option<MitraState>>, AvailabilityError> {
        self.mitra_states_for(ids, "mitra_statuses", Read::Show)
            .await
    }

    async fn mitra_states_for(
        &self,
        ids: &[MitraId],
        op: &'static str,
        read: Read,
    ) -> Result<Vec<Option<MitraState>>, AvailabilityError> {
        self.read_or_fallback(
            op,
            |m| {
                Box::pin(
                    async move { Ok(m.mitra_states(ids).await?.into_iter().map(Some).collect()) },
                )
            },
            || async {
                let known: HashMap<MitraId, MitraState> =
                    self.truth.mitra_states(ids).await?.into_iter().collect();
                let as_read = |state: MitraState| match read {
                    Read::Decide => self.allowing_lag(state),
                    Read::Show => state,
                };
                Ok(ids
                    .iter()
                    .map(|id| known.get(id).copied().map(as_read))
                    .collect())
            },
        )
        .await
    }

    /// The mitras a blast reaches: available by every rule, capacity included.
    pub async fn find_available_mitras(&self) -> Result<Vec<MitraId>, AvailabilityError> {
        let candidates = self.candidate_states("find_available_mitras").await?;
        Ok(candidates
            .into_iter()
            .filter(|(_, s)| self.available(s))
            .map(|(id, _)| id)
            .collect())
    }

    async fn candidate_states(
        &self,
        op: &'static str,
    ) -> Result<Vec<(MitraId, MitraState)>, AvailabilityError> {
        self.read_or_fallback(
            op,
            |m| m.candidate_states(),
            || self.candidates_in_postgres(),
        )
        .await
    }

    /// The fallback of the blast and the beacon, as a decision reads Postgres.
    async fn candidates_in_postgres(
        &self,
    ) -> Result<Vec<(MitraId, MitraState)>, AvailabilityError> {
        let states = self.truth.candidate_states().await?;
        Ok(states
            .into_iter()
            .map(|(id, state)| (id, self.allowing_lag(state)))
            .collect())
    }

    /// The beacon: computed at most once per TTL across all instances (shared snapshot, one
    /// recompute lock); while the mirror is not trusted, from Postgres, at most once per TTL
    /// per instance.
    pub async fn count_available(&self) -> Result<Beacon, AvailabilityError> {
        let ttl = Duration::from_secs(self.settings.get().beacon_ttl_seconds().into());
        if !self.health.is_trusted() {
            self.metrics.valkey_fallback("count_available");
            return self.beacon_from_postgres(ttl).await;
        }
        let deadline = Instant::now() + BEACON_WAIT;
        loop {
            match self.mirror.claim_beacon(BEACON_LOCK_TTL).await {
                Ok(BeaconClaim::Cached(beacon)) => {
                    self.beacon.remember(beacon);
                    return Ok(beacon);
                }
                Ok(BeaconClaim::Compute(lock)) => return self.recompute_beacon(ttl, lock).await,
                // Someone computes it: this instance's last answer, if still within the TTL,
                // serves at once instead of waiting.
                Ok(BeaconClaim::Busy) if self.beacon.younger_than(ttl).is_some() => {
                    return self.beacon_while_busy(ttl).await;
                }
                Ok(BeaconClaim::Busy) if Instant::now() < deadline && self.health.is_trusted() => {
                    tokio::time::sleep(BEACON_POLL).await;
                }
                Ok(BeaconClaim::Busy) => return self.beacon_while_busy(ttl).await,
                Err(error) => {
                    self.mirror_read_failed("count_available", &error);
                    return self.beacon_from_postgres(ttl).await;
                }
            }
        }
    }

    fn beacon_of(&self, candidates: &[(MitraId, MitraState)]) -> Beacon {
        let count = candidates.iter().filter(|(_, s)| self.available(s)).count();
        self.metrics.beacon_recomputed();
        Beacon::from_count(count)
    }

    async fn recompute_beacon(
        &self,
        ttl: Duration,
        lock: BeaconLock,
    ) -> Result<Beacon, AvailabilityError> {
        let beacon = self.beacon_of(&self.candidate_states("count_available").await?);
        self.beacon.remember(beacon);
        let now = self.clock.now();
        self.side_effect("store_beacon", |m| m.store_beacon(beacon, now, ttl, &lock))
            .await;
        Ok(beacon)
    }

    /// The lock's holder is slow or died: this instance's last beacon if it is recent enough,
    /// else one computation per instance from live data (not stored: the lock is not ours).
    async fn beacon_while_busy(&self, ttl: Duration) -> Result<Beacon, AvailabilityError> {
        let recent = ttl + BEACON_LOCK_TTL;
        self.local_beacon(recent, || async {
            Ok(self.beacon_of(&self.candidate_states("count_available").await?))
        })
        .await
    }

    /// The mirror is not trusted: the beacon from Postgres, reused for the TTL.
    async fn beacon_from_postgres(&self, ttl: Duration) -> Result<Beacon, AvailabilityError> {
        self.local_beacon(ttl, || async {
            Ok(self.beacon_of(&self.candidates_in_postgres().await?))
        })
        .await
    }

    /// The last beacon if younger than `max_age`; else `compute`, by one caller at a time (the
    /// others find its answer when they get the lock).
    async fn local_beacon<F>(
        &self,
        max_age: Duration,
        compute: impl FnOnce() -> F,
    ) -> Result<Beacon, AvailabilityError>
    where
        F: Future<Output = Result<Beacon, AvailabilityError>>,
    {
        if let Some(beacon) = self.beacon.younger_than(max_age) {
            return Ok(beacon);
        }
        let _computing = self.beacon.computing.lock().await;
        if let Some(beacon) = self.beacon.younger_than(max_age) {
            return Ok(beacon);
        }
        let beacon = compute().await?;
        self.beacon.remember(beacon);
        Ok(beacon)
    }

    /// Drops the shared snapshot and the local copy (config change).
    pub async fn bust_beacon(&self) {
        self.beacon.forget();
        self.side_effect("bust_beacon", |m| m.bust_beacon()).await;
    }

    /// The dashboard's online count: `SCARD mitras:online`, Postgres when not trusted.
    pub async fn dashboard_online_count(&self) -> Result<u64, AvailabilityError> {
        self.read_or_fallback(
            "dashboard_online_count",
            |m| m.online_count(),
            || async { Ok(self.truth.count_online().await?) },
        )
        .await
    }

    // ---- operator settings --------------------------------------------------------------

    /// Validates and saves a settings change against the values stored now (two operators
    /// changing different keys at once both keep theirs; each change is audited), then makes
    /// every instance see it: this one at once, the others through `config:invalidate` (and
    /// their periodic reload if it is lost).
    pub async fn update_settings(
        &self,
        changes: Vec<(halo_domain::SettingKey, i64)>,
        updated_by: uuid::Uuid,
    ) -> Result<halo_domain::AppSettings, AvailabilityError> {
        let next = self.truth.change_settings(&changes, updated_by).await??;
        self.settings.set(next);
        self.bust_beacon().await;
        self.side_effect("publish_config_invalidate", |m| {
            m.publish_config_invalidate()
        })
        .await;
        Ok(next)
    }

    /// The settings as stored now (the control centre's view, not this instance's cache).
    pub async fn stored_settings(&self) -> Result<halo_domain::AppSettings, AvailabilityError> {
        Ok(self.truth.load_settings().await?)
    }

    /// The newest `limit` settings changes, newest first.
    pub async fn settings_history(
        &self,
        limit: u32,
    ) -> Result<Vec<halo_ports::SettingChange>, AvailabilityError> {
        Ok(self.truth.settings_history(limit).await?)
    }

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
        Err(SeedError::KeptRacing)
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

/// Why a seed or a drift report could not run: both need both stores.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("valkey unavailable for the seed")]
    Mirror(#[source] MirrorError),
    #[error("postgres unavailable for the seed")]
    Truth(#[source] halo_ports::TruthError),
    #[error("the staged seed vanished {SEED_ATTEMPTS} times before its swap")]
    KeptRacing,
}
