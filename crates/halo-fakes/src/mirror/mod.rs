//! `InMemoryMirror`: the mirror port over a map under one lock, with the Valkey adapter's
//! documented semantics (each method is atomic, as each Lua script is) and the switches a test
//! needs: an outage, a flush, a restart with or without old data, and per-method call counts.
//!
//! TTLs (the beacon snapshot and its lock, leases, rate windows) are measured on the `Clock`
//! given to `with_clock` (the wall clock by default): a test with a `ManualClock` expires them
//! by moving it. Times are kept to the microsecond, as the adapter stores them.

mod coordination;
mod hot_path;
mod maintenance;

use halo_domain::{Beacon, IdleRank, MitraId, MitraState};
use halo_ports::{CapacityCount, Clock, MirrorError, SystemClock};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use time::OffsetDateTime;

/// Everything the adapter keeps in Valkey, by key.
#[derive(Debug, Clone, Default)]
struct State {
    /// `mirror:generation`: written last by every applied seed.
    seeded: bool,
    online: BTreeSet<MitraId>,
    deactivated: BTreeSet<MitraId>,
    heartbeat: BTreeMap<MitraId, OffsetDateTime>,
    capacity: BTreeMap<MitraId, u32>,
    capacity_order: BTreeMap<MitraId, u64>,
    /// `mitras:idle_order`: the online mitras by idle rank (SPEC §12.5).
    idle: BTreeMap<MitraId, IdleRank>,
    /// `mirror:idle_rank`: the rank of each mitra's newest count, member of the order or not.
    idle_rank: BTreeMap<MitraId, IdleRank>,
    /// `mirror:writes` and `mirror:journal` (mitra -> token of the last write touching it).
    write_token: u64,
    journal: BTreeMap<MitraId, u64>,
    /// When the truth of the last applied seed was read.
    seeded_at: Option<OffsetDateTime>,
    snapshot: Option<Expiring<Beacon>>,
    snapshot_lock: Option<Expiring<String>>,
    leases: BTreeMap<String, Expiring<()>>,
    rate_windows: BTreeMap<String, Expiring<u64>>,
}

/// A value with a TTL (`until` = `None`: the TTL overflowed, it never expires).
#[derive(Debug, Clone)]
struct Expiring<T> {
    value: T,
    until: Option<OffsetDateTime>,
}

impl<T> Expiring<T> {
    fn new(value: T, now: OffsetDateTime, ttl: Duration) -> Self {
        // The adapter sends TTLs in whole milliseconds, at least one.
        let ttl = ttl.max(Duration::from_millis(1));
        let until = time::Duration::try_from(ttl)
            .ok()
            .and_then(|ttl| now.checked_add(ttl));
        Self { value, until }
    }

    fn live(&self, now: OffsetDateTime) -> bool {
        self.until.is_none_or(|until| now < until)
    }
}

/// Drops `slot`'s value once its TTL has passed, and answers the live one.
fn live<T>(slot: &mut Option<Expiring<T>>, now: OffsetDateTime) -> Option<&mut Expiring<T>> {
    if slot.as_ref().is_some_and(|held| !held.live(now)) {
        *slot = None;
    }
    slot.as_mut()
}

/// Drops `map[key]` once its TTL has passed.
fn forget_expired<T>(map: &mut BTreeMap<String, Expiring<T>>, key: &str, now: OffsetDateTime) {
    if map.get(key).is_some_and(|held| !held.live(now)) {
        map.remove(key);
    }
}

impl State {
    /// `journal.lua`'s `touch`: one new write token for the write, recorded for every id.
    fn touch(&mut self, ids: impl IntoIterator<Item = MitraId>) {
        self.write_token += 1;
        for id in ids {
            self.journal.insert(id, self.write_token);
        }
    }

    /// The availability reads answer nothing without the generation marker.
    fn ensure_seeded(&self) -> Result<(), MirrorError> {
        if self.seeded {
            Ok(())
        } else {
            Err(MirrorError::Unseeded)
        }
    }

    /// Writes the count and its idle rank if its order number is newer than the one held
    /// (`set_capacity.lua`); true when written.
    fn write_count_in_order(&mut self, id: MitraId, count: CapacityCount) -> bool {
        if self
            .capacity_order
            .get(&id)
            .is_some_and(|held| count.seq <= *held)
        {
            return false;
        }
        self.capacity.insert(id, count.open);
        self.capacity_order.insert(id, count.seq);
        self.idle_rank.insert(id, count.idle_rank);
        true
    }

    /// Everything the availability rules need about one mitra, as the adapter reads it.
    fn state_of(&self, id: MitraId) -> MitraState {
        MitraState {
            online: self.online.contains(&id),
            active: !self.deactivated.contains(&id),
            last_heartbeat: self.heartbeat.get(&id).copied(),
            open_sessions: self.capacity.get(&id).copied().unwrap_or(0),
        }
    }
}

/// A time as the adapter stores it: UTC, microseconds.
fn stored(at: OffsetDateTime) -> OffsetDateTime {
    let at = at.to_offset(time::UtcOffset::UTC);
    at.replace_nanosecond(at.nanosecond() / 1_000 * 1_000)
        .unwrap_or(at)
}

/// The mirror port in memory. Clones share the same store (like two handles on one Valkey).
#[derive(Clone)]
pub struct InMemoryMirror {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// What `save` kept: the data a `restart_with_saved_data` comes back with.
    saved: Mutex<Option<State>>,
    clock: Arc<dyn Clock>,
    down: AtomicBool,
    /// Set by a restart: the next call finds its connection dropped (fails, counted).
    connection_lost: AtomicBool,
    drops: AtomicU64,
    lock_owners: AtomicU64,
    invalidations: AtomicU64,
    calls: Mutex<BTreeMap<&'static str, u64>>,
}

impl Default for InMemoryMirror {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryMirror {
    /// An empty, unseeded mirror on the wall clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty, unseeded mirror whose TTLs run on `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::default(),
                saved: Mutex::default(),
                clock,
                down: AtomicBool::new(false),
                connection_lost: AtomicBool::new(false),
                drops: AtomicU64::new(0),
                lock_owners: AtomicU64::new(0),
                invalidations: AtomicU64::new(0),
                calls: Mutex::default(),
            }),
        }
    }

    /// From now on every call answers `MirrorError::Unavailable` (Valkey down or hung); the
    /// data stays.
    pub fn go_down(&self) {
        self.inner.down.store(true, Ordering::SeqCst);
    }

    /// Answers again, with the data it had.
    pub fn come_back(&self) {
        self.inner.down.store(false, Ordering::SeqCst);
    }

    /// `FLUSHALL`: every key gone, the generation marker and the write token with them.
    pub fn flush(&self) {
        *self.state() = State::default();
    }

    /// `SAVE`: what a later `restart_with_saved_data` comes back with.
    pub fn save(&self) {
        let snapshot = self.state().clone();
        *lock(&self.inner.saved) = Some(snapshot);
    }

    /// A restart without a dump: empty, and the next call finds its connection dropped.
    pub fn restart_empty(&self) {
        self.flush();
        self.inner.connection_lost.store(true, Ordering::SeqCst);
    }

    /// A restart that loads the last `save` (an RDB/AOF restart, a promoted replica): the old
    /// data comes back, generation marker included, and the next call finds its connection
    /// dropped.
    pub fn restart_with_saved_data(&self) {
        let saved = lock(&self.inner.saved).clone().unwrap_or_default();
        *self.state() = saved;
        self.inner.connection_lost.store(true, Ordering::SeqCst);
    }

    /// Writes (`Some`) or deletes (`None`) a mitra's heartbeat key behind the port's back: an
    /// old value, a key lost to eviction.
    pub fn put_heartbeat(&self, id: MitraId, at: Option<OffsetDateTime>) {
        let mut s = self.state();
        match at {
            Some(at) => s.heartbeat.insert(id, stored(at)),
            None => s.heartbeat.remove(&id),
        };
    }

    /// Hands the beacon's recompute lock to `owner`, without a TTL.
    pub fn put_beacon_lock(&self, owner: &str) {
        self.state().snapshot_lock = Some(Expiring {
            value: owner.to_owned(),
            until: None,
        });
    }

    /// Calls of the port method `op` (e.g. `"heartbeat"`; `mitra_state` counts as
    /// `mitra_states`, `RateCounter::hit` as `rate_limit`), answered or refused.
    pub fn calls(&self, op: &str) -> u64 {
        lock(&self.inner.calls).get(op).copied().unwrap_or(0)
    }

    /// Calls of every port method together.
    pub fn total_calls(&self) -> u64 {
        lock(&self.inner.calls).values().sum()
    }

    /// How many `publish_config_invalidate` calls went through.
    pub fn invalidations_published(&self) -> u64 {
        self.inner.invalidations.load(Ordering::SeqCst)
    }

    /// Counts a call of `op` and answers as Valkey would on the connection: refused while
    /// down, dropped once after a restart; otherwise the store, locked for the whole call.
    fn enter(&self, op: &'static str) -> Result<MutexGuard<'_, State>, MirrorError> {
        self.count(op);
        if self.inner.down.load(Ordering::SeqCst) {
            return Err(MirrorError::Unavailable(
                format!("in-memory mirror is down ({op})").into(),
            ));
        }
        if self.inner.connection_lost.swap(false, Ordering::SeqCst) {
            self.inner.drops.fetch_add(1, Ordering::SeqCst);
            return Err(MirrorError::Unavailable(
                format!("in-memory mirror restarted: connection dropped ({op})").into(),
            ));
        }
        Ok(self.state())
    }

    /// Counts a call that the adapter answers without a round trip (nothing to send).
    fn count(&self, op: &'static str) {
        *lock(&self.inner.calls).entry(op).or_default() += 1;
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }
}

/// A test that panicked while holding the lock leaves the data as it was: keep using it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
