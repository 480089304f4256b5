//! `--mode offers`: what one offer round costs (SPEC §12.5) at each fleet size, with
//! `blast_max_recipients` as the round's limit. Per size a fresh database holds `n` online
//! mitras shaped like a working fleet (idle since any time in the last eight hours; a tenth
//! dead apps with stale heartbeats the sweep has not taken offline yet; a fifth busy with a
//! session, a thirtieth at capacity), the mirror seeded from it, the dead apps' heartbeats
//! made stale in the mirror too. Then `offer_candidates` is timed through the use case
//! (mirror), and the Postgres fallback statement through the truth port, each for a first
//! round and for a second one that excludes the first round's mitras (they are idle the
//! longest, so the walk passes over them), in passes over every size in turn. The Valkey work comes from `INFO commandstats`
//! (the commands the server ran and their server time), the Postgres work from
//! `pg_stat_statements` (execution time and buffers of the statement). Both stores must
//! answer the same mitras in the same order, or the bench fails.

use crate::{availability, batch, fresh_database, ms, quantile, Bench, BenchError};
use halo_domain::{stale_cutoff, MitraId};
use halo_metrics::Metrics;
use halo_ports::{AvailabilityTruth, MirrorHotPath};
use halo_postgres::Pool;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The pause between a seed and the timed rounds.
const SETTLE: Duration = Duration::from_secs(2);

/// One round's figures at one size.
#[derive(Debug, Clone, Serialize)]
pub struct RoundCost {
    pub excluded: usize,
    pub found: usize,
    pub mirror_median_ms: f64,
    pub mirror_p90_ms: f64,
    /// Round trips of the walk per round (the instance's own counter).
    pub valkey_round_trips_per_call: f64,
    /// Every command the server ran per round (a script's own commands included, the
    /// `MULTI`/`EXEC` framing of a pipeline not).
    pub valkey_commands_per_call: f64,
    /// Server time of a round, the median (`INFO commandstats` `usec`, read around each).
    pub valkey_server_us_per_call: f64,
    pub postgres_median_ms: f64,
    pub postgres_p90_ms: f64,
    /// `pg_stat_statements`: execution time of the fallback statement per round.
    pub postgres_exec_ms_per_call: f64,
    /// Shared buffers the statement touched per round (hit + read).
    pub postgres_blocks_per_call: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct OfferResult {
    pub mitras: u32,
    pub limit: usize,
    pub first_round: RoundCost,
    pub second_round: RoundCost,
}

/// The working fleet described in the module doc.
async fn shape_fleet(pool: &Pool) -> Result<(), BenchError> {
    batch(
        pool,
        "UPDATE mitra_online_status
            SET idle_rank = floor(extract(epoch FROM now()) * 1000)::float8
                            - floor(random() * 8 * 3600 * 1000) + random() * 0.99;
         UPDATE mitra_online_status SET last_heartbeat_at = now() - interval '10 minutes'
          WHERE random() < 0.1;
         INSERT INTO customers (phone) VALUES ('+6290000000001');
         WITH busy AS (
             SELECT mitra_id, CASE WHEN random() < 0.15 THEN 3 ELSE 1 END AS sessions
               FROM mitra_online_status WHERE random() < 0.2)
         INSERT INTO chat_sessions (customer_id, mitra_id, status, minutes, accepted_at, ends_at)
         SELECT (SELECT id FROM customers LIMIT 1), b.mitra_id, 'active', 30,
                now() - random() * interval '20 minutes', now() + interval '10 minutes'
           FROM busy b, generate_series(1, b.sessions);
         UPDATE mitra_online_status s
            SET idle_rank = floor(extract(epoch FROM a.at) * 1000)::float8 + random() * 0.99
           FROM (SELECT mitra_id, max(accepted_at) AS at FROM chat_sessions GROUP BY mitra_id) a
          WHERE s.mitra_id = a.mitra_id;
         CREATE EXTENSION IF NOT EXISTS pg_stat_statements;",
    )
    .await?;
    // Not left to autovacuum, which would run during the measurement (the updates above leave a
    // dead version of every row).
    batch(pool, "VACUUM ANALYZE").await
}

/// The mitras whose Postgres heartbeat is stale (the dead apps).
async fn dead_apps(pool: &Pool) -> Result<Vec<(MitraId, time::OffsetDateTime)>, BenchError> {
    let client = pool
        .get()
        .await
        .map_err(|e| BenchError::Postgres(e.to_string()))?;
    let rows = client
        .query(
            "SELECT mitra_id, last_heartbeat_at FROM mitra_online_status
              WHERE last_heartbeat_at < now() - interval '5 minutes'",
            &[],
        )
        .await
        .map_err(|e| BenchError::Postgres(e.to_string()))?;
    Ok(rows
        .iter()
        .map(|row| (MitraId::new(row.get(0)), row.get(1)))
        .collect())
}

/// `pg_stat_statements` of the fallback statement in this database: (calls, exec ms, blocks).
async fn fallback_statement(pool: &Pool) -> Result<(f64, f64, f64), BenchError> {
    let client = pool
        .get()
        .await
        .map_err(|e| BenchError::Postgres(e.to_string()))?;
    let row = client
        .query_one(
            "SELECT coalesce(sum(calls), 0)::float8, coalesce(sum(total_exec_time), 0)::float8,
                    coalesce(sum(shared_blks_hit + shared_blks_read), 0)::float8
               FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
              WHERE d.datname = current_database() AND s.query LIKE '%ORDER BY s.idle_rank%'",
            &[],
        )
        .await
        .map_err(|e| BenchError::Postgres(e.to_string()))?;
    Ok((row.get(0), row.get(1), row.get(2)))
}

/// `INFO commandstats`: command -> (calls, usec).
async fn commandstats(
    valkey: &mut redis::aio::MultiplexedConnection,
) -> Result<BTreeMap<String, (f64, f64)>, BenchError> {
    let text: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(valkey)
        .await
        .map_err(|e| BenchError::Stats(e.to_string()))?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let (name, fields) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let field = |key: &str| {
                fields
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                    .and_then(|v| v.parse::<f64>().ok())
            };
            Some((name.to_owned(), (field("calls")?, field("usec")?)))
        })
        .collect())
}

/// (commands, server usec) between two `commandstats` reads. Left out: `INFO` itself, and
/// `MULTI`/`EXEC`, the framing of an atomic pipeline (`EXEC`'s time is that of the commands it
/// ran, which are counted themselves). A script's `usec` includes the commands it ran, so when
/// scripts ran only theirs is summed.
fn valkey_work(
    before: &BTreeMap<String, (f64, f64)>,
    after: &BTreeMap<String, (f64, f64)>,
) -> (f64, f64) {
    let (mut commands, mut all_usec, mut script_usec, mut scripts) = (0.0, 0.0, 0.0, 0.0);
    for (name, (calls, us)) in after {
        let (calls0, us0) = before.get(name).copied().unwrap_or_default();
        if matches!(name.as_str(), "info" | "multi" | "exec") {
            continue;
        }
        commands += calls - calls0;
        all_usec += us - us0;
        if name.starts_with("eval") {
            scripts += calls - calls0;
            script_usec += us - us0;
        }
    }
    (commands, if scripts > 0.0 { script_usec } else { all_usec })
}

/// Passes over the sizes: each times a share of the rounds at every size in turn (the order
/// reversed every second pass), so a busy spell of the shared machine hits the sizes alike.
const PASSES: usize = 4;

/// One round's samples at one size, gathered over the passes.
#[derive(Default)]
struct Samples {
    excluded: usize,
    found: usize,
    runs: usize,
    mirror: Vec<Duration>,
    server: Vec<Duration>,
    commands: f64,
    round_trips: u64,
    postgres: Vec<Duration>,
    statements: f64,
    exec_ms: f64,
    blocks: f64,
}

impl Samples {
    fn cost(mut self) -> RoundCost {
        let runs = self.runs.max(1) as f64;
        let statements = self.statements.max(1.0);
        RoundCost {
            excluded: self.excluded,
            found: self.found,
            mirror_median_ms: ms(quantile(&mut self.mirror, 0.5)),
            mirror_p90_ms: ms(quantile(&mut self.mirror, 0.9)),
            valkey_round_trips_per_call: self.round_trips as f64 / runs,
            valkey_commands_per_call: self.commands / runs,
            valkey_server_us_per_call: ms(quantile(&mut self.server, 0.5)) * 1000.0,
            postgres_median_ms: ms(quantile(&mut self.postgres, 0.5)),
            postgres_p90_ms: ms(quantile(&mut self.postgres, 0.9)),
            postgres_exec_ms_per_call: self.exec_ms / statements,
            postgres_blocks_per_call: self.blocks / statements,
        }
    }
}

/// One size, set up: its database, mirror prefix and instance, and the rounds' samples.
struct Fleet {
    n: u32,
    name: String,
    pool: Pool,
    metrics: Metrics,
    bench: Bench,
    valkey: redis::aio::MultiplexedConnection,
    limit: usize,
    /// The first round's mitras: the second round excludes them.
    offered: BTreeSet<MitraId>,
    first: Samples,
    second: Samples,
}

impl Fleet {
    async fn prepare(
        admin: &Pool,
        admin_url: &str,
        valkey_url: &str,
        db_prefix: &str,
        n: u32,
    ) -> Result<Self, BenchError> {
        let name = format!("{db_prefix}_offers_{n}");
        eprintln!("bench-stores: offers at {n} mitras: preparing {name}");
        let pool = fresh_database(admin, admin_url, &name, n).await?;
        shape_fleet(&pool).await?;
        let metrics = Metrics::new();
        let prefix = format!("offers{n}:");
        let bench = availability(pool.clone(), valkey_url, &prefix, &metrics).await?;
        bench
            .av
            .seed_from_postgres(halo_core::SeedReason::Operator)
            .await?;
        for (id, at) in dead_apps(&pool).await? {
            bench.mirror.heartbeat(id, at).await?;
        }
        let client =
            redis::Client::open(valkey_url).map_err(|e| BenchError::Stats(e.to_string()))?;
        let valkey = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| BenchError::Stats(e.to_string()))?;
        let limit =
            usize::try_from(bench.av.settings().get().blast_max_recipients()).unwrap_or(usize::MAX);
        let offered = bench
            .av
            .offer_candidates(limit, &BTreeSet::new())
            .await?
            .into_iter()
            .collect();
        Ok(Self {
            n,
            name,
            pool,
            metrics,
            bench,
            valkey,
            limit,
            offered,
            first: Samples::default(),
            second: Samples::default(),
        })
    }

    /// Live mitras' heartbeats fresh again in both stores (the dead apps' stay stale), so
    /// the rounds find what the fleet was shaped with however long the bench has run.
    async fn refresh(&self) -> Result<(), BenchError> {
        batch(
            &self.pool,
            "UPDATE mitra_online_status SET last_heartbeat_at = now()
              WHERE last_heartbeat_at > now() - interval '5 minutes'",
        )
        .await?;
        // The update left a dead version of most rows, which the first walks would visit
        // (until pruned): the rounds measure the statement, not that moment.
        batch(&self.pool, "VACUUM mitra_online_status").await?;
        self.bench
            .av
            .seed_from_postgres(halo_core::SeedReason::Operator)
            .await?;
        // The seed replaced sets of `n` members: let the server free the old ones (in the
        // background) before the timed rounds, as it has long done between two seeds.
        tokio::time::sleep(SETTLE).await;
        Ok(())
    }

    /// `runs` timed rounds on each store, the second round's when `second`.
    async fn measure(&mut self, second: bool, runs: usize) -> Result<(), BenchError> {
        self.refresh().await?;
        let exclude = if second {
            self.offered.clone()
        } else {
            BTreeSet::new()
        };
        let (av, truth, limit) = (&self.bench.av, &self.bench.truth, self.limit);
        let samples = if second {
            &mut self.second
        } else {
            &mut self.first
        };
        let from_mirror = av.offer_candidates(limit, &exclude).await?; // warm-up
        let trips = self.metrics.valkey_round_trips("offer_candidates");
        for _ in 0..runs {
            // The server's counters around each round on its own: a median, not a mean that one
            // descheduled command (the machine is shared) would dominate.
            let before = commandstats(&mut self.valkey).await?;
            let started = Instant::now();
            av.offer_candidates(limit, &exclude).await?;
            samples.mirror.push(started.elapsed());
            let after = commandstats(&mut self.valkey).await?;
            let (ran, usec) = valkey_work(&before, &after);
            samples.commands += ran;
            samples.server.push(Duration::from_secs_f64(usec / 1e6));
        }
        samples.round_trips += self.metrics.valkey_round_trips("offer_candidates") - trips;

        let rules = av.settings().get().availability_rules();
        let fresh_since = stale_cutoff(time::OffsetDateTime::now_utc(), rules.stale_after);
        let from_postgres: Vec<MitraId> = truth
            .offer_candidates(limit, &exclude, fresh_since, rules.max_customers)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        if from_postgres != from_mirror {
            return Err(BenchError::OrderMismatch {
                mirror: from_mirror.len(),
                postgres: from_postgres.len(),
            });
        }
        let (calls0, exec0, blocks0) = fallback_statement(&self.pool).await?;
        for _ in 0..runs {
            let started = Instant::now();
            truth
                .offer_candidates(limit, &exclude, fresh_since, rules.max_customers)
                .await?;
            samples.postgres.push(started.elapsed());
        }
        let (calls1, exec1, blocks1) = fallback_statement(&self.pool).await?;
        samples.statements += calls1 - calls0;
        samples.exec_ms += exec1 - exec0;
        samples.blocks += blocks1 - blocks0;
        samples.runs += runs;
        samples.excluded = exclude.len();
        samples.found = from_mirror.len();
        Ok(())
    }

    /// The figures, and the database dropped.
    async fn finish(self, admin: &Pool) -> Result<OfferResult, BenchError> {
        let result = OfferResult {
            mitras: self.n,
            limit: self.limit,
            first_round: self.first.cost(),
            second_round: self.second.cost(),
        };
        let name = self.name;
        drop(self.bench);
        drop(self.pool);
        // Let the pool's connections close before the drop (FORCE ends any left).
        tokio::time::sleep(Duration::from_millis(100)).await;
        batch(
            admin,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .await?;
        Ok(result)
    }
}

/// Every size set up first, then `PASSES` passes over them, then the figures.
pub async fn offer_sizes(
    admin: &Pool,
    admin_url: &str,
    valkey_url: &str,
    db_prefix: &str,
    sizes: &[u32],
    runs: usize,
) -> Result<Vec<OfferResult>, BenchError> {
    let mut fleets = Vec::new();
    for &n in sizes {
        fleets.push(Fleet::prepare(admin, admin_url, valkey_url, db_prefix, n).await?);
    }
    let per_pass = runs.div_ceil(PASSES).max(1);
    for pass in 0..PASSES {
        eprintln!("bench-stores: offers: pass {} of {PASSES}", pass + 1);
        let mut order: Vec<&mut Fleet> = fleets.iter_mut().collect();
        if pass % 2 == 1 {
            order.reverse();
        }
        for fleet in order {
            fleet.measure(false, per_pass).await?;
            fleet.measure(true, per_pass).await?;
        }
    }
    let mut results = Vec::new();
    for fleet in fleets {
        results.push(fleet.finish(admin).await?);
    }
    Ok(results)
}

fn ratio(last: f64, first: f64) -> f64 {
    if first > 0.0 {
        last / first
    } else {
        0.0
    }
}

/// The table, one line per size and round, then the largest size over the smallest.
pub fn print(results: &[OfferResult]) {
    println!(
        "{:>8} {:>6} {:>5} {:>9} {:>9} {:>8} {:>9} {:>10} {:>9} {:>9} {:>10} {:>9}",
        "mitras",
        "round",
        "found",
        "vk p50",
        "vk p90",
        "vk trips",
        "vk cmds",
        "vk srv µs",
        "pg p50",
        "pg p90",
        "pg exec",
        "pg blks"
    );
    let rows = |r: &OfferResult| {
        [
            ("first", r.first_round.clone()),
            ("second", r.second_round.clone()),
        ]
    };
    for r in results {
        for (label, c) in rows(r) {
            println!(
                "{:>8} {:>6} {:>5} {:>7.2}ms {:>7.2}ms {:>8.1} {:>9.1} {:>10.1} {:>7.2}ms {:>7.2}ms {:>8.3}ms {:>9.1}",
                r.mitras,
                label,
                c.found,
                c.mirror_median_ms,
                c.mirror_p90_ms,
                c.valkey_round_trips_per_call,
                c.valkey_commands_per_call,
                c.valkey_server_us_per_call,
                c.postgres_median_ms,
                c.postgres_p90_ms,
                c.postgres_exec_ms_per_call,
                c.postgres_blocks_per_call
            );
        }
    }
    let (Some(small), Some(big)) = (results.first(), results.last()) else {
        return;
    };
    if results.len() < 2 {
        return;
    }
    for ((label, a), (_, z)) in rows(small).into_iter().zip(rows(big)) {
        println!(
            "{}/{} {label} round: vk p50 ×{:.2}, vk cmds ×{:.2}, vk server µs ×{:.2}, pg p50 ×{:.2}, pg exec ×{:.2}, pg blocks ×{:.2}",
            big.mitras,
            small.mitras,
            ratio(z.mirror_median_ms, a.mirror_median_ms),
            ratio(z.valkey_commands_per_call, a.valkey_commands_per_call),
            ratio(z.valkey_server_us_per_call, a.valkey_server_us_per_call),
            ratio(z.postgres_median_ms, a.postgres_median_ms),
            ratio(z.postgres_exec_ms_per_call, a.postgres_exec_ms_per_call),
            ratio(z.postgres_blocks_per_call, a.postgres_blocks_per_call),
        );
    }
}
