//! Latency and error bookkeeping. Each worker owns a [`Recorder`] (no locks on the hot path);
//! they are merged once at the end. Shared atomics only feed the progress line.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Latencies from 1 µs to 60 s at 3 significant digits.
const MAX_MICROS: u64 = 60_000_000;

/// The request types the report separates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Heartbeat,
    Beacon,
    Whoami,
    Blast,
    OpenRequests,
    Accept,
    End,
}

impl Kind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Heartbeat => "heartbeat",
            Self::Beacon => "beacon",
            Self::Whoami => "whoami",
            Self::Blast => "blast",
            Self::OpenRequests => "open_requests",
            Self::Accept => "accept",
            Self::End => "end",
        }
    }
}

/// Counters every worker bumps, read by the progress printer.
#[derive(Default)]
pub struct Live {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
}

/// A histogram with the report's bounds; `None` only if hdrhistogram refused constant bounds.
fn histogram() -> Option<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).ok()
}

/// One worker's measurements.
#[derive(Default)]
pub struct Recorder {
    latencies: BTreeMap<Kind, Histogram<u64>>,
    errors: BTreeMap<(Kind, String), u64>,
}

impl Recorder {
    /// Records a finished request (success or failure: a failure's latency counts too).
    pub fn record(&mut self, live: &Live, kind: Kind, latency: Duration, error: Option<String>) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(MAX_MICROS)
            .clamp(1, MAX_MICROS);
        if let std::collections::btree_map::Entry::Vacant(slot) = self.latencies.entry(kind) {
            if let Some(h) = histogram() {
                slot.insert(h);
            }
        }
        if let Some(h) = self.latencies.get_mut(&kind) {
            // Saturating: the value is clamped into the histogram's range above.
            h.saturating_record(micros);
        }
        live.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(key) = error {
            *self.errors.entry((kind, key)).or_default() += 1;
            live.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn merge(&mut self, other: Recorder) {
        for (kind, h) in other.latencies {
            match self.latencies.get_mut(&kind) {
                // Same bounds on both sides, so `add` cannot fail; ignore to stay total.
                Some(mine) => drop(mine.add(&h)),
                None => {
                    self.latencies.insert(kind, h);
                }
            }
        }
        for (key, n) in other.errors {
            *self.errors.entry(key).or_default() += n;
        }
    }

    pub fn summary(&self, window: Duration) -> Summary {
        let secs = window.as_secs_f64().max(1e-9);
        let mut kinds = BTreeMap::new();
        for (kind, h) in &self.latencies {
            let errors = self
                .errors
                .iter()
                .filter(|((k, _), _)| k == kind)
                .map(|(_, n)| n)
                .sum();
            kinds.insert(
                kind.as_str().to_owned(),
                KindSummary {
                    count: h.len(),
                    errors,
                    rps: h.len() as f64 / secs,
                    p50_us: h.value_at_quantile(0.50),
                    p90_us: h.value_at_quantile(0.90),
                    p99_us: h.value_at_quantile(0.99),
                    p999_us: h.value_at_quantile(0.999),
                    max_us: h.max(),
                    mean_us: h.mean(),
                },
            );
        }
        let errors = self
            .errors
            .iter()
            .map(|((kind, key), n)| (format!("{} {key}", kind.as_str()), *n))
            .collect();
        let count = kinds.values().map(|k| k.count).sum::<u64>();
        Summary {
            window_s: window.as_secs_f64(),
            count,
            rps: count as f64 / secs,
            kinds,
            errors,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct KindSummary {
    pub count: u64,
    pub errors: u64,
    pub rps: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub window_s: f64,
    pub count: u64,
    pub rps: f64,
    pub kinds: BTreeMap<String, KindSummary>,
    /// `"<kind> <status> <code>"` → count.
    pub errors: BTreeMap<String, u64>,
}
