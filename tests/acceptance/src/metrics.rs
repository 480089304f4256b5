//! Reading the Prometheus text of `GET /metrics`: the services count every Postgres statement by
//! name and every Valkey round trip by operation, so budgets are asserted on exact counts.

/// One scrape of `/metrics`.
#[derive(Debug, Clone)]
pub struct MetricsText(pub String);

impl MetricsText {
    /// Sum of the samples of `name` whose labels include every `(key, value)` of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(parse_line)
            .filter(|(metric, sample_labels, _)| {
                *metric == name
                    && labels
                        .iter()
                        .all(|(k, v)| sample_labels.contains(&format!("{k}=\"{v}\"")))
            })
            .map(|(_, _, value)| value)
            .sum()
    }

    /// Postgres statements of query `name`.
    pub fn pg(&self, query: &str) -> u64 {
        self.count("halo_pg_queries_total", &[("query", query)])
    }

    /// Postgres statements since `before` that no request caused: the background work (the
    /// settings safety-net reload, the timer tick's statements, the event pump's reads and
    /// pruning) left out.
    pub fn pg_from_requests_since(&self, before: &MetricsText) -> u64 {
        const BACKGROUND: [&str; 7] = [
            "load_settings",
            "database_now",
            "expire_due",
            "unsettled_payments",
            "events_head",
            "events_after",
            "prune_events",
        ];
        let background: u64 = BACKGROUND.iter().map(|q| self.pg(q) - before.pg(q)).sum();
        self.pg_total() - before.pg_total() - background
    }

    /// Postgres statements of every name.
    pub fn pg_total(&self) -> u64 {
        self.count("halo_pg_queries_total", &[])
    }

    pub fn valkey(&self, op: &str) -> u64 {
        self.count("halo_valkey_round_trips_total", &[("op", op)])
    }

    /// Valkey round trips of every operation but the watcher's background probe
    /// (`is_seeded`): what requests sent.
    pub fn valkey_from_requests(&self) -> u64 {
        self.count("halo_valkey_round_trips_total", &[]) - self.valkey("is_seeded")
    }

    /// 1 while the instance's mirror health is `state`.
    pub fn mirror_state_is(&self, state: &str) -> bool {
        self.count("halo_mirror_state", &[("state", state)]) == 1
    }

    pub fn fallbacks(&self, op: &str) -> u64 {
        self.count("halo_valkey_fallbacks_total", &[("op", op)])
    }

    pub fn write_failures(&self, op: &str) -> u64 {
        self.count("halo_mirror_write_failures_total", &[("op", op)])
    }

    pub fn seeds(&self, reason: &str) -> u64 {
        self.count("halo_mirror_seeds_total", &[("reason", reason)])
    }

    pub fn sweeps(&self, sweep: &str, outcome: &str) -> u64 {
        self.count(
            "halo_sweep_runs_total",
            &[("sweep", sweep), ("outcome", outcome)],
        )
    }

    pub fn beacon_recomputes(&self) -> u64 {
        self.count("halo_beacon_recomputes_total", &[])
    }

    fn count(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        // Counters are whole numbers.
        self.sum(name, labels) as u64
    }
}

/// `name{labels} value` → (name, "labels", value).
fn parse_line(line: &str) -> Option<(&str, &str, f64)> {
    let (head, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    match head.split_once('{') {
        Some((name, labels)) => Some((name, labels.trim_end_matches('}'), value)),
        None => Some((head, "", value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_matching_samples() {
        let text = MetricsText(
            "# HELP x\nhalo_pg_queries_total{query=\"set_online\"} 2\n\
             halo_pg_queries_total{query=\"ping\"} 5\nhalo_beacon_recomputes_total 3\n"
                .to_owned(),
        );
        assert_eq!(text.pg("set_online"), 2);
        assert_eq!(text.pg("other"), 0);
        assert_eq!(text.pg_total(), 7);
        assert_eq!(text.beacon_recomputes(), 3);
    }
}
