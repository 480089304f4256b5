//! The stores' own counts, read before and after the measured window: Postgres statements from
//! `pg_stat_statements`, Valkey `INFO commandstats`, and the service's `/metrics` counters
//! (Postgres queries by name, Valkey round trips by operation, beacon recomputes). The store
//! counts see everything in the window, background sweeps and timers included; in the
//! single-route modes that makes them the per-request-type cost.

use crate::api::Api;
use halo_config::is_loopback_url;
use serde::Serialize;
use std::collections::BTreeMap;
use tokio_postgres::NoTls;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("valkey: {0}")]
    Valkey(#[from] redis::RedisError),
    #[error("{0} is not a loopback store URL")]
    NotLoopback(String),
}

/// One statement's counters (keyed by `queryid`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Statement {
    pub query: String,
    pub calls: u64,
    pub total_ms: f64,
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub postgres: Option<BTreeMap<i64, Statement>>,
    pub valkey: Option<BTreeMap<String, (u64, u64)>>,
    pub service: Option<BTreeMap<String, f64>>,
}

/// Where to read the counts from; each part is optional.
pub struct Sources {
    pub postgres: Option<tokio_postgres::Client>,
    pub valkey: Option<redis::aio::MultiplexedConnection>,
    pub api: Api,
}

impl Sources {
    pub async fn connect(pg_url: Option<&str>, valkey_url: Option<&str>, api: Api) -> Self {
        // A source that cannot be reached (Valkey stopped on purpose) is reported and skipped.
        let postgres = match pg_url {
            Some(url) => report_err(
                "postgres for pg_stat_statements",
                connect_postgres(url).await,
            ),
            None => None,
        };
        let valkey = match valkey_url {
            Some(url) => report_err("valkey for INFO commandstats", connect_valkey(url).await),
            None => None,
        };
        Self {
            postgres,
            valkey,
            api,
        }
    }

    pub async fn snapshot(&mut self) -> Snapshot {
        Snapshot {
            postgres: match &self.postgres {
                Some(client) => report_err("pg_stat_statements", statements(client).await),
                None => None,
            },
            valkey: match &mut self.valkey {
                Some(conn) => report_err("INFO commandstats", commandstats(conn).await),
                None => None,
            },
            service: self
                .api
                .metrics_text()
                .await
                .ok()
                .map(|text| service_counters(&text)),
        }
    }
}

fn report_err<T, E: std::fmt::Display>(what: &str, result: Result<T, E>) -> Option<T> {
    result
        .map_err(|e| eprintln!("warning: cannot read {what}: {e}"))
        .ok()
}

async fn connect_valkey(url: &str) -> Result<redis::aio::MultiplexedConnection, StoreError> {
    if !is_loopback_url(url) {
        return Err(StoreError::NotLoopback(url.to_owned()));
    }
    Ok(redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?)
}

async fn connect_postgres(url: &str) -> Result<tokio_postgres::Client, StoreError> {
    if !is_loopback_url(url) {
        return Err(StoreError::NotLoopback(url.to_owned()));
    }
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("warning: stats connection to postgres ended: {error}");
        }
    });
    // Needs the library preloaded (scripts/lib.sh does) and a superuser or pg_read_all_stats.
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await?;
    Ok(client)
}

/// This database's statements, except the ones this tool runs.
async fn statements(
    client: &tokio_postgres::Client,
) -> Result<BTreeMap<i64, Statement>, StoreError> {
    let rows = client
        .query(
            "SELECT queryid, query, calls, total_exec_time FROM pg_stat_statements s \
             JOIN pg_database d ON d.oid = s.dbid \
             WHERE d.datname = current_database() AND queryid IS NOT NULL \
               AND query NOT LIKE '%pg_stat_statements%'",
            &[],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let calls: i64 = row.get(2);
            let statement = Statement {
                query: row.get(1),
                calls: u64::try_from(calls).unwrap_or(0),
                total_ms: row.get(3),
            };
            (row.get::<_, i64>(0), statement)
        })
        .collect())
}

/// `cmdstat_<name>:calls=N,usec=N,...` → name → (calls, usec).
async fn commandstats(
    conn: &mut redis::aio::MultiplexedConnection,
) -> Result<BTreeMap<String, (u64, u64)>, StoreError> {
    let text: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    Ok(text.lines().filter_map(parse_cmdstat).collect())
}

fn parse_cmdstat(line: &str) -> Option<(String, (u64, u64))> {
    let (name, fields) = line.strip_prefix("cmdstat_")?.split_once(':')?;
    let field = |key: &str| {
        fields
            .split(',')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((name.to_owned(), (field("calls")?, field("usec")?)))
}

/// The counters of `/metrics` the report uses, keyed by their full series name.
fn service_counters(text: &str) -> BTreeMap<String, f64> {
    const WANTED: [&str; 6] = [
        "halo_pg_queries_total",
        "halo_valkey_round_trips_total",
        "halo_beacon_recomputes_total",
        "halo_valkey_fallbacks_total",
        "halo_mirror_write_failures_total",
        "halo_mirror_seeds_total",
    ];
    text.lines()
        .filter(|line| WANTED.iter().any(|w| line.starts_with(w)))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse::<f64>().ok()?))
        })
        .collect()
}

/// What changed between two snapshots.
#[derive(Debug, Default, Serialize)]
pub struct Delta {
    /// `None` when the source was not configured or could not be read.
    pub postgres_total_calls: Option<u64>,
    pub postgres_statements: Vec<Statement>,
    pub valkey_total_calls: Option<u64>,
    /// command → (calls, usec)
    pub valkey_commands: BTreeMap<String, (u64, u64)>,
    /// `/metrics` series → increase
    pub service: BTreeMap<String, f64>,
}

pub fn delta(before: &Snapshot, after: &Snapshot) -> Delta {
    let mut out = Delta::default();
    if let (Some(b), Some(a)) = (&before.postgres, &after.postgres) {
        let mut statements: Vec<Statement> = a
            .iter()
            .filter_map(|(id, s)| {
                let (calls0, ms0) = b.get(id).map_or((0, 0.0), |s| (s.calls, s.total_ms));
                let calls = s.calls.saturating_sub(calls0);
                (calls > 0).then(|| Statement {
                    query: s.query.split_whitespace().collect::<Vec<_>>().join(" "),
                    calls,
                    total_ms: s.total_ms - ms0,
                })
            })
            .collect();
        statements.sort_by_key(|s| std::cmp::Reverse(s.calls));
        out.postgres_total_calls = Some(statements.iter().map(|s| s.calls).sum());
        out.postgres_statements = statements;
    }
    if let (Some(b), Some(a)) = (&before.valkey, &after.valkey) {
        for (name, (calls, usec)) in a {
            let (c0, u0) = b.get(name).copied().unwrap_or_default();
            // INFO itself is this tool's own read.
            if *calls > c0 && name != "info" {
                out.valkey_commands
                    .insert(name.clone(), (calls - c0, usec.saturating_sub(u0)));
            }
        }
        out.valkey_total_calls = Some(out.valkey_commands.values().map(|(c, _)| c).sum());
    }
    if let (Some(b), Some(a)) = (&before.service, &after.service) {
        for (series, value) in a {
            let grown = value - b.get(series).copied().unwrap_or(0.0);
            if grown > 0.0 {
                out.service.insert(series.clone(), grown);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commandstats_lines() {
        let line = "cmdstat_evalsha:calls=12,usec=340,usec_per_call=28.33,rejected_calls=0";
        assert_eq!(parse_cmdstat(line), Some(("evalsha".to_owned(), (12, 340))));
        assert_eq!(parse_cmdstat("# Commandstats"), None);
    }

    #[test]
    fn keeps_only_the_wanted_service_series() {
        let text = "# HELP x\nhalo_pg_queries_total{query=\"set_online\"} 3\nhalo_http_requests_total{} 9\n";
        let counters = service_counters(text);
        assert_eq!(counters.len(), 1);
        assert_eq!(counters["halo_pg_queries_total{query=\"set_online\"}"], 3.0);
    }
}
