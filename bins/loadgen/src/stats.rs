//! Latency and error bookkeeping. Each worker owns a [`Recorder`] (no locks on the hot path);
//! they are merged once at the end. Shared atomics only feed the progress line. Besides the
//! whole-window histograms, a recorder counts completions per second of the measured window
//! (second 0 starts when the window opens), so a run that kills a store at that instant can
//! report what the first second after it looked like.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Latencies from 1 µs to 60 s at 3 significant digits.
const MAX_MICROS: u64 = 60_000_000;

/// Seconds the per-second series cover: the longest window (3600 s) plus requests still in
/// flight when it closes; later completions count in the last second.
const MAX_SECONDS: usize = 3_700;

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
    /// Completed requests per kind, by second of the measured window.
    per_second: BTreeMap<Kind, Vec<u64>>,
    /// Failed requests (all kinds), by second.
    per_second_errors: Vec<u64>,
    /// Slowest request (all kinds, µs), by second.
    per_second_max_us: Vec<u64>,
}

/// The slot of second `i` in `series`, growing it with zeros as needed.
fn slot(series: &mut Vec<u64>, i: usize) -> &mut u64 {
    if series.len() <= i {
        series.resize(i + 1, 0);
    }
    &mut series[i]
}

/// `into[i] = combine(into[i], from[i])` over `from`'s length, growing `into` as needed.
fn merge_series(into: &mut Vec<u64>, from: &[u64], combine: fn(u64, u64) -> u64) {
    for (i, v) in from.iter().enumerate() {
        let mine = slot(into, i);
        *mine = combine(*mine, *v);
    }
}

impl Recorder {
    /// Records a request (success or failure: a failure's latency counts too) that finished
    /// `at` after the measured window opened.
    pub fn record(
        &mut self,
        live: &Live,
        kind: Kind,
        latency: Duration,
        at: Duration,
        error: Option<String>,
    ) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(MAX_MICROS)
            .clamp(1, MAX_MICROS);
        let second = usize::try_from(at.as_secs())
            .unwrap_or(MAX_SECONDS)
            .min(MAX_SECONDS);
        *slot(self.per_second.entry(kind).or_default(), second) += 1;
        let max = slot(&mut self.per_second_max_us, second);
        *max = (*max).max(micros);
        if error.is_some() {
            *slot(&mut self.per_second_errors, second) += 1;
        }
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
        for (kind, series) in other.per_second {
            merge_series(
                self.per_second.entry(kind).or_default(),
                &series,
                u64::saturating_add,
            );
        }
        merge_series(
            &mut self.per_second_errors,
            &other.per_second_errors,
            u64::saturating_add,
        );
        merge_series(
            &mut self.per_second_max_us,
            &other.per_second_max_us,
            u64::max,
        );
    }

    /// How many seconds the longest per-second series spans.
    fn seconds(&self) -> usize {
        self.per_second
            .values()
            .map(Vec::len)
            .chain([self.per_second_errors.len(), self.per_second_max_us.len()])
            .max()
            .unwrap_or(0)
    }

    pub fn summary(&self, window: Duration) -> Summary {
        let secs = window.as_secs_f64().max(1e-9);
        let seconds = self.seconds();
        let padded = |series: &[u64]| {
            let mut out = series.to_vec();
            out.resize(seconds, 0);
            out
        };
        let mut per_second = vec![0; seconds];
        for series in self.per_second.values() {
            merge_series(&mut per_second, series, u64::saturating_add);
        }
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
                    per_second: padded(self.per_second.get(kind).map_or(&[], Vec::as_slice)),
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
            per_second,
            per_second_errors: padded(&self.per_second_errors),
            per_second_max_us: padded(&self.per_second_max_us),
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
    /// Completed requests of this kind in each second of the measured window.
    pub per_second: Vec<u64>,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub window_s: f64,
    pub count: u64,
    pub rps: f64,
    pub kinds: BTreeMap<String, KindSummary>,
    /// `"<kind> <status> <code>"` → count.
    pub errors: BTreeMap<String, u64>,
    /// Completed requests (all kinds) in each second of the measured window; second 0 opens
    /// with the window, the last one may be partial.
    pub per_second: Vec<u64>,
    /// Failed requests (all kinds) in each second.
    pub per_second_errors: Vec<u64>,
    /// The slowest request (all kinds, µs) that finished in each second; 0 when none did.
    pub per_second_max_us: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn counts_completions_per_second_of_the_window() {
        let live = Live::default();
        let mut a = Recorder::default();
        a.record(&live, Kind::Heartbeat, ms(2), ms(100), None);
        a.record(&live, Kind::Heartbeat, ms(9), ms(900), Some("503 X".into()));
        a.record(&live, Kind::Heartbeat, ms(1), ms(2_500), None);
        let mut b = Recorder::default();
        b.record(&live, Kind::Beacon, ms(4), ms(1_200), None);
        a.merge(b);

        let s = a.summary(ms(3_000));
        assert_eq!(s.per_second, vec![2, 1, 1]);
        assert_eq!(s.per_second_errors, vec![1, 0, 0]);
        assert_eq!(s.per_second_max_us, vec![9_000, 4_000, 1_000]);
        assert_eq!(s.kinds["heartbeat"].per_second, vec![2, 0, 1]);
        assert_eq!(s.kinds["beacon"].per_second, vec![0, 1, 0]);
        assert_eq!(s.count, 4);
        assert_eq!(live.requests.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn late_completions_land_in_the_last_second() {
        let live = Live::default();
        let mut r = Recorder::default();
        r.record(
            &live,
            Kind::Whoami,
            ms(1),
            Duration::from_secs(86_400),
            None,
        );
        assert_eq!(r.summary(ms(1_000)).per_second.len(), MAX_SECONDS + 1);
    }
}
