//! Metrics of SPEC §6.2. One `Metrics` per app instance (not a global recorder), so tests that
//! run several instances in one process can prove budgets from each instance's own counters.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

type Labels = Vec<(&'static str, String)>;
type CounterFamily = Family<Labels, Counter>;
type HistogramFamily = Family<Labels, Histogram>;
type RenderHook = Box<dyn Fn(&Metrics) + Send + Sync>;

/// Store calls: 50 µs to ~0.8 s.
fn store_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 15))
}

/// Cheap to clone; all clones share the same counters.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    registry: Registry,
    pg_queries: CounterFamily,
    valkey_round_trips: CounterFamily,
    valkey_fallbacks: CounterFamily,
    mirror_write_failures: CounterFamily,
    seeds: CounterFamily,
    sweep_runs: CounterFamily,
    beacon_recomputes: Counter,
    timer_transitions: Counter,
    mirror_state: Family<Labels, Gauge>,
    payment_events: CounterFamily,
    http_requests: CounterFamily,
    http_latency: Family<Labels, Histogram>,
    valkey_latency: HistogramFamily,
    pg_latency: HistogramFamily,
    valkey_in_flight: Gauge,
    pg_pool: Family<Labels, Gauge>,
    build_info: Family<Labels, Gauge>,
    sse: SseMetrics,
    /// Run before every render: fills the gauges read from outside (the pool's status).
    before_render: RwLock<Vec<RenderHook>>,
    /// Totals across labels, for budget assertions (Prometheus sums the families itself).
    pg_total: AtomicU64,
    valkey_total: AtomicU64,
    /// Handles of the per-request series, resolved once: a family lookup builds owned label
    /// strings and hashes them, on every heartbeat and beacon poll. The handles share their
    /// values with the families (same series, same names and labels at `/metrics`).
    http_handles: RwLock<HashMap<Box<str>, Vec<RouteHandles>>>,
    round_trip_handles: RwLock<HashMap<Box<str>, Counter>>,
    /// Same for fallbacks: while the mirror is not trusted every hot request counts one.
    fallback_handles: RwLock<HashMap<Box<str>, Counter>>,
    valkey_latency_handles: RwLock<HashMap<Box<str>, Histogram>>,
    pg_latency_handles: RwLock<HashMap<Box<str>, Histogram>>,
}

/// The apps' event streams (SPEC §12).
struct SseMetrics {
    open: Gauge,
    events_sent: Counter,
    dropped: CounterFamily,
}

impl SseMetrics {
    fn register(registry: &mut Registry) -> Self {
        let open = Gauge::default();
        registry.register(
            "sse_streams_open",
            "Event streams (SSE) open on this instance",
            open.clone(),
        );
        let events_sent = Counter::default();
        registry.register(
            "sse_events_sent",
            "Events handed to the apps' streams (SSE) by this instance",
            events_sent.clone(),
        );
        Self {
            open,
            events_sent,
            dropped: counter(
                registry,
                "sse_streams_dropped",
                "Event streams this instance closed itself, by reason (slow: its buffer was full; shutdown)",
            ),
        }
    }
}

/// One method of a route: its latency series and its counters by status.
struct RouteHandles {
    method: Box<str>,
    latency: Histogram,
    by_status: Vec<(u16, Counter)>,
}

fn label(key: &'static str, value: &str) -> Labels {
    vec![(key, value.to_owned())]
}

/// The caches hold only handles of series that exist anyway: a poisoned lock (a panic while
/// holding it) leaves them consistent, so it is used as is.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Counts one of `family`'s `op` series through a cache of handles, under the read guard:
/// cloning the handle out would cost two more atomic operations on a cache line both workers
/// write, and a family lookup builds and hashes owned labels, on every hot call.
fn count_op(family: &CounterFamily, handles: &RwLock<HashMap<Box<str>, Counter>>, op: &str) {
    if let Some(counter) = read(handles).get(op) {
        counter.inc();
        return;
    }
    let counter = family.get_or_create_owned(&label("op", op));
    counter.inc();
    write(handles).insert(op.into(), counter);
}

/// `count_op` for a latency histogram.
fn observe_op(
    family: &HistogramFamily,
    handles: &RwLock<HashMap<Box<str>, Histogram>>,
    key: (&'static str, &str),
    seconds: f64,
) {
    if let Some(histogram) = read(handles).get(key.1) {
        histogram.observe(seconds);
        return;
    }
    let histogram = family.get_or_create_owned(&label(key.0, key.1));
    histogram.observe(seconds);
    write(handles).insert(key.1.into(), histogram);
}

fn histograms(registry: &mut Registry, name: &str, help: &str) -> HistogramFamily {
    let family = HistogramFamily::new_with_constructor(store_buckets);
    registry.register(name, help, family.clone());
    family
}

fn counter(registry: &mut Registry, name: &str, help: &str) -> CounterFamily {
    let family = CounterFamily::default();
    registry.register(name, help, family.clone());
    family
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("halo");
        let beacon_recomputes = Counter::default();
        registry.register(
            "beacon_recomputes",
            "Beacon snapshots computed by this instance",
            beacon_recomputes.clone(),
        );
        let timer_transitions = Counter::default();
        registry.register(
            "chat_timer_transitions",
            "Chat sessions this instance's timer sweep ended, failed or cancelled",
            timer_transitions.clone(),
        );
        let payment_events = counter(
            &mut registry,
            "payment_events",
            "Payments by event: charged (provider calls), captured, refunded",
        );
        let mirror_state = Family::<Labels, Gauge>::default();
        registry.register(
            "mirror_state",
            "1 for the mirror health state this instance is in (unseeded, trusted, behind, down)",
            mirror_state.clone(),
        );
        let http_latency = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_25, 2.0, 14))
        });
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method and route",
            http_latency.clone(),
        );
        let valkey_in_flight = Gauge::default();
        registry.register(
            "valkey_requests_in_flight",
            "Valkey calls sent and not yet answered",
            valkey_in_flight.clone(),
        );
        let pg_pool = Family::<Labels, Gauge>::default();
        registry.register(
            "pg_pool_connections",
            "Postgres pool: size (open connections), available (idle), waiting (callers queued), max",
            pg_pool.clone(),
        );
        let build_info = Family::<Labels, Gauge>::default();
        registry.register(
            "build_info",
            "1, labelled with the version and git revision this instance runs",
            build_info.clone(),
        );
        let sse = SseMetrics::register(&mut registry);
        let inner = Inner {
            build_info,
            sse,
            valkey_latency: histograms(
                &mut registry,
                "valkey_call_duration_seconds",
                "Valkey call latency by operation (deadline included)",
            ),
            pg_latency: histograms(
                &mut registry,
                "pg_query_duration_seconds",
                "Postgres statement latency by named query",
            ),
            valkey_in_flight,
            pg_pool,
            before_render: RwLock::default(),
            valkey_latency_handles: RwLock::default(),
            pg_latency_handles: RwLock::default(),
            pg_queries: counter(
                &mut registry,
                "pg_queries",
                "Postgres statements by named query",
            ),
            valkey_round_trips: counter(
                &mut registry,
                "valkey_round_trips",
                "Valkey round trips by operation",
            ),
            valkey_fallbacks: counter(
                &mut registry,
                "valkey_fallbacks",
                "Reads served from Postgres because Valkey failed, by operation",
            ),
            mirror_write_failures: counter(
                &mut registry,
                "mirror_write_failures",
                "Best-effort mirror writes that failed, by operation",
            ),
            seeds: counter(&mut registry, "mirror_seeds", "Mirror seeds by reason"),
            sweep_runs: counter(
                &mut registry,
                "sweep_runs",
                "Sweep ticks by sweep and outcome",
            ),
            http_requests: counter(
                &mut registry,
                "http_requests",
                "HTTP requests by method, route and status",
            ),
            beacon_recomputes,
            timer_transitions,
            mirror_state,
            payment_events,
            http_latency,
            registry,
            pg_total: AtomicU64::new(0),
            valkey_total: AtomicU64::new(0),
            http_handles: RwLock::default(),
            round_trip_handles: RwLock::default(),
            fallback_handles: RwLock::default(),
        };
        Self(Arc::new(inner))
    }

    pub fn pg_query(&self, query: &str) {
        self.0
            .pg_queries
            .get_or_create(&label("query", query))
            .inc();
        self.0.pg_total.fetch_add(1, Ordering::Relaxed);
    }

    pub fn valkey_round_trip(&self, op: &str) {
        self.0.valkey_total.fetch_add(1, Ordering::Relaxed);
        count_op(&self.0.valkey_round_trips, &self.0.round_trip_handles, op);
    }

    pub fn valkey_fallback(&self, op: &str) {
        count_op(&self.0.valkey_fallbacks, &self.0.fallback_handles, op);
    }

    pub fn mirror_write_failed(&self, op: &str) {
        self.0
            .mirror_write_failures
            .get_or_create(&label("op", op))
            .inc();
    }

    pub fn seed(&self, reason: &str) {
        self.0.seeds.get_or_create(&label("reason", reason)).inc();
    }

    pub fn sweep_run(&self, sweep: &str, outcome: &str) {
        let labels = vec![("sweep", sweep.to_owned()), ("outcome", outcome.to_owned())];
        self.0.sweep_runs.get_or_create(&labels).inc();
    }

    /// Sets the state gauge: 1 for `current`, 0 for the other `states`.
    pub fn mirror_state(&self, current: &str, states: &[&str]) {
        for state in states {
            let value = i64::from(*state == current);
            self.0
                .mirror_state
                .get_or_create(&label("state", state))
                .set(value);
        }
    }

    pub fn payment_event(&self, event: &str) {
        self.0
            .payment_events
            .get_or_create(&label("event", event))
            .inc();
    }

    pub fn beacon_recomputed(&self) {
        self.0.beacon_recomputes.inc();
    }

    pub fn timer_transitions_applied(&self, sessions: usize) {
        self.0
            .timer_transitions
            .inc_by(u64::try_from(sessions).unwrap_or(u64::MAX));
    }

    pub fn sse_stream_opened(&self) {
        self.0.sse.open.inc();
    }

    pub fn sse_stream_closed(&self) {
        self.0.sse.open.dec();
    }

    pub fn sse_event_sent(&self) {
        self.0.sse.events_sent.inc();
    }

    pub fn sse_stream_dropped(&self, reason: &str) {
        self.0
            .sse
            .dropped
            .get_or_create(&label("reason", reason))
            .inc();
    }

    pub fn http_request(&self, method: &str, route: &str, status: u16, latency: Duration) {
        let seconds = latency.as_secs_f64();
        // Recorded under the read guard (no handle clones): see `valkey_round_trip`.
        if let Some(handles) = read(&self.0.http_handles).get(route) {
            if let Some(series) = handles.iter().find(|s| &*s.method == method) {
                if let Some((_, counter)) = series.by_status.iter().find(|(s, _)| *s == status) {
                    counter.inc();
                    series.latency.observe(seconds);
                    return;
                }
            }
        }
        let (latency_series, counter) = self.resolve_http(method, route, status);
        counter.inc();
        latency_series.observe(seconds);
    }

    /// First request of a method, route and status: resolve the series and remember the
    /// handles.
    fn resolve_http(&self, method: &str, route: &str, status: u16) -> (Histogram, Counter) {
        let labels = vec![
            ("method", method.to_owned()),
            ("route", route.to_owned()),
            ("status", status.to_string()),
        ];
        let counter = self.0.http_requests.get_or_create_owned(&labels);
        let latency = self.0.http_latency.get_or_create_owned(&vec![
            ("method", method.to_owned()),
            ("route", route.to_owned()),
        ]);
        let mut handles = write(&self.0.http_handles);
        let by_method = handles.entry(route.into()).or_default();
        let position = match by_method.iter().position(|s| &*s.method == method) {
            Some(i) => i,
            None => {
                by_method.push(RouteHandles {
                    method: method.into(),
                    latency: latency.clone(),
                    by_status: Vec::new(),
                });
                by_method.len() - 1
            }
        };
        let series = &mut by_method[position];
        if !series.by_status.iter().any(|(s, _)| *s == status) {
            series.by_status.push((status, counter.clone()));
        }
        (latency, counter)
    }

    /// How long a Valkey call took (`op` as in `valkey_round_trip`).
    pub fn valkey_call_took(&self, op: &str, took: Duration) {
        observe_op(
            &self.0.valkey_latency,
            &self.0.valkey_latency_handles,
            ("op", op),
            took.as_secs_f64(),
        );
    }

    /// A Valkey call was sent (`true`) or answered (`false`).
    pub fn valkey_in_flight(&self, sent: bool) {
        if sent {
            self.0.valkey_in_flight.inc();
        } else {
            self.0.valkey_in_flight.dec();
        }
    }

    /// How long a Postgres statement took.
    pub fn pg_query_took(&self, query: &str, took: Duration) {
        observe_op(
            &self.0.pg_latency,
            &self.0.pg_latency_handles,
            ("query", query),
            took.as_secs_f64(),
        );
    }

    /// The Postgres pool's status, as `deadpool` reports it.
    pub fn pg_pool(&self, size: usize, available: usize, waiting: usize, max: usize) {
        for (state, value) in [
            ("size", size),
            ("available", available),
            ("waiting", waiting),
            ("max", max),
        ] {
            self.0
                .pg_pool
                .get_or_create(&label("state", state))
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
    }

    /// `halo_build_info{version, revision} 1`: which build this instance runs.
    pub fn build_info(&self, version: &str, revision: &str) {
        let labels = vec![
            ("version", version.to_owned()),
            ("revision", revision.to_owned()),
        ];
        self.0.build_info.get_or_create(&labels).set(1);
    }

    /// Runs `refresh` before every render (gauges read from elsewhere, e.g. a pool's status).
    pub fn before_render(&self, refresh: impl Fn(&Metrics) + Send + Sync + 'static) {
        write(&self.0.before_render).push(Box::new(refresh));
    }

    /// Prometheus text exposition of every metric of this instance.
    pub fn render(&self) -> String {
        for refresh in read(&self.0.before_render).iter() {
            refresh(self);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.0.registry);
        out
    }

    // Readers for tests and the bench: exact counts, no text parsing.

    pub fn pg_queries(&self, query: &str) -> u64 {
        self.0
            .pg_queries
            .get_or_create(&label("query", query))
            .get()
    }

    /// Postgres statements of every name.
    pub fn pg_queries_total(&self) -> u64 {
        self.0.pg_total.load(Ordering::Relaxed)
    }

    /// Valkey round trips of every operation.
    pub fn valkey_round_trips_total(&self) -> u64 {
        self.0.valkey_total.load(Ordering::Relaxed)
    }

    pub fn valkey_round_trips(&self, op: &str) -> u64 {
        self.0
            .valkey_round_trips
            .get_or_create(&label("op", op))
            .get()
    }

    pub fn valkey_fallbacks(&self, op: &str) -> u64 {
        self.0
            .valkey_fallbacks
            .get_or_create(&label("op", op))
            .get()
    }

    pub fn mirror_write_failures(&self, op: &str) -> u64 {
        self.0
            .mirror_write_failures
            .get_or_create(&label("op", op))
            .get()
    }

    pub fn seeds(&self, reason: &str) -> u64 {
        self.0.seeds.get_or_create(&label("reason", reason)).get()
    }

    pub fn sweep_runs(&self, sweep: &str, outcome: &str) -> u64 {
        let labels = vec![("sweep", sweep.to_owned()), ("outcome", outcome.to_owned())];
        self.0.sweep_runs.get_or_create(&labels).get()
    }

    pub fn beacon_recomputes(&self) -> u64 {
        self.0.beacon_recomputes.get()
    }

    pub fn timer_transitions(&self) -> u64 {
        self.0.timer_transitions.get()
    }

    pub fn sse_streams_open(&self) -> i64 {
        self.0.sse.open.get()
    }

    pub fn sse_events_sent(&self) -> u64 {
        self.0.sse.events_sent.get()
    }

    pub fn sse_streams_dropped(&self, reason: &str) -> u64 {
        self.0
            .sse
            .dropped
            .get_or_create(&label("reason", reason))
            .get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_count_and_render() {
        let m = Metrics::new();
        m.pg_query("set_online");
        m.pg_query("set_online");
        m.valkey_round_trip("heartbeat");
        m.sweep_run("auto_offline", "skipped");
        m.http_request("GET", "/healthz", 200, Duration::from_millis(3));
        assert_eq!(m.pg_queries("set_online"), 2);
        assert_eq!(m.pg_queries("other"), 0);
        assert_eq!(m.valkey_round_trips("heartbeat"), 1);
        assert_eq!(m.pg_queries_total(), 2);
        assert_eq!(m.valkey_round_trips_total(), 1);
        assert_eq!(m.sweep_runs("auto_offline", "skipped"), 1);
        let text = m.render();
        assert!(
            text.contains("halo_pg_queries_total{query=\"set_online\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("halo_http_request_duration_seconds_bucket"),
            "{text}"
        );
    }

    #[test]
    fn cached_handles_feed_the_same_series() {
        let m = Metrics::new();
        for _ in 0..3 {
            m.http_request(
                "POST",
                "/api/mitra/status/heartbeat",
                200,
                Duration::from_millis(1),
            );
            m.valkey_round_trip("heartbeat");
            m.valkey_call_took("heartbeat", Duration::from_micros(100));
        }
        m.http_request(
            "POST",
            "/api/mitra/status/heartbeat",
            403,
            Duration::from_millis(1),
        );
        m.http_request(
            "GET",
            "/api/mitra/status/heartbeat",
            405,
            Duration::from_millis(1),
        );
        m.http_request(
            "GET",
            "/public/bestie-availability",
            200,
            Duration::from_millis(1),
        );
        m.pg_query_took("set_online", Duration::from_millis(2));
        assert_eq!(m.valkey_round_trips("heartbeat"), 3);
        assert_eq!(m.valkey_round_trips_total(), 3);
        let text = m.render();
        for line in [
            "halo_http_requests_total{method=\"POST\",route=\"/api/mitra/status/heartbeat\",status=\"200\"} 3",
            "halo_http_requests_total{method=\"POST\",route=\"/api/mitra/status/heartbeat\",status=\"403\"} 1",
            "halo_http_requests_total{method=\"GET\",route=\"/api/mitra/status/heartbeat\",status=\"405\"} 1",
            "halo_http_requests_total{method=\"GET\",route=\"/public/bestie-availability\",status=\"200\"} 1",
            "halo_http_request_duration_seconds_count{method=\"POST\",route=\"/api/mitra/status/heartbeat\"} 4",
            "halo_http_request_duration_seconds_count{method=\"GET\",route=\"/api/mitra/status/heartbeat\"} 1",
            "halo_valkey_round_trips_total{op=\"heartbeat\"} 3",
            "halo_valkey_call_duration_seconds_count{op=\"heartbeat\"} 3",
            "halo_pg_query_duration_seconds_count{query=\"set_online\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn gauges_read_from_elsewhere_are_refreshed_at_render() {
        let m = Metrics::new();
        let calls = Arc::new(AtomicU64::new(0));
        let seen = calls.clone();
        m.before_render(move |m| {
            let n = usize::try_from(seen.fetch_add(1, Ordering::Relaxed)).unwrap_or(0);
            m.pg_pool(n + 3, 1, 0, 16);
        });
        m.valkey_in_flight(true);
        m.valkey_in_flight(true);
        m.valkey_in_flight(false);
        let text = m.render();
        assert!(
            text.contains("halo_pg_pool_connections{state=\"size\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("halo_pg_pool_connections{state=\"max\"} 16"),
            "{text}"
        );
        assert!(text.contains("halo_valkey_requests_in_flight 1"), "{text}");
        m.build_info("0.1.0", "abc");
        let text = m.render();
        assert!(
            text.contains("halo_pg_pool_connections{state=\"size\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("halo_build_info{version=\"0.1.0\",revision=\"abc\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn instances_do_not_share_counters() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.pg_query("q");
        assert_eq!(b.pg_queries("q"), 0);
    }
}
