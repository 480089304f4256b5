//! `AvailabilityMirror` over self-reconnecting multiplexed connections (see `Connections`).

use crate::connection::{Conn, Connections};
use crate::keys::Keys;
use crate::replies;
use crate::scripts;
use async_trait::async_trait;
use halo_domain::{Beacon, MirrorImage, MitraId, MitraState};
use halo_metrics::Metrics;
use halo_ports::{
    AvailabilityMirror, BeaconClaim, BeaconLock, CapacityCount, HeartbeatOutcome, MirrorError,
    SeedWrite,
};
use redis::{Cmd, FromRedisValue, RedisError, ScriptInvocation, Value};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use tracing::Instrument;

/// Members staged per SADD, so one huge command never blocks the server for long.
const STAGING_CHUNK: usize = 5_000;
const SCAN_COUNT: usize = 1_000;

#[derive(Clone)]
pub struct ValkeyMirror {
    conn: Connections,
    keys: Keys,
    timeout: Duration,
    metrics: Metrics,
    /// Set once the server refuses `SORT … GET` (an ACL limited to the key prefix, or a
    /// `-@dangerous` login, refuses it): the bulk reads then use the Lua scripts for good.
    sort_refused: Arc<AtomicBool>,
    /// The `run_id` of the primary that answered the last health probe (see `is_seeded`), and
    /// whether the server refuses `INFO` (then the probe does without it).
    primary: Arc<Mutex<Option<String>>>,
    info_refused: Arc<AtomicBool>,
}

/// The JSON of `availability:snapshot` (contract shape).
#[derive(Serialize, Deserialize)]
struct SnapshotJson {
    available: bool,
    count: u32,
    computed_at: String,
}

/// The server answered, and the answer is a refusal of the command (ACL, unknown or disabled
/// command, read-only replica, aborted transaction) rather than an outage or a wrong-typed key.
fn refused_by_server(error: &RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    error.code() != Some("WRONGTYPE")
        && matches!(
            error.kind(),
            ErrorKind::Server(
                ServerErrorKind::ResponseError
                    | ServerErrorKind::NoPerm
                    | ServerErrorKind::ExecAbort
                    | ServerErrorKind::ReadOnly
            ) | ErrorKind::Extension
        )
}

/// The login may not run the command at all (ACL, renamed or unknown command) — not a
/// transient refusal (read-only replica, aborted transaction), which must not be remembered.
fn refuses_command(error: &RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    matches!(error.kind(), ErrorKind::Server(ServerErrorKind::NoPerm))
        || error.to_string().contains("unknown command")
}

/// The connection under the request went away (the peer closed or reset it): the manager
/// reconnects in the background. A refused connection (Valkey is down) or a timeout (hung) is
/// an outage instead, and the caller falls back.
fn dropped_connection(error: &RedisError) -> bool {
    error.is_connection_dropped() && !error.is_connection_refusal()
}

/// A cluster node answered that the slot is not (or no longer) its own, or that the cluster
/// is failing over: the primary changed under the mirror, like a dropped connection.
fn redirected(error: &RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    matches!(
        error.kind(),
        ErrorKind::Server(
            ServerErrorKind::Moved
                | ServerErrorKind::Ask
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
        )
    )
}

/// A Valkey call in flight: counted while it waits, timed when it ends — also when the
/// request's future is dropped (the client went away), which code after the await would miss.
struct InFlight<'a> {
    metrics: &'a Metrics,
    op: &'static str,
    started: std::time::Instant,
}

impl<'a> InFlight<'a> {
    fn new(metrics: &'a Metrics, op: &'static str) -> Self {
        metrics.valkey_in_flight(true);
        Self {
            metrics,
            op,
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.metrics.valkey_in_flight(false);
        self.metrics
            .valkey_call_took(self.op, self.started.elapsed());
    }
}

/// A command, pipeline or script call that can be sent (again) on a connection.
trait Request: Sync {
    fn send<'a, T: FromRedisValue + Send + 'static>(
        &'a self,
        conn: &'a mut Conn,
    ) -> impl Future<Output = Result<T, RedisError>> + Send + 'a;
}

impl Request for Cmd {
    fn send<'a, T: FromRedisValue + Send + 'static>(
        &'a self,
        conn: &'a mut Conn,
    ) -> impl Future<Output = Result<T, RedisError>> + Send + 'a {
        self.query_async(conn)
    }
}

impl Request for redis::Pipeline {
    fn send<'a, T: FromRedisValue + Send + 'static>(
        &'a self,
        conn: &'a mut Conn,
    ) -> impl Future<Output = Result<T, RedisError>> + Send + 'a {
        self.query_async(conn)
    }
}

impl Request for ScriptInvocation<'_> {
    fn send<'a, T: FromRedisValue + Send + 'static>(
        &'a self,
        conn: &'a mut Conn,
    ) -> impl Future<Output = Result<T, RedisError>> + Send + 'a {
        self.invoke_async(conn)
    }
}

/// A read that found the generation marker missing answers nothing about availability.
fn ensure_seeded(seeded: bool) -> Result<(), MirrorError> {
    if seeded {
        Ok(())
    } else {
        Err(MirrorError::Unseeded)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn classify(error: RedisError) -> MirrorError {
    let corrupt = matches!(
        error.kind(),
        redis::ErrorKind::UnexpectedReturnType | redis::ErrorKind::Parse
    ) || error.code() == Some("WRONGTYPE");
    if corrupt {
        MirrorError::Corrupt(error.to_string())
    } else {
        MirrorError::Unavailable(Box::new(error))
    }
}

/// RFC 3339 in UTC with exactly six fractional digits (`2026-12-01T10:00:00.000000Z`):
/// microseconds are the precision Postgres keeps, so the heartbeat mirror copies a value both
/// stores agree on, and the fixed width makes string order time order, which the scripts rely
/// on (`journal.lua`). Years outside 0..=9999 are clamped (no heartbeat is that far off).
pub(crate) fn format_time(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        at.year().clamp(0, 9999),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}

impl ValkeyMirror {
    pub fn new(conn: Connections, keys: Keys, timeout: Duration, metrics: Metrics) -> Self {
        Self {
            conn,
            keys,
            timeout,
            metrics,
            sort_refused: Arc::new(AtomicBool::new(false)),
            primary: Arc::new(Mutex::new(None)),
            info_refused: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Gives the calling thread its own connection (see `Connections`): call it once on each
    /// actix worker thread, where the hot paths run.
    pub fn bind_connection_to_current_thread(&self) {
        self.conn.bind_to_current_thread();
    }

    /// The SORT patterns while the server accepts them (see `sort_refused`).
    fn sort_patterns(&self) -> Option<(String, String)> {
        if self.sort_refused.load(Ordering::Relaxed) {
            return None;
        }
        self.keys.sort_patterns()
    }

    /// Runs a `SORT … GET` read; when the server refuses the command itself (not an outage),
    /// remembers it and answers `None` so the caller runs the Lua script instead.
    async fn sorted_read<T: FromRedisValue + Send + 'static>(
        &self,
        op: &'static str,
        request: &impl Request,
    ) -> Result<Option<T>, MirrorError> {
        match self.call_raw(op, request).await? {
            Ok(value) => Ok(Some(value)),
            Err(error) if refused_by_server(&error) => {
                if !self.sort_refused.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %error,
                        "valkey refuses SORT … GET (ACL?); bulk reads use the Lua scripts from now on"
                    );
                }
                Ok(None)
            }
            Err(error) => Err(classify(error)),
        }
    }

    /// One round trip, atomic, no Lua: `SORT … BY nosort GET` reads every member's per-mitra
    /// keys inside the server (native code); `SINTER` names the members that are also
    /// deactivated (normally none), which the reply then leaves out: the same set as `SDIFF
    /// online deactivated`. `None` when the server refuses SORT (see `sorted_read`).
    async fn sorted_candidates(
        &self,
        heartbeat: String,
        capacity: String,
    ) -> Result<Option<(Value, HashSet<MitraId>)>, MirrorError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .exists(self.keys.generation())
            .cmd("SORT")
            .arg(self.keys.online())
            .arg("BY")
            .arg("nosort")
            .arg("GET")
            .arg("#")
            .arg("GET")
            .arg(heartbeat)
            .arg("GET")
            .arg(capacity)
            .cmd("SINTER")
            .arg(self.keys.online())
            .arg(self.keys.deactivated());
        let Some((seeded, flat, excluded)) = self
            .sorted_read::<(bool, Value, Value)>("candidate_states", &pipe)
            .await?
        else {
            return Ok(None);
        };
        ensure_seeded(seeded)?;
        let excluded = replies::array(excluded)
            .map_err(MirrorError::Corrupt)?
            .iter()
            .filter_map(replies::mitra_id)
            .collect();
        Ok(Some((flat, excluded)))
    }

    /// Sends one request under the deadline and counts it.
    async fn call<T: FromRedisValue + Send + 'static>(
        &self,
        op: &'static str,
        request: &impl Request,
    ) -> Result<T, MirrorError> {
        self.call_raw(op, request).await?.map_err(classify)
    }

    /// `call` that hands back the server's error unclassified (the deadline is still an outage).
    ///
    /// A request that finds its connection dropped (Valkey restarted, or failed over) is
    /// counted as a drop (`Connections::note_drop`: other threads renew their connections) and
    /// is not sent again: the server may have come back with older data, so its answer could
    /// not be trusted, and a write may already have landed. The core stops using the mirror
    /// until a seed has rebuilt it.
    async fn call_raw<T: FromRedisValue + Send + 'static>(
        &self,
        op: &'static str,
        request: &impl Request,
    ) -> Result<Result<T, RedisError>, MirrorError> {
        let started = tokio::time::Instant::now();
        let mut conn = self.conn.current();
        self.metrics.valkey_round_trip(op);
        let in_flight = InFlight::new(&self.metrics, op);
        let reply = tokio::time::timeout_at(started + self.timeout, request.send(&mut conn))
            .instrument(tracing::debug_span!("valkey", op))
            .await;
        drop(in_flight);
        let reply = reply.map_err(|_| {
            MirrorError::Unavailable(
                format!("valkey {op} timed out after {:?}", self.timeout).into(),
            )
        })?;
        match reply {
            Err(error) if dropped_connection(&error) || redirected(&error) => {
                self.conn.note_drop();
                Err(MirrorError::Unavailable(Box::new(error)))
            }
            reply => Ok(reply),
        }
    }

    /// A script that writes mirror data: its first two keys are the write token and the
    /// journal (`journal.lua`).
    fn writing(&self, script: &'static redis::Script) -> ScriptInvocation<'static> {
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.keys.write_token())
            .key(self.keys.journal());
        invocation
    }

    async fn scan_keys(&self, name: &str) -> Result<Vec<String>, MirrorError> {
        let pattern = self.keys.scan_pattern(name);
        let mut cursor: u64 = 0;
        let mut found = Vec::new();
        loop {
            // The keyed `EXISTS` routes the pipeline to the node that holds the mirror's slot
            // on a cluster (a lone SCAN would go to any node).
            let mut pipe = redis::pipe();
            pipe.exists(self.keys.generation())
                .ignore()
                .cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT);
            let ((next, keys),): ((u64, Vec<String>),) = self.call("scan", &pipe).await?;
            found.extend(keys);
            if next == 0 {
                return Ok(found);
            }
            cursor = next;
        }
    }

    /// `(id, suffix)` for every key `<prefix><name><suffix>`.
    fn suffixes<'a>(
        &self,
        name: &str,
        keys: &'a [String],
    ) -> impl Iterator<Item = (&'a String, &'a str)> {
        let head = format!("{}{name}", self.keys.prefix());
        keys.iter()
            .filter_map(move |k| k.strip_prefix(head.as_str()).map(|s| (k, s)))
    }

    /// The heartbeat as one Lua script: guard and write in one atomic step, creating the key.
    async fn heartbeat_guarded(
        &self,
        member: String,
        heartbeat_key: String,
        at: String,
    ) -> Result<HeartbeatOutcome, MirrorError> {
        let mut invocation = self.writing(&scripts::HEARTBEAT);
        invocation
            .key(self.keys.generation())
            .key(self.keys.deactivated())
            .key(self.keys.online())
            .key(heartbeat_key)
            .arg(member)
            .arg(at);
        let code: i64 = self.call("heartbeat_guarded", &invocation).await?;
        match code {
            0 => Ok(HeartbeatOutcome::Deactivated),
            1 => Ok(HeartbeatOutcome::Recorded),
            2 => Ok(HeartbeatOutcome::Offline),
            3 => Err(MirrorError::Unseeded),
            other => Err(MirrorError::Corrupt(format!(
                "heartbeat script returned {other}"
            ))),
        }
    }

    /// Remembers the primary's `run_id`; a different one than before counts as a drop.
    fn note_primary(&self, run_id: Option<&str>) {
        let Some(run_id) = run_id else { return };
        let Ok(mut primary) = self.primary.lock() else {
            return;
        };
        match primary.as_deref() {
            Some(known) if known == run_id => {}
            Some(known) => {
                tracing::warn!(
                    before = known,
                    now = run_id,
                    "the valkey primary changed; reseeding"
                );
                self.conn.note_drop();
                *primary = Some(run_id.to_owned());
            }
            None => *primary = Some(run_id.to_owned()),
        }
    }

    async fn stage_set(&self, key: &str, members: &BTreeSet<MitraId>) -> Result<(), MirrorError> {
        let members: Vec<String> = members.iter().map(ToString::to_string).collect();
        for chunk in members.chunks(STAGING_CHUNK) {
            let mut pipe = redis::pipe();
            pipe.sadd(key, chunk).ignore().expire(key, 120).ignore();
            self.call::<()>("seed_stage", &pipe).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl AvailabilityMirror for ValkeyMirror {
    async fn ping(&self) -> Result<(), MirrorError> {
        self.call::<String>("ping", &redis::cmd("PING"))
            .await
            .map(|_| ())
    }

    /// One command, no Lua (a script costs the server ~3 µs per call, more than a `SET`):
    /// `SET … XX` refreshes the heartbeat key only if it exists, and it exists exactly while
    /// the mitra is online and active (`mark_online`, `mark_offline`, `set_deactivated` and the
    /// seed keep it so), so a ping never creates a key nor refreshes a deactivated mitra. No
    /// key takes the guarded script, which tells an unseeded mirror (flushed or restarted
    /// empty), deactivated (403), offline (an app not yet told it was swept) and a lost key
    /// (recorded) apart; all are rare.
    async fn heartbeat(
        &self,
        id: MitraId,
        at: OffsetDateTime,
    ) -> Result<HeartbeatOutcome, MirrorError> {
        let heartbeat_key = self.keys.heartbeat(id);
        let at = format_time(at);
        let refresh = redis::cmd("SET")
            .arg(&heartbeat_key)
            .arg(&at)
            .arg("XX")
            .to_owned();
        let refreshed: Option<Value> = self.call("heartbeat", &refresh).await?;
        match refreshed {
            Some(_) => Ok(HeartbeatOutcome::Recorded),
            None => {
                self.heartbeat_guarded(id.to_string(), heartbeat_key, at)
                    .await
            }
        }
    }

    async fn mark_online(
        &self,
        id: MitraId,
        at: OffsetDateTime,
        capacity: CapacityCount,
    ) -> Result<(), MirrorError> {
        let mut invocation = self.writing(&scripts::MARK_ONLINE);
        invocation
            .key(self.keys.online())
            .key(self.keys.deactivated())
            .key(self.keys.heartbeat(id))
            .key(self.keys.capacity(id))
            .key(self.keys.capacity_order())
            .arg(id.to_string())
            .arg(format_time(at))
            .arg(capacity.open)
            .arg(capacity.seq);
        self.call::<i64>("mark_online", &invocation).await.map(drop)
    }

    async fn mark_offline(&self, ids: &[MitraId]) -> Result<(), MirrorError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut invocation = self.writing(&scripts::MARK_OFFLINE);
        invocation.key(self.keys.online());
        for id in ids {
            invocation.key(self.keys.heartbeat(*id)).arg(id.to_string());
        }
        self.call::<i64>("mark_offline", &invocation)
            .await
            .map(drop)
    }

    async fn fence_stale(
        &self,
        ids: &[MitraId],
        cutoff: OffsetDateTime,
    ) -> Result<Vec<MitraId>, MirrorError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = self.writing(&scripts::FENCE_STALE);
        invocation.key(self.keys.online()).arg(format_time(cutoff));
        for id in ids {
            invocation.key(self.keys.heartbeat(*id)).arg(id.to_string());
        }
        let fenced: Vec<Value> = self.call("fence_stale", &invocation).await?;
        Ok(fenced.iter().filter_map(replies::mitra_id).collect())
    }

    async fn restore_online(
        &self,
        beats: &[(MitraId, OffsetDateTime)],
        token: u64,
    ) -> Result<(), MirrorError> {
        if beats.is_empty() {
            return Ok(());
        }
        let mut invocation = self.writing(&scripts::RESTORE_ONLINE);
        invocation
            .key(self.keys.online())
            .key(self.keys.deactivated())
            .arg(token);
        for (id, at) in beats {
            invocation
                .key(self.keys.heartbeat(*id))
                .arg(id.to_string())
                .arg(format_time(*at));
        }
        self.call::<i64>("restore_online", &invocation)
            .await
            .map(drop)
    }

    async fn set_deactivated(&self, id: MitraId, deactivated: bool) -> Result<(), MirrorError> {
        let mut invocation = self.writing(&scripts::SET_DEACTIVATED);
        invocation
            .key(self.keys.deactivated())
            .key(self.keys.online())
            .key(self.keys.heartbeat(id))
            .arg(id.to_string())
            .arg(if deactivated { "1" } else { "0" });
        self.call::<i64>("set_deactivated", &invocation)
            .await
            .map(drop)
    }

    async fn set_capacity(&self, id: MitraId, capacity: CapacityCount) -> Result<(), MirrorError> {
        let mut invocation = self.writing(&scripts::SET_CAPACITY);
        invocation
            .key(self.keys.capacity(id))
            .key(self.keys.capacity_order())
            .arg(id.to_string())
            .arg(capacity.open)
            .arg(capacity.seq);
        self.call::<i64>("set_capacity", &invocation)
            .await
            .map(drop)
    }

    async fn is_deactivated(&self, id: MitraId) -> Result<bool, MirrorError> {
        let mut pipe = redis::pipe();
        pipe.exists(self.keys.generation())
            .sismember(self.keys.deactivated(), id.to_string());
        let (seeded, deactivated): (bool, bool) = self.call("is_deactivated", &pipe).await?;
        ensure_seeded(seeded)?;
        Ok(deactivated)
    }

    async fn mitra_states(&self, ids: &[MitraId]) -> Result<Vec<MitraState>, MirrorError> {
        let mut pipe = redis::pipe();
        pipe.exists(self.keys.generation());
        for id in ids {
            let member = id.to_string();
            pipe.sismember(self.keys.online(), &member)
                .sismember(self.keys.deactivated(), &member)
                .get(self.keys.heartbeat(*id))
                .get(self.keys.capacity(*id));
        }
        let mut replies: Vec<Value> = self.call("mitra_state", &pipe).await?;
        if replies.len() != 1 + 4 * ids.len() {
            return Err(MirrorError::Corrupt(
                "mitra_state: short pipeline reply".into(),
            ));
        }
        let records = replies.split_off(1);
        ensure_seeded(replies.first().is_some_and(replies::truthy))?;
        Ok(records
            .chunks_exact(4)
            .map(|r| MitraState {
                online: replies::truthy(&r[0]),
                active: !replies::truthy(&r[1]),
                last_heartbeat: replies::time(&r[2]),
                open_sessions: replies::count(&r[3]),
            })
            .collect())
    }

    async fn candidate_states(&self) -> Result<Vec<(MitraId, MitraState)>, MirrorError> {
        let sorted = match self.sort_patterns() {
            Some((heartbeat, capacity)) => self.sorted_candidates(heartbeat, capacity).await?,
            None => None,
        };
        let (flat, excluded) = match sorted {
            Some(found) => found,
            None => {
                // A key prefix with `*` cannot be a SORT pattern, and some ACLs refuse SORT …
                // GET: the Lua script reads the same records (deactivated ones left out).
                let mut invocation = scripts::CANDIDATES.prepare_invoke();
                invocation
                    .key(self.keys.online())
                    .key(self.keys.deactivated())
                    .key(self.keys.generation())
                    .arg(self.keys.prefix());
                let flat: Value = self.call("candidate_states", &invocation).await?;
                ensure_seeded(!matches!(flat, Value::Int(0)))?;
                (flat, HashSet::new())
            }
        };
        let flat = replies::array(flat).map_err(MirrorError::Corrupt)?;
        Ok(replies::candidates(&flat, &excluded)
            .into_iter()
            .map(|(id, last_heartbeat, open_sessions)| {
                let state = MitraState {
                    online: true,
                    active: true,
                    last_heartbeat,
                    open_sessions,
                };
                (id, state)
            })
            .collect())
    }

    async fn online_heartbeats(
        &self,
    ) -> Result<Vec<(MitraId, Option<OffsetDateTime>)>, MirrorError> {
        let sorted = match self.sort_patterns() {
            Some((heartbeat, _)) => {
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .exists(self.keys.generation())
                    .cmd("SORT")
                    .arg(self.keys.online())
                    .arg("BY")
                    .arg("nosort")
                    .arg("GET")
                    .arg("#")
                    .arg("GET")
                    .arg(heartbeat);
                self.sorted_read::<(bool, Value)>("online_heartbeats", &pipe)
                    .await?
            }
            None => None,
        };
        let flat = match sorted {
            Some((seeded, flat)) => {
                ensure_seeded(seeded)?;
                flat
            }
            None => {
                let mut invocation = scripts::ONLINE_HEARTBEATS.prepare_invoke();
                invocation
                    .key(self.keys.online())
                    .key(self.keys.generation())
                    .arg(self.keys.prefix());
                let flat: Value = self.call("online_heartbeats", &invocation).await?;
                ensure_seeded(!matches!(flat, Value::Int(0)))?;
                flat
            }
        };
        let flat = replies::array(flat).map_err(MirrorError::Corrupt)?;
        Ok(replies::heartbeats(&flat))
    }

    async fn online_count(&self) -> Result<u64, MirrorError> {
        let mut pipe = redis::pipe();
        pipe.exists(self.keys.generation())
            .scard(self.keys.online());
        let (seeded, count): (bool, u64) = self.call("online_count", &pipe).await?;
        ensure_seeded(seeded)?;
        Ok(count)
    }

    async fn claim_beacon(&self, lock_ttl: Duration) -> Result<BeaconClaim, MirrorError> {
        // Nearly every poll finds the snapshot: a plain MGET costs the server a fraction of a
        // script call. Only a miss runs the script, which reads again and claims the lock.
        let read = Cmd::mget(&[self.keys.snapshot(), self.keys.generation()]);
        let (cached, generation): (Option<String>, Option<String>) =
            self.call("claim_beacon", &read).await?;
        let reply = match (cached, generation) {
            (_, None) => return Err(MirrorError::Unseeded),
            (Some(json), Some(_)) => json,
            (None, Some(_)) => {
                let owner = uuid::Uuid::new_v4().simple().to_string();
                let mut invocation = scripts::CLAIM_BEACON.prepare_invoke();
                invocation
                    .key(self.keys.snapshot())
                    .key(self.keys.snapshot_lock())
                    .key(self.keys.generation())
                    .arg(&owner)
                    .arg(millis(lock_ttl));
                let reply: String = self.call("claim_beacon", &invocation).await?;
                if reply == "compute" {
                    return Ok(BeaconClaim::Compute(BeaconLock(owner)));
                }
                reply
            }
        };
        match reply.as_str() {
            "unseeded" => Err(MirrorError::Unseeded),
            "busy" => Ok(BeaconClaim::Busy),
            json => {
                let snapshot: SnapshotJson = serde_json::from_str(json)
                    .map_err(|e| MirrorError::Corrupt(format!("availability snapshot: {e}")))?;
                Ok(BeaconClaim::Cached(Beacon::from_count(
                    snapshot.count as usize,
                )))
            }
        }
    }

    async fn store_beacon(
        &self,
        beacon: Beacon,
        computed_at: OffsetDateTime,
        ttl: Duration,
        lock: &BeaconLock,
    ) -> Result<(), MirrorError> {
        let json = serde_json::to_string(&SnapshotJson {
            available: beacon.available(),
            count: beacon.count,
            computed_at: format_time(computed_at),
        })
        .map_err(|e| MirrorError::Corrupt(e.to_string()))?;
        let mut invocation = scripts::STORE_BEACON.prepare_invoke();
        invocation
            .key(self.keys.snapshot())
            .key(self.keys.snapshot_lock())
            .arg(json)
            .arg(millis(ttl))
            .arg(&lock.0);
        self.call::<i64>("store_beacon", &invocation)
            .await
            .map(drop)
    }

    async fn bust_beacon(&self) -> Result<(), MirrorError> {
        self.call("bust_beacon", &Cmd::del(self.keys.snapshot()))
            .await
    }

    async fn write_token(&self) -> Result<u64, MirrorError> {
        let token: Option<u64> = self
            .call("write_token", &Cmd::get(self.keys.write_token()))
            .await?;
        Ok(token.unwrap_or(0))
    }

    async fn replace_all(
        &self,
        image: &MirrorImage,
        token: u64,
        now: OffsetDateTime,
    ) -> Result<SeedWrite, MirrorError> {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let staged_online = self.keys.staging(&nonce, "online");
        let staged_deactivated = self.keys.staging(&nonce, "deactivated");
        self.stage_set(&staged_online, &image.online).await?;
        self.stage_set(&staged_deactivated, &image.deactivated)
            .await?;

        // Per-mitra keys that exist now but must not after the swap; a capacity key goes with
        // the order number of its mitra's count (see `swap_seed.lua`).
        let order = |id: MitraId| {
            image
                .capacity_order
                .get(&id)
                .map(ToString::to_string)
                .unwrap_or_default()
        };
        let mut doomed: Vec<(String, String)> = Vec::new();
        let capacity_keys = self.scan_keys(crate::keys::CAPACITY).await?;
        for (key, suffix) in self.suffixes(crate::keys::CAPACITY, &capacity_keys) {
            match suffix.parse::<MitraId>() {
                Ok(id) if image.capacity.contains_key(&id) => {}
                Ok(id) => doomed.push((key.clone(), order(id))),
                Err(_) => doomed.push((key.clone(), String::new())),
            }
        }
        let heartbeat_keys = self.scan_keys(crate::keys::HEARTBEAT).await?;
        for (key, suffix) in self.suffixes(crate::keys::HEARTBEAT, &heartbeat_keys) {
            let wanted = suffix
                .parse::<MitraId>()
                .is_ok_and(|id| image.heartbeat.contains(&id));
            if !wanted {
                doomed.push((key.clone(), String::new()));
            }
        }

        let mut invocation = self.writing(&scripts::SWAP_SEED);
        invocation
            .key(self.keys.online())
            .key(self.keys.deactivated())
            .key(&staged_online)
            .key(&staged_deactivated)
            .key(self.keys.generation())
            .key(self.keys.snapshot())
            .key(self.keys.seeded_at())
            .key(self.keys.capacity_order())
            .arg(token.to_string())
            .arg(self.keys.prefix())
            .arg(&nonce)
            .arg(format_time(now))
            .arg(image.online.len())
            .arg(image.deactivated.len())
            .arg(image.capacity.len());
        for (id, open) in &image.capacity {
            let seq = image.capacity_order.get(id).copied().unwrap_or(0);
            invocation.arg(id.to_string()).arg(*open).arg(seq);
        }
        invocation.arg(image.heartbeat.len());
        for id in &image.heartbeat {
            let floor = image
                .heartbeat_floor
                .get(id)
                .map(|at| format_time(*at))
                .unwrap_or_default();
            invocation.arg(id.to_string()).arg(floor);
        }
        invocation.arg(doomed.len());
        for (key, seq) in &doomed {
            invocation.arg(key).arg(seq);
        }
        invocation.arg(format_time(image.truth_read_at.unwrap_or(now)));
        let applied: i64 = self.call("seed_swap", &invocation).await?;
        Ok(match applied {
            1 => SeedWrite::Applied,
            2 => SeedWrite::Superseded,
            _ => SeedWrite::Raced,
        })
    }

    async fn read_image(&self) -> Result<MirrorImage, MirrorError> {
        let mut image = MirrorImage::default();
        let mut sets = redis::pipe();
        sets.smembers(self.keys.online())
            .smembers(self.keys.deactivated());
        let (online, deactivated): (Vec<String>, Vec<String>) =
            self.call("read_sets", &sets).await?;
        for (members, target) in [
            (online, &mut image.online),
            (deactivated, &mut image.deactivated),
        ] {
            for member in members {
                match member.parse::<MitraId>() {
                    Ok(id) => {
                        target.insert(id);
                    }
                    Err(_) => {
                        image.garbage.insert(member);
                    }
                }
            }
        }
        let heartbeat_keys = self.scan_keys(crate::keys::HEARTBEAT).await?;
        for (key, suffix) in self.suffixes(crate::keys::HEARTBEAT, &heartbeat_keys) {
            match suffix.parse::<MitraId>() {
                Ok(id) => {
                    image.heartbeat.insert(id);
                }
                Err(_) => {
                    image.garbage.insert(key.clone());
                }
            }
        }
        let capacity_keys = self.scan_keys(crate::keys::CAPACITY).await?;
        if !capacity_keys.is_empty() {
            let values: Vec<Option<String>> = self
                .call("read_capacities", &Cmd::mget(&capacity_keys))
                .await?;
            for ((key, suffix), value) in self
                .suffixes(crate::keys::CAPACITY, &capacity_keys)
                .zip(values)
            {
                match (
                    suffix.parse::<MitraId>(),
                    value.as_deref().map(str::parse::<u32>),
                ) {
                    (Ok(id), Some(Ok(n))) => {
                        image.capacity.insert(id, n);
                    }
                    (_, None) => {} // deleted between SCAN and MGET
                    _ => {
                        image.garbage.insert(key.clone());
                    }
                }
            }
        }
        Ok(image)
    }

    /// Also notes a change of primary as a dropped connection: a promoted replica (or a
    /// cluster failover the client followed by itself) answers with data that may be a little
    /// older, so the watcher reseeds, as after a reconnect.
    async fn is_seeded(&self) -> Result<bool, MirrorError> {
        if self.info_refused.load(Ordering::Relaxed) {
            return self
                .call("is_seeded", &Cmd::exists(self.keys.generation()))
                .await;
        }
        let mut pipe = redis::pipe();
        pipe.exists(self.keys.generation())
            .cmd("INFO")
            .arg("server");
        match self.call_raw::<(bool, String)>("is_seeded", &pipe).await? {
            Ok((seeded, info)) => {
                self.note_primary(replies::info_field(&info, "run_id"));
                Ok(seeded)
            }
            Err(error) if refuses_command(&error) => {
                tracing::warn!(%error, "valkey refuses INFO; a failover is then noticed only by its dropped connections");
                self.info_refused.store(true, Ordering::Relaxed);
                self.call("is_seeded", &Cmd::exists(self.keys.generation()))
                    .await
            }
            Err(error) => Err(classify(error)),
        }
    }

    async fn try_lease(&self, name: &str, ttl: Duration) -> Result<bool, MirrorError> {
        let cmd = redis::cmd("SET")
            .arg(self.keys.lease(name))
            .arg(uuid::Uuid::new_v4().simple().to_string())
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .to_owned();
        let reply: Option<String> = self.call("try_lease", &cmd).await?;
        Ok(reply.is_some())
    }

    async fn publish_config_invalidate(&self) -> Result<(), MirrorError> {
        // A cluster's subscribers listen on the sharded channel (see `pubsub`).
        let command = if self.conn.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        };
        let request = redis::cmd(command)
            .arg(self.keys.config_channel())
            .arg("1")
            .to_owned();
        self.call::<()>("publish_config_invalidate", &request).await
    }

    fn connection_drops(&self) -> u64 {
        self.conn.drops()
    }
}

/// The abuse limits' counters: a window key that starts at the first hit and expires with the
/// window, counted in one atomic round trip.
#[async_trait]
impl halo_ports::RateCounter for ValkeyMirror {
    async fn hit(&self, bucket: &str, window: Duration) -> Result<(u64, Duration), MirrorError> {
        let key = self.keys.rate_window(bucket);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(&key)
            .arg(0)
            .arg("PX")
            .arg(millis(window))
            .arg("NX")
            .ignore()
            .incr(&key, 1)
            .pttl(&key);
        let (count, left_ms): (u64, i64) = self.call("rate_limit", &pipe).await?;
        let left = Duration::from_millis(u64::try_from(left_ms).unwrap_or(0));
        Ok((count, left))
    }
}
