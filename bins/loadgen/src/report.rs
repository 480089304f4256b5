//! The end-of-run report: human text on stdout, the same facts as JSON for scripts.

use crate::stats::Summary;
use crate::stores::{delta, Delta, Snapshot};
use crate::Args;
use serde::Serialize;
use std::time::Duration;

#[derive(Serialize)]
pub struct Report {
    mode: String,
    mitras: usize,
    customers: usize,
    setup_s: f64,
    warmup_s: f64,
    at_start: Option<String>,
    concurrency: Option<usize>,
    threads: usize,
    summary: Summary,
    stores: Delta,
}

impl Report {
    pub fn new(
        args: &Args,
        setup: Duration,
        summary: Summary,
        before: &Snapshot,
        after: &Snapshot,
    ) -> Self {
        let mode = match args.flood {
            Some(route) => format!("flood {route:?}").to_lowercase(),
            None => format!(
                "mixed (heartbeat every {}s, beacon every {}s, {} blasts/s)",
                args.heartbeat_every, args.beacon_every, args.blast_rate
            ),
        };
        Self {
            mode,
            mitras: args.mitras,
            customers: args.customers,
            setup_s: setup.as_secs_f64(),
            warmup_s: args.warmup,
            at_start: args.at_start.clone(),
            concurrency: args.flood.map(|_| args.concurrency),
            threads: args.threads,
            summary,
            stores: delta(before, after),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    pub fn print(&self) {
        let s = &self.summary;
        println!("\n== loadgen: {} ==", self.mode);
        println!(
            "{} mitras, {} customers (setup {:.1}s); window {:.1}s: {} requests, {:.0}/s",
            self.mitras, self.customers, self.setup_s, s.window_s, s.count, s.rps
        );
        println!(
            "{:<14} {:>9} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "request", "count", "errors", "req/s", "p50 µs", "p90 µs", "p99 µs", "p99.9", "max µs"
        );
        for (kind, k) in &s.kinds {
            println!(
                "{kind:<14} {:>9} {:>7} {:>9.0} {:>8} {:>8} {:>8} {:>8} {:>8}",
                k.count, k.errors, k.rps, k.p50_us, k.p90_us, k.p99_us, k.p999_us, k.max_us
            );
        }
        if let (Some(first), Some(low), Some(high)) = (
            s.per_second.first(),
            s.per_second.iter().min(),
            s.per_second.iter().max(),
        ) {
            println!(
                "per second: {first} in the first; min {low}, max {high} over {} (the last may be partial)",
                s.per_second.len()
            );
        }
        if !s.errors.is_empty() {
            println!("errors by code:");
            for (key, n) in &s.errors {
                println!("  {key:<40} {n}");
            }
        }
        self.print_stores();
    }

    fn print_stores(&self) {
        let d = &self.stores;
        match d.postgres_total_calls {
            Some(total) => {
                println!("postgres statements in the window (pg_stat_statements): {total}");
                for st in d.postgres_statements.iter().take(12) {
                    let query: String = st.query.chars().take(90).collect();
                    println!("  {:>8} calls {:>9.1} ms  {query}", st.calls, st.total_ms);
                }
            }
            None => println!("postgres statements: not measured (no --pg-url)"),
        }
        match d.valkey_total_calls {
            Some(total) => {
                println!("valkey commands in the window (INFO commandstats): {total}");
                for (name, (calls, usec)) in &d.valkey_commands {
                    println!("  {calls:>8} {name:<12} {usec:>10} µs in server");
                }
            }
            None => println!("valkey commands: not measured (no --valkey-url)"),
        }
        if !d.service.is_empty() {
            println!("service counters (/metrics) in the window:");
            for (series, n) in &d.service {
                println!("  {n:>8} {series}");
            }
        }
    }
}
