//! `ValkeyMirror`, the mirror port over self-reconnecting multiplexed connections (see
//! `Connections`), one file per part: the request policy every call goes through, the hot
//! paths, the two bulk-read implementations, the offer round's walk of the idle order, the
//! instances' coordination, the seed and drift (with the sweeps' primitives), and the abuse
//! limits' counters.

mod bulk_reads;
mod coordination;
mod hot_path;
mod idle_order;
mod rate_counter;
mod request_policy;
mod seed;

use crate::connection::Connections;
use crate::keys::Keys;
use halo_metrics::Metrics;
use halo_ports::MirrorError;
use redis::ScriptInvocation;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

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

/// A read that found the generation marker missing answers nothing about availability.
pub(super) fn ensure_seeded(seeded: bool) -> Result<(), MirrorError> {
    if seeded {
        Ok(())
    } else {
        Err(MirrorError::Unseeded)
    }
}

pub(super) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
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

    /// A script that writes mirror data: its first two keys are the write token and the
    /// journal (`journal.lua`).
    pub(super) fn writing(&self, script: &'static redis::Script) -> ScriptInvocation<'static> {
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.keys.write_token())
            .key(self.keys.journal());
        invocation
    }
}
