//! `bench-stores`: how the store-bound operations grow with the number of online mitras.
//!
//! For each size (default 1k, 10k, 100k) it creates a fresh database on the given (loopback,
//! throwaway) Postgres, migrates it, inserts that many online mitras with fresh heartbeats in
//! one `generate_series` statement, and against the given Valkey (a key prefix per size) times:
//! the seed (`seed_from_postgres`: cold on an empty mirror, then reseeds, then reseeds while
//! mitras toggle at `--transitions-per-second`, which a seed must survive), `find_available_mitras`
//! (median and p90, with Valkey round trips and Postgres queries per call from the metrics
//! counters), and the heartbeat mirror (the one `UNNEST` statement, and the whole sweep tick).
//! Used by `scripts/bench.sh`; the databases it creates are dropped again.
//!
//! `--mode offers` times an offer round instead (see `offers`; `scripts/bench-offer.sh`).

mod offers;

use clap::Parser;
use halo_config::is_loopback_url;
use halo_core::{Availability, AvailabilityStores, SeedReason, SettingsCache};
use halo_metrics::Metrics;
use halo_ports::{AvailabilityTruth, MirrorMaintenance, SettingsStore, SystemClock};
use halo_postgres::{PgTruth, Pool, PoolSettings};
use halo_valkey::{Keys, ValkeyMirror, ValkeySettings};
use serde::Serialize;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(
    name = "bench-stores",
    version = halo_build_info::LONG_VERSION,
    about = "Store benchmarks at growing mitra counts"
)]
struct Args {
    /// Admin URL of a throwaway loopback Postgres (database `postgres`; no query string).
    #[arg(long)]
    admin_url: String,
    /// A throwaway loopback Valkey.
    #[arg(long)]
    valkey_url: String,
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    sizes: Vec<u32>,
    /// Timed runs of find_available_mitras per size.
    #[arg(long, default_value_t = 15)]
    find_runs: usize,
    /// Timed reseeds and heartbeat-mirror statements per size.
    #[arg(long, default_value_t = 3)]
    repeat_runs: usize,
    /// Toggles per second (offline, then online again) while the reseeds under load run.
    #[arg(long, default_value_t = 20.0)]
    transitions_per_second: f64,
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// `stores` (seed, find_available_mitras, heartbeat mirror) or `offers` (one offer round).
    #[arg(long, value_enum, default_value_t = Mode::Stores)]
    mode: Mode,
    /// Timed offer rounds per size and store (`--mode offers`).
    #[arg(long, default_value_t = 50)]
    offer_runs: usize,
    /// Names of the databases it creates: `<prefix>_<size>` (`<prefix>_offers_<size>`).
    #[arg(long, default_value = "halo_bench")]
    db_prefix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    Stores,
    Offers,
}

#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error("{0} must be a loopback URL")]
    NotLoopback(&'static str),
    #[error("admin URL must end in /<database>")]
    AdminUrl,
    #[error("postgres pool: {0}")]
    Pool(#[from] halo_postgres::PoolError),
    #[error("postgres: {0}")]
    Postgres(String),
    #[error("migrations: {0}")]
    Migrate(#[from] halo_postgres::MigrateError),
    #[error("valkey: {0}")]
    Valkey(#[from] halo_ports::MirrorError),
    #[error("valkey: {0}")]
    ValkeyConnect(#[from] halo_valkey::ConnectError),
    #[error("postgres truth: {0}")]
    Truth(#[from] halo_ports::TruthError),
    #[error("seed: {0}")]
    Seed(#[from] halo_core::SeedError),
    #[error("use case: {0}")]
    UseCase(#[from] halo_core::AvailabilityError),
    #[error("cannot write the JSON: {0}")]
    Io(#[from] std::io::Error),
    #[error("expected {expected} available mitras, found {found}")]
    Mismatch { expected: usize, found: usize },
    #[error("store counters: {0}")]
    Stats(String),
    #[error("the stores disagree on the offer round: {mirror} from the mirror, {postgres} from postgres, or another order")]
    OrderMismatch { mirror: usize, postgres: usize },
}

/// The figures for one size.
#[derive(Debug, Serialize)]
struct SizeResult {
    mitras: u32,
    seed_cold_ms: f64,
    seed_median_ms: f64,
    /// Reseeds while mitras toggle: every one must complete (the seed is never refused by a
    /// concurrent write), in about the time of a quiet one.
    seed_under_writes_median_ms: f64,
    seed_under_writes_max_ms: f64,
    writes_during_seeds: u64,
    find_median_ms: f64,
    find_p90_ms: f64,
    find_valkey_round_trips_per_call: f64,
    find_pg_queries_per_call: f64,
    heartbeat_mirror_statement_ms: f64,
    heartbeat_mirror_statements_per_tick: f64,
    heartbeat_mirror_tick_ms: f64,
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The value at quantile `q` of the samples (sorted in place).
pub(crate) fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    let last = samples.len().saturating_sub(1);
    let index = ((last as f64) * q).round() as usize;
    samples.get(index.min(last)).copied().unwrap_or_default()
}

fn pool(url: &str) -> Result<Pool, BenchError> {
    Ok(halo_postgres::connect_pool(
        url,
        &PoolSettings {
            max_size: 4,
            timeout: Duration::from_secs(120),
        },
    )?)
}

pub(crate) async fn batch(pool: &Pool, sql: &str) -> Result<(), BenchError> {
    let client = pool
        .get()
        .await
        .map_err(|e| BenchError::Postgres(e.to_string()))?;
    client
        .batch_execute(sql)
        .await
        .map_err(|e| BenchError::Postgres(e.to_string()))
}

/// A fresh, migrated database `name` with `n` online mitras whose heartbeats are fresh.
pub(crate) async fn fresh_database(
    admin: &Pool,
    admin_url: &str,
    name: &str,
    n: u32,
) -> Result<Pool, BenchError> {
    batch(
        admin,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .await?;
    batch(admin, &format!("CREATE DATABASE {name}")).await?;
    let (base, _) = admin_url.rsplit_once('/').ok_or(BenchError::AdminUrl)?;
    let pool = pool(&format!("{base}/{name}"))?;
    halo_postgres::migrate(&pool).await?;
    batch(
        &pool,
        &format!(
            "INSERT INTO mitras (phone, display_name) \
               SELECT '+6291' || lpad(g::text, 9, '0'), 'bench ' || g FROM generate_series(1, {n}) g; \
             UPDATE mitra_online_status SET is_online = true, last_heartbeat_at = now(); \
             ANALYZE;"
        ),
    )
    .await?;
    Ok(pool)
}

pub(crate) async fn availability(
    pool: Pool,
    valkey_url: &str,
    key_prefix: &str,
    metrics: &Metrics,
) -> Result<Bench, BenchError> {
    let settings = ValkeySettings {
        url: valkey_url.to_owned(),
        key_prefix: key_prefix.to_owned(),
        // Seeding 100k mitras moves megabytes in one script call: give it room.
        timeout: Duration::from_secs(30),
        ..Default::default()
    };
    let (_client, connection) = halo_valkey::connect(&settings)?;
    let mirror = Arc::new(ValkeyMirror::new(
        connection,
        Keys::new(settings.key_prefix.clone()),
        settings.timeout,
        metrics.clone(),
    ));
    let truth = Arc::new(PgTruth::new(pool, metrics.clone()));
    let cache = SettingsCache::new(truth.load_settings().await?);
    let stores = AvailabilityStores {
        truth: truth.clone(),
        settings: truth.clone(),
        mirror: mirror.clone(),
        clock: Arc::new(SystemClock),
    };
    Ok(Bench {
        av: Arc::new(Availability::new(stores, cache, metrics.clone())),
        mirror,
        truth,
    })
}

/// The use cases, and the stores under them for the steps that time one store call.
pub(crate) struct Bench {
    pub av: Arc<Availability>,
    pub mirror: Arc<ValkeyMirror>,
    pub truth: Arc<PgTruth>,
}

/// `runs` reseeds while a task toggles mitras (offline, then online again) at `rate` per second
/// through the same use cases the services run; the seeds' times and the toggles that landed.
async fn seeds_under_writes(
    av: &Arc<Availability>,
    runs: usize,
    rate: f64,
) -> Result<(Vec<Duration>, u64), BenchError> {
    let ids: Vec<_> = av
        .find_available_mitras()
        .await?
        .into_iter()
        .take(1000)
        .collect();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let writer = {
        let av = av.clone();
        tokio::spawn(async move {
            // Two transitions per tick: one mitra offline and online again, so every mitra is
            // online when the writer stops.
            let period = Duration::from_secs_f64(2.0 / rate.max(0.1));
            let mut tick = tokio::time::interval(period);
            let mut done = 0u64;
            for id in ids.iter().cycle() {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                let offline = av.set_offline(*id, halo_ports::OnlineReason::Manual).await;
                let online = av.set_online(*id).await;
                done += u64::from(offline.is_ok()) + u64::from(online.is_ok());
            }
            done
        })
    };
    let mut seeds = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        av.seed_from_postgres(SeedReason::Operator).await?;
        seeds.push(started.elapsed());
    }
    let _ = stop.send(true);
    let writes = writer.await.unwrap_or(0);
    Ok((seeds, writes))
}

async fn bench_size(args: &Args, admin: &Pool, n: u32) -> Result<SizeResult, BenchError> {
    eprintln!("bench-stores: {n} mitras: preparing the database");
    let name = format!("{}_{n}", args.db_prefix);
    let pool = fresh_database(admin, &args.admin_url, &name, n).await?;
    let metrics = Metrics::new();
    let prefix = format!("bench{n}:");
    let Bench { av, mirror, truth } =
        availability(pool.clone(), &args.valkey_url, &prefix, &metrics).await?;

    eprintln!("bench-stores: {n} mitras: seed");
    let started = Instant::now();
    av.seed_from_postgres(SeedReason::Operator).await?;
    let seed_cold = started.elapsed();
    let mut reseeds = Vec::new();
    for _ in 0..args.repeat_runs {
        let started = Instant::now();
        av.seed_from_postgres(SeedReason::Operator).await?;
        reseeds.push(started.elapsed());
    }
    eprintln!(
        "bench-stores: {n} mitras: reseeds under {} transitions/s",
        args.transitions_per_second
    );
    let (mut loaded, writes) =
        seeds_under_writes(&av, args.repeat_runs, args.transitions_per_second).await?;

    eprintln!("bench-stores: {n} mitras: find_available_mitras");
    let found = av.find_available_mitras().await?.len(); // warm-up
    if found != n as usize {
        return Err(BenchError::Mismatch {
            expected: n as usize,
            found,
        });
    }
    let (rt0, pg0) = (
        metrics.valkey_round_trips_total(),
        metrics.pg_queries_total(),
    );
    let mut finds = Vec::new();
    for _ in 0..args.find_runs {
        let started = Instant::now();
        av.find_available_mitras().await?;
        finds.push(started.elapsed());
    }
    let runs = args.find_runs.max(1) as f64;
    let round_trips = (metrics.valkey_round_trips_total() - rt0) as f64 / runs;
    let pg_queries = (metrics.pg_queries_total() - pg0) as f64 / runs;

    eprintln!("bench-stores: {n} mitras: heartbeat mirror");
    let beats: Vec<_> = mirror
        .online_heartbeats()
        .await?
        .into_iter()
        .filter_map(|(id, at)| at.map(|at| (id, at)))
        .collect();
    let pg0 = metrics.pg_queries_total();
    let mut statements = Vec::new();
    for _ in 0..args.repeat_runs {
        let started = Instant::now();
        truth.record_heartbeats(&beats).await?;
        statements.push(started.elapsed());
    }
    let per_tick = (metrics.pg_queries_total() - pg0) as f64 / args.repeat_runs.max(1) as f64;
    let started = Instant::now();
    av.heartbeat_mirror_tick(None).await;
    let tick = started.elapsed();

    drop((av, mirror, truth));
    drop(pool);
    batch(
        admin,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .await?;
    Ok(SizeResult {
        mitras: n,
        seed_cold_ms: ms(seed_cold),
        seed_median_ms: ms(quantile(&mut reseeds, 0.5)),
        seed_under_writes_median_ms: ms(quantile(&mut loaded, 0.5)),
        seed_under_writes_max_ms: ms(quantile(&mut loaded, 1.0)),
        writes_during_seeds: writes,
        find_median_ms: ms(quantile(&mut finds, 0.5)),
        find_p90_ms: ms(quantile(&mut finds, 0.9)),
        find_valkey_round_trips_per_call: round_trips,
        find_pg_queries_per_call: pg_queries,
        heartbeat_mirror_statement_ms: ms(quantile(&mut statements, 0.5)),
        heartbeat_mirror_statements_per_tick: per_tick,
        heartbeat_mirror_tick_ms: ms(tick),
    })
}

async fn run(args: Args) -> Result<(), BenchError> {
    if !is_loopback_url(&args.admin_url) {
        return Err(BenchError::NotLoopback("--admin-url"));
    }
    if !is_loopback_url(&args.valkey_url) {
        return Err(BenchError::NotLoopback("--valkey-url"));
    }
    let admin = pool(&args.admin_url)?;
    if args.mode == Mode::Offers {
        let results = offers::offer_sizes(
            &admin,
            &args.admin_url,
            &args.valkey_url,
            &args.db_prefix,
            &args.sizes,
            args.offer_runs,
        )
        .await?;
        offers::print(&results);
        return write_json(args.json.as_deref(), &results);
    }
    let mut results = Vec::new();
    for &n in &args.sizes {
        results.push(bench_size(&args, &admin, n).await?);
    }
    println!(
        "{:>8} {:>10} {:>10} {:>12} {:>10} {:>10} {:>8} {:>8} {:>10} {:>10}",
        "mitras",
        "seed cold",
        "reseed",
        "under writes",
        "find p50",
        "find p90",
        "vk rt",
        "pg q",
        "hb stmt",
        "hb tick"
    );
    for r in &results {
        println!(
            "{:>8} {:>8.1}ms {:>8.1}ms {:>10.1}ms {:>8.2}ms {:>8.2}ms {:>8.1} {:>8.1} {:>8.1}ms {:>8.1}ms",
            r.mitras,
            r.seed_cold_ms,
            r.seed_median_ms,
            r.seed_under_writes_median_ms,
            r.find_median_ms,
            r.find_p90_ms,
            r.find_valkey_round_trips_per_call,
            r.find_pg_queries_per_call,
            r.heartbeat_mirror_statement_ms,
            r.heartbeat_mirror_tick_ms
        );
    }
    write_json(args.json.as_deref(), &results)
}

fn write_json(path: Option<&std::path::Path>, results: &impl Serialize) -> Result<(), BenchError> {
    if let Some(path) = path {
        let json = serde_json::to_string_pretty(results)
            .map_err(|e| BenchError::Io(std::io::Error::other(e)))?;
        std::fs::write(path, json)?;
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench-stores: {error}");
            ExitCode::FAILURE
        }
    }
}
