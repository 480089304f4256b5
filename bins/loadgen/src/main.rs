//! `loadgen`: load for `public-api` over loopback HTTP.
//!
//! Logs in N mitras (OTP with the dev code, then online) and C customers, then for a set
//! duration (or request count) runs either the *mixed* load — every mitra heartbeats every H
//! seconds, every customer polls the beacon every P seconds, blasts at B per second each
//! followed by an accept — or a *flood* of one route by K closed-loop workers (the ceiling
//! measurements of `scripts/bench.sh`). Prints progress every second and a report:
//! throughput (whole window and per second), HDR latency percentiles, errors by code, and the
//! stores' own counts over the measured window. `--at-start` runs a command the instant the
//! window opens (the bench kills Valkey with it). Talks to loopback only, and always stops by
//! itself.
//!
//! On a 2-core machine the generator competes with the server for the CPU; it runs on one
//! runtime thread by default (`--threads`) so most of the machine stays with the server.

mod api;
mod report;
mod scenario;
mod sse;
mod stats;
mod stores;

use api::{loopback_url, Api, Login};
use clap::Parser;
use scenario::{Ctx, FloodRoute};
use stats::{Live, Recorder};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version = halo_build_info::LONG_VERSION,
    about = "Load generator for public-api (loopback only)"
)]
pub struct Args {
    /// public-api base URL; must be a loopback address.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    base_url: String,
    /// Mitras to log in and set online (they must exist in Postgres: phones +<mitra-phone-start + i>).
    #[arg(long, default_value_t = 100)]
    mitras: usize,
    #[arg(long, default_value_t = 628_100_000_000)]
    mitra_phone_start: u64,
    /// Customers to log in (created on first login).
    #[arg(long, default_value_t = 10)]
    customers: usize,
    #[arg(long, default_value_t = 628_200_000_000)]
    customer_phone_start: u64,
    /// The service's OTP_DEV_CODE.
    #[arg(long, default_value = "000000")]
    otp_code: String,
    #[arg(long, default_value_t = 32)]
    login_concurrency: usize,
    /// Flood one route in a closed loop instead of the mixed load.
    #[arg(long, value_enum)]
    flood: Option<FloodRoute>,
    /// Closed-loop workers of a flood.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Mixed load: seconds between a mitra's heartbeats (0 = none).
    #[arg(long, default_value_t = 30.0)]
    heartbeat_every: f64,
    /// Mixed load: seconds between a customer's beacon polls (0 = none).
    #[arg(long, default_value_t = 5.0)]
    beacon_every: f64,
    /// Mixed load: blasts per second (each followed by one accept and an end).
    #[arg(long, default_value_t = 0.0)]
    blast_rate: f64,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unrecorded seconds before measuring (connections, caches).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Shell command (`sh -c`) run and waited for when the measured window opens: with
    /// `--warmup 0` after the logins and before the first request, else at the end of the
    /// warm-up. A failing command stops the run. `scripts/bench.sh` uses it to SIGKILL Valkey
    /// at the instant a flood starts.
    #[arg(long, value_name = "COMMAND")]
    at_start: Option<String>,
    /// Stop after this many recorded requests (whichever comes first with --duration).
    #[arg(long)]
    requests: Option<u64>,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Runtime threads of the generator.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// The service's `/metrics` URL for counter deltas (loopback; default `<base-url>/metrics`;
    /// public-api serves them on its `METRICS_PORT`).
    #[arg(long)]
    metrics_url: Option<String>,
    /// Postgres URL for pg_stat_statements deltas (loopback; optional).
    #[arg(long)]
    pg_url: Option<String>,
    /// Valkey URL for INFO commandstats deltas (loopback; optional).
    #[arg(long)]
    valkey_url: Option<String>,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Instead of the load: every mitra holds an event stream and this many blasts (one after
    /// the other) measure the time to each recipient's `offer` (see `sse`).
    #[arg(long, default_value_t = 0)]
    sse_blasts: usize,
    /// Where the streams are opened, round-robin (comma-separated loopback base URLs; default
    /// the base URL).
    #[arg(long)]
    sse_base_urls: Option<String>,
    /// Seconds to keep the streams open after the blasts (to read the servers' RSS and idle
    /// CPU).
    #[arg(long, default_value_t = 0.0)]
    sse_hold: f64,
    /// A further phase of `--sse-blasts` (repeatable): this shell command (`sh -c`) is run and
    /// waited for first, then the blasts run again on the same streams.
    #[arg(long = "sse-phase", value_name = "COMMAND")]
    sse_phases: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    BaseUrl(#[from] api::BaseUrlError),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("login of {0} failed: {1}")]
    Login(String, api::ApiFailure),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot write the JSON report: {0}")]
    Json(#[from] std::io::Error),
    #[error("invalid argument: {0}")]
    Argument(&'static str),
    #[error("--at-start `{0}` failed: {1}")]
    AtStart(String, String),
    #[error(transparent)]
    Sse(#[from] sse::SseError),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(run(&args)),
        Err(error) => Err(RunError::Runtime(error)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("loadgen: {error}");
            ExitCode::FAILURE
        }
    }
}

fn check(args: &Args) -> Result<(), RunError> {
    let finite = |v: f64| v.is_finite() && v >= 0.0;
    if ![
        args.heartbeat_every,
        args.beacon_every,
        args.blast_rate,
        args.warmup,
    ]
    .into_iter()
    .all(finite)
    {
        return Err(RunError::Argument("rates and intervals must be ≥ 0"));
    }
    if !finite(args.duration) || args.duration <= 0.0 || args.duration > 3600.0 {
        return Err(RunError::Argument(
            "--duration must be in (0, 3600] seconds",
        ));
    }
    if !finite(args.timeout) || args.timeout <= 0.0 {
        return Err(RunError::Argument("--timeout must be > 0"));
    }
    Ok(())
}

async fn run(args: &Args) -> Result<(), RunError> {
    check(args)?;
    let base = loopback_url(&args.base_url)?;
    let mut api = Api::new(base, Duration::from_secs_f64(args.timeout))?;
    if let Some(url) = &args.metrics_url {
        api = api.with_metrics_url(loopback_url(url)?);
    }
    let mut sources = stores::Sources::connect(
        args.pg_url.as_deref(),
        args.valkey_url.as_deref(),
        api.clone(),
    )
    .await;

    let setup_started = Instant::now();
    let mitras = login_all(args, &api, "mitra", args.mitra_phone_start, args.mitras).await?;
    let customers = login_all(
        args,
        &api,
        "client",
        args.customer_phone_start,
        args.customers,
    )
    .await?;
    let setup = setup_started.elapsed();
    eprintln!(
        "logged in {} mitras (online) and {} customers in {:.1}s",
        mitras.len(),
        customers.len(),
        setup.as_secs_f64()
    );

    if args.sse_blasts > 0 {
        let settings = sse::Settings {
            bases: args.sse_base_urls.as_deref().unwrap_or(&args.base_url),
            blasts: args.sse_blasts,
            concurrency: args.login_concurrency,
            hold: Duration::from_secs_f64(args.sse_hold.max(0.0)),
            phases: &args.sse_phases,
        };
        return Ok(sse::measure(&api, &mitras, &customers, &settings).await?);
    }
    let (stop_tx, stop) = watch::channel(false);
    let warmup = Duration::from_secs_f64(args.warmup);
    // Without a warm-up the window opens when the command is done, before any request is sent.
    if warmup.is_zero() {
        at_start(args).await?;
    }
    let ctx = Ctx {
        api,
        live: Arc::new(Live::default()),
        measure_from: Instant::now() + warmup,
        stop,
    };
    let mut workers = JoinSet::new();
    spawn_workers(args, &ctx, &mut workers, &mitras, &customers);

    tokio::time::sleep_until(ctx.measure_from).await;
    if !warmup.is_zero() {
        at_start(args).await?;
    }
    let before = sources.snapshot().await;
    let window = supervise(args, &ctx, &stop_tx).await;
    let mut recorder = Recorder::default();
    while let Some(done) = workers.join_next().await {
        if let Ok(done) = done {
            recorder.merge(done);
        }
    }
    let after = sources.snapshot().await;

    let report = report::Report::new(args, setup, recorder.summary(window), &before, &after);
    report.print();
    if let Some(path) = &args.json {
        std::fs::write(path, report.to_json())?;
    }
    Ok(())
}

/// Runs `--at-start`, if given, and waits for it.
async fn at_start(args: &Args) -> Result<(), RunError> {
    let Some(command) = &args.at_start else {
        return Ok(());
    };
    eprintln!("at start: {command}");
    run_shell(command)
        .await
        .map_err(|why| RunError::AtStart(command.clone(), why))
}

/// Runs `command` with `sh -c` and waits for it; the reason when it could not run or failed.
pub(crate) async fn run_shell(command: &str) -> Result<(), String> {
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .status()
        .await
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(status.to_string())
    }
}

async fn login_all(
    args: &Args,
    api: &Api,
    role: &'static str,
    phone_start: u64,
    count: usize,
) -> Result<Arc<Vec<Login>>, RunError> {
    let logins = scenario::log_in(
        api,
        role,
        phone_start,
        count,
        &args.otp_code,
        args.login_concurrency,
    )
    .await
    .map_err(|(phone, e)| RunError::Login(format!("{role} {phone}"), e))?;
    Ok(Arc::new(logins))
}

fn spawn_workers(
    args: &Args,
    ctx: &Ctx,
    set: &mut JoinSet<Recorder>,
    mitras: &Arc<Vec<Login>>,
    customers: &Arc<Vec<Login>>,
) {
    if let Some(route) = args.flood {
        scenario::spawn_flood(set, ctx, route, mitras, args.concurrency.max(1));
        return;
    }
    if args.heartbeat_every > 0.0 && !mitras.is_empty() {
        let every = Duration::from_secs_f64(args.heartbeat_every);
        scenario::spawn_paced_heartbeats(set, ctx, mitras, every, 256);
    }
    if args.beacon_every > 0.0 {
        let every = Duration::from_secs_f64(args.beacon_every);
        scenario::spawn_paced_beacon(set, ctx, customers.len(), every);
    }
    scenario::spawn_blasts(set, ctx, customers, mitras, args.blast_rate);
}

/// Prints progress each second and raises the stop flag at the end of the window (or at the
/// request count). Returns the measured window's length.
async fn supervise(args: &Args, ctx: &Ctx, stop: &watch::Sender<bool>) -> Duration {
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(args.duration);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut next_print = started + Duration::from_secs(1);
    let mut last = (started, 0u64);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let done = ctx.live.requests.load(Ordering::Relaxed);
        let count_reached = args.requests.is_some_and(|n| done >= n);
        if now >= next_print {
            let rate = (done - last.1) as f64 / (now - last.0).as_secs_f64();
            eprintln!(
                "[{:5.1}s] {done:>9} requests {rate:>9.0}/s  errors {}",
                (now - started).as_secs_f64(),
                ctx.live.errors.load(Ordering::Relaxed)
            );
            last = (now, done);
            next_print += Duration::from_secs(1);
        }
        if now >= end || count_reached {
            let _ = stop.send(true);
            return now - started;
        }
    }
}
