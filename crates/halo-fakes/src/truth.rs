//! `InMemoryTruth`: the Postgres ports (`AvailabilityTruth`, `SettingsStore`, `MitraDirectory`)
//! over a map, with the same documented semantics, plus the switches a test needs: `go_down` /
//! `come_back` (every call answers `TruthError::Unavailable`) and a call counter.

use async_trait::async_trait;
use halo_domain::{
    AppSettings, IdleRank, MitraId, MitraState, MitraTruth, SettingError, SettingKey, TruthSnapshot,
};
use halo_ports::{
    AvailabilityTruth, CapacityCount, Clock, MitraDirectory, MitraFlags, MitraRow, OfflineSweep,
    OnlineReason, SettingChange, SettingsStore, TruthError,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use time::OffsetDateTime;

#[derive(Debug, Clone)]
struct Mitra {
    row: MitraRow,
    last_heartbeat: Option<OffsetDateTime>,
    open_sessions: u32,
    capacity_seq: u64,
    /// `idle_rank` (SPEC §12.5): the creation instant until the mitra comes online.
    idle_rank: IdleRank,
    /// The latest start or end of a session of this mitra (`chat_sessions`), as the chat
    /// store's transitions would have left it.
    last_activity: Option<OffsetDateTime>,
    /// Insertion order: "oldest first" among mitras created at the same instant of a clock
    /// that did not move (Postgres' `created_at` differs from one insert to the next).
    created: u64,
}

impl Mitra {
    fn new(row: MitraRow, created: u64) -> Self {
        Self {
            idle_rank: IdleRank::new(row.created_at, 0.0),
            row,
            last_heartbeat: None,
            open_sessions: 0,
            capacity_seq: 0,
            last_activity: None,
            created,
        }
    }

    fn state(&self) -> MitraState {
        MitraState {
            online: self.row.online,
            active: self.row.active,
            last_heartbeat: self.last_heartbeat,
            open_sessions: self.open_sessions,
        }
    }

    fn flags(&self) -> MitraFlags {
        MitraFlags {
            active: self.row.active,
            online: self.row.online,
        }
    }
}

#[derive(Debug, Default)]
struct Tables {
    mitras: BTreeMap<MitraId, Mitra>,
    /// Mitras created so far (the next one's `created`).
    created: u64,
    /// `mitra_online_logs`: one row per real transition.
    online_log: Vec<(MitraId, bool, OnlineReason)>,
    settings: AppSettings,
    history: Vec<SettingChange>,
}

/// The truth in memory. Time comes from the clock it is given (a `ManualClock` in tests).
pub struct InMemoryTruth {
    tables: Mutex<Tables>,
    clock: Arc<dyn Clock>,
    down: AtomicBool,
    calls: AtomicU64,
}

impl InMemoryTruth {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            tables: Mutex::default(),
            clock,
            down: AtomicBool::new(false),
            calls: AtomicU64::new(0),
        }
    }

    /// Adds a mitra (offline, active, no heartbeat, no sessions) without counting a call.
    pub fn add_mitra(&self) -> MitraId {
        let id = MitraId::new(uuid::Uuid::new_v4());
        let now = self.clock.now();
        let row = MitraRow {
            id,
            phone: format!("+62{}", id.uuid().as_u128() % 10_000_000_000),
            display_name: "mitra".to_owned(),
            active: true,
            online: false,
            created_at: now,
        };
        self.lock().insert(row);
        id
    }

    /// Sets the open-session count as the chat store's transitions would (no call counted).
    pub fn set_open_sessions(&self, id: MitraId, open: u32) {
        if let Some(mitra) = self.lock().mitras.get_mut(&id) {
            mitra.open_sessions = open;
        }
    }

    /// Records that a session of the mitra started or ended at `at`, as the chat store's
    /// transitions would (no call counted); the next recount moves its idle rank.
    pub fn set_session_activity(&self, id: MitraId, at: OffsetDateTime) {
        if let Some(mitra) = self.lock().mitras.get_mut(&id) {
            mitra.last_activity = Some(mitra.last_activity.map_or(at, |held| held.max(at)));
        }
    }

    /// The mitra's idle rank as stored (no call counted).
    pub fn idle_rank_of(&self, id: MitraId) -> Option<IdleRank> {
        self.lock().mitras.get(&id).map(|m| m.idle_rank)
    }

    /// Sets `last_heartbeat_at` directly (no call counted): a ping Postgres holds.
    pub fn set_heartbeat(&self, id: MitraId, at: Option<OffsetDateTime>) {
        if let Some(mitra) = self.lock().mitras.get_mut(&id) {
            mitra.last_heartbeat = at;
        }
    }

    /// The mitra as stored (no call counted).
    pub fn state_of(&self, id: MitraId) -> Option<MitraState> {
        self.lock().mitras.get(&id).map(Mitra::state)
    }

    /// The audit rows written so far: (mitra, online, reason).
    pub fn online_log(&self) -> Vec<(MitraId, bool, OnlineReason)> {
        self.lock().online_log.clone()
    }

    /// From now on every call fails as `Unavailable` (Postgres does not answer).
    pub fn go_down(&self) {
        self.down.store(true, Ordering::SeqCst);
    }

    pub fn come_back(&self) {
        self.down.store(false, Ordering::SeqCst);
    }

    /// Calls made through the ports so far (the Postgres queries of a budget).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One port call: counted, refused while down.
    fn call(&self) -> Result<MutexGuard<'_, Tables>, TruthError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(TruthError::Unavailable("postgres is down (fake)".into()));
        }
        Ok(self.lock())
    }
}

impl Tables {
    fn insert(&mut self, row: MitraRow) {
        self.created += 1;
        self.mitras.insert(row.id, Mitra::new(row, self.created));
    }
}

/// A random tie-break in `[0, 1)`, as Postgres' `random()` draws it.
fn tie_break() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() >> 75; // 53 random bits
    bits as f64 / (1u64 << 53) as f64
}

/// The ids once each, in their first order.
fn distinct(ids: &[MitraId]) -> Vec<MitraId> {
    let mut seen = std::collections::BTreeSet::new();
    ids.iter().copied().filter(|id| seen.insert(*id)).collect()
}

fn found(tables: &mut Tables, id: MitraId) -> Result<&mut Mitra, TruthError> {
    tables.mitras.get_mut(&id).ok_or(TruthError::MitraNotFound)
}

#[async_trait]
impl AvailabilityTruth for InMemoryTruth {
    async fn ping(&self) -> Result<(), TruthError> {
        self.call().map(drop)
    }

    async fn set_online(
        &self,
        id: MitraId,
        online: bool,
        reason: OnlineReason,
    ) -> Result<bool, TruthError> {
        let now = self.clock.now();
        let mut tables = self.call()?;
        let mitra = found(&mut tables, id)?;
        let changed = mitra.row.online != online;
        mitra.row.online = online;
        if online {
            mitra.last_heartbeat = Some(now);
            if changed {
                mitra.idle_rank = IdleRank::new(now, tie_break());
            }
        }
        if changed {
            tables.online_log.push((id, online, reason));
        }
        Ok(changed)
    }

    async fn set_offline_many(
        &self,
        ids: &[MitraId],
        reason: OnlineReason,
        stale_before: OffsetDateTime,
    ) -> Result<OfflineSweep, TruthError> {
        let mut tables = self.call()?;
        let mut sweep = OfflineSweep::default();
        for id in distinct(ids) {
            let Some(mitra) = tables.mitras.get_mut(&id) else {
                continue;
            };
            match (mitra.row.online, mitra.last_heartbeat) {
                (false, _) => sweep.already_offline.push(id),
                (true, Some(at)) if at >= stale_before => sweep.fresh.push((id, at)),
                (true, _) => {
                    mitra.row.online = false;
                    sweep.changed.push(id);
                }
            }
        }
        for &id in &sweep.changed {
            tables.online_log.push((id, false, reason));
        }
        Ok(sweep)
    }

    async fn set_active(&self, id: MitraId, active: bool) -> Result<(), TruthError> {
        let mut tables = self.call()?;
        found(&mut tables, id)?.row.active = active;
        Ok(())
    }

    async fn heartbeat_fallback(
        &self,
        id: MitraId,
        at: OffsetDateTime,
    ) -> Result<Option<MitraFlags>, TruthError> {
        let mut tables = self.call()?;
        let Some(mitra) = tables.mitras.get_mut(&id) else {
            return Ok(None);
        };
        // As the Postgres statement: a ping less than a second newer than the stored one is
        // not written (pings are seconds apart; while Valkey is down every ping comes here),
        // and `online` says whether the ping counts: recorded now, or one was recorded less
        // than a second before it (so a deactivated mitra's ping does not count, even online).
        let a_second_before = at - time::Duration::SECOND;
        let recent = mitra
            .last_heartbeat
            .is_some_and(|stored| stored >= a_second_before);
        let recorded = mitra.row.active && mitra.row.online && !recent;
        if recorded {
            mitra.last_heartbeat = Some(at);
        }
        Ok(Some(MitraFlags {
            active: mitra.row.active,
            online: recorded || (mitra.row.online && recent),
        }))
    }

    async fn mitra_flags(&self, id: MitraId) -> Result<Option<MitraFlags>, TruthError> {
        Ok(self.call()?.mitras.get(&id).map(Mitra::flags))
    }

    async fn count_open_sessions(&self, id: MitraId) -> Result<CapacityCount, TruthError> {
        let mut tables = self.call()?;
        // Each recount of a mitra takes the next number in its own order (`capacity_seq`).
        let mitra = found(&mut tables, id)?;
        mitra.capacity_seq += 1;
        // The rank moves to the latest session start or end when that is a later millisecond.
        if let Some(at) = mitra.last_activity {
            if IdleRank::new(at, 0.0).since() > mitra.idle_rank.since() {
                mitra.idle_rank = IdleRank::new(at, tie_break());
            }
        }
        Ok(CapacityCount {
            open: mitra.open_sessions,
            seq: mitra.capacity_seq,
            idle_rank: mitra.idle_rank,
        })
    }

    async fn mitra_states(
        &self,
        ids: &[MitraId],
    ) -> Result<Vec<(MitraId, MitraState)>, TruthError> {
        let tables = self.call()?;
        // `= ANY($1)`: each known mitra once, however often it is asked for.
        Ok(distinct(ids)
            .into_iter()
            .filter_map(|id| tables.mitras.get(&id).map(|m| (id, m.state())))
            .collect())
    }

    async fn candidate_states(&self) -> Result<Vec<(MitraId, MitraState)>, TruthError> {
        let tables = self.call()?;
        Ok(tables
            .mitras
            .iter()
            .filter(|(_, m)| m.row.online && m.row.active)
            .map(|(id, m)| (*id, m.state()))
            .collect())
    }

    async fn offer_candidates(
        &self,
        limit: usize,
        exclude: &BTreeSet<MitraId>,
        fresh_since: OffsetDateTime,
        max_customers: u32,
    ) -> Result<Vec<(MitraId, MitraState)>, TruthError> {
        let tables = self.call()?;
        let mut passing: Vec<&Mitra> = tables
            .mitras
            .values()
            .filter(|m| m.row.online && m.row.active && !exclude.contains(&m.row.id))
            .filter(|m| m.last_heartbeat.is_some_and(|at| at >= fresh_since))
            .filter(|m| m.open_sessions < max_customers)
            .collect();
        passing.sort_by_key(|m| (m.idle_rank, m.row.id));
        Ok(passing
            .into_iter()
            .take(limit)
            .map(|m| (m.row.id, m.state()))
            .collect())
    }

    async fn count_online(&self) -> Result<u64, TruthError> {
        let tables = self.call()?;
        Ok(tables.mitras.values().filter(|m| m.row.online).count() as u64)
    }

    async fn mirror_truth(&self) -> Result<TruthSnapshot, TruthError> {
        let read_at = self.clock.now();
        let tables = self.call()?;
        let mitras = tables
            .mitras
            .values()
            .map(|m| MitraTruth {
                id: m.row.id,
                active: m.row.active,
                online: m.row.online,
                open_sessions: m.open_sessions,
                last_heartbeat: m.last_heartbeat,
                capacity_seq: m.capacity_seq,
                idle_rank: m.idle_rank,
            })
            .collect();
        Ok(TruthSnapshot { mitras, read_at })
    }

    async fn record_heartbeats(
        &self,
        beats: &[(MitraId, OffsetDateTime)],
    ) -> Result<u64, TruthError> {
        let mut tables = self.call()?;
        let mut updated = 0;
        for (id, at) in beats {
            // Only rows moved forward count (and move): an older or equal ping changes nothing.
            if let Some(mitra) = tables.mitras.get_mut(id) {
                if mitra.last_heartbeat.is_none_or(|stored| stored < *at) {
                    mitra.last_heartbeat = Some(*at);
                    updated += 1;
                }
            }
        }
        Ok(updated)
    }
}

#[async_trait]
impl SettingsStore for InMemoryTruth {
    async fn load_settings(&self) -> Result<AppSettings, TruthError> {
        Ok(self.call()?.settings)
    }

    async fn change_settings(
        &self,
        changes: &[(SettingKey, i64)],
        changed_by: uuid::Uuid,
    ) -> Result<Result<AppSettings, SettingError>, TruthError> {
        let changed_at = self.clock.now();
        let mut tables = self.call()?;
        let current = tables.settings;
        let next = match current.with_changes(changes.iter().copied()) {
            Ok(next) => next,
            Err(invalid) => return Ok(Err(invalid)),
        };
        for (key, new) in next.pairs() {
            let old = current.get(key);
            if old != new {
                tables.history.push(SettingChange {
                    key: key.as_str().to_owned(),
                    old: i64::from(old),
                    new: i64::from(new),
                    changed_by: Some(changed_by),
                    changed_at,
                });
            }
        }
        tables.settings = next;
        Ok(Ok(next))
    }

    async fn settings_history(&self, limit: u32) -> Result<Vec<SettingChange>, TruthError> {
        let tables = self.call()?;
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        Ok(tables.history.iter().rev().take(limit).cloned().collect())
    }
}

#[async_trait]
impl MitraDirectory for InMemoryTruth {
    async fn create_mitra(&self, phone: &str, display_name: &str) -> Result<MitraRow, TruthError> {
        let created_at = self.clock.now();
        let mut tables = self.call()?;
        if tables.mitras.values().any(|m| m.row.phone == phone) {
            return Err(TruthError::Conflict(format!(
                "a mitra with phone {phone} exists"
            )));
        }
        let row = MitraRow {
            id: MitraId::new(uuid::Uuid::new_v4()),
            phone: phone.to_owned(),
            display_name: display_name.to_owned(),
            active: true,
            online: false,
            created_at,
        };
        tables.insert(row.clone());
        Ok(row)
    }

    async fn list_mitras(
        &self,
        offset: u32,
        limit: u32,
    ) -> Result<(Vec<MitraRow>, u64), TruthError> {
        let tables = self.call()?;
        let mut mitras: Vec<&Mitra> = tables.mitras.values().collect();
        mitras.sort_by_key(|m| (m.row.created_at, m.created));
        let total = mitras.len() as u64;
        let page = mitras
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(|m| m.row.clone())
            .collect();
        Ok((page, total))
    }

    async fn mitra_row(&self, id: MitraId) -> Result<Option<MitraRow>, TruthError> {
        Ok(self.call()?.mitras.get(&id).map(|m| m.row.clone()))
    }
}
