//! Who does what during the run. Paced work (heartbeats every H seconds per mitra, beacon polls
//! every P seconds per customer, blasts at B per second) measures latency from the *scheduled*
//! send time, so a server that falls behind shows it in the percentiles (no coordinated
//! omission). Flood work (one route, K workers in a closed loop) measures the ceiling of a route.

use crate::api::{Api, ApiFailure, Login};
use crate::stats::{Kind, Live, Recorder};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Shared by every worker of a run.
#[derive(Clone)]
pub struct Ctx {
    pub api: Api,
    pub live: Arc<Live>,
    /// Requests finishing before this instant are warm-up: not recorded.
    pub measure_from: Instant,
    /// Flips to true when the run must stop (duration or request count reached).
    pub stop: watch::Receiver<bool>,
}

impl Ctx {
    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps until `at`, or returns false at once if the run stops first.
    async fn sleep_until(&self, at: Instant) -> bool {
        let mut stop = self.stop.clone();
        if *stop.borrow() {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep_until(at) => !self.stopped(),
            _ = stop.wait_for(|s| *s) => false,
        }
    }

    /// Times one call from `since` and records it (after the warm-up only), in the second of
    /// the window it finished in.
    async fn timed<T>(
        &self,
        rec: &mut Recorder,
        kind: Kind,
        since: Instant,
        call: impl Future<Output = Result<T, ApiFailure>>,
    ) -> Result<T, ApiFailure> {
        let result = call.await;
        let now = Instant::now();
        if since >= self.measure_from {
            let error = result.as_ref().err().map(ApiFailure::key);
            let at = now.saturating_duration_since(self.measure_from);
            rec.record(&self.live, kind, now - since, at, error);
        }
        result
    }
}

/// Which single route a flood hammers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FloodRoute {
    Heartbeat,
    Beacon,
    Whoami,
}

/// `workers` closed-loop workers on one route; worker `w` cycles through the mitras `w`,
/// `w + workers`, … so every simulated mitra keeps heartbeating.
pub fn spawn_flood(
    set: &mut JoinSet<Recorder>,
    ctx: &Ctx,
    route: FloodRoute,
    mitras: &Arc<Vec<Login>>,
    workers: usize,
) {
    for w in 0..workers {
        let (ctx, mitras) = (ctx.clone(), mitras.clone());
        set.spawn(async move {
            let mut rec = Recorder::default();
            let mut i = w;
            while !ctx.stopped() {
                let token = mitras
                    .get(i % mitras.len().max(1))
                    .map(|m| m.token.as_str());
                let start = Instant::now();
                let _ = match (route, token) {
                    (FloodRoute::Beacon, _) => {
                        ctx.timed(&mut rec, Kind::Beacon, start, ctx.api.beacon())
                            .await
                    }
                    (FloodRoute::Heartbeat, Some(t)) => {
                        ctx.timed(&mut rec, Kind::Heartbeat, start, ctx.api.heartbeat(t))
                            .await
                    }
                    (FloodRoute::Whoami, Some(t)) => {
                        ctx.timed(&mut rec, Kind::Whoami, start, ctx.api.whoami(t))
                            .await
                    }
                    (_, None) => return rec, // no mitras logged in: nothing to send
                };
                i += workers;
            }
            rec
        });
    }
}

/// Each mitra heartbeats every `every`, phases spread evenly over the period.
pub fn spawn_paced_heartbeats(
    set: &mut JoinSet<Recorder>,
    ctx: &Ctx,
    mitras: &Arc<Vec<Login>>,
    every: Duration,
    workers: usize,
) {
    let n = mitras.len();
    for w in 0..workers.min(n) {
        let (ctx, mitras) = (ctx.clone(), mitras.clone());
        set.spawn(async move {
            let mut rec = Recorder::default();
            let start = Instant::now();
            for cycle in 0u32.. {
                for i in (w..n).step_by(workers) {
                    let phase = every.mul_f64(i as f64 / n as f64);
                    let due = start + every * cycle + phase;
                    if !ctx.sleep_until(due).await {
                        return rec;
                    }
                    let token = mitras[i].token.as_str();
                    let _ = ctx
                        .timed(&mut rec, Kind::Heartbeat, due, ctx.api.heartbeat(token))
                        .await;
                }
            }
            rec
        });
    }
}

/// `customers` beacon pollers, each every `every`, phases spread over the period.
pub fn spawn_paced_beacon(
    set: &mut JoinSet<Recorder>,
    ctx: &Ctx,
    customers: usize,
    every: Duration,
) {
    for c in 0..customers {
        let ctx = ctx.clone();
        set.spawn(async move {
            let mut rec = Recorder::default();
            let phase = every.mul_f64(c as f64 / customers.max(1) as f64);
            let start = Instant::now() + phase;
            for cycle in 0u32.. {
                let due = start + every * cycle;
                if !ctx.sleep_until(due).await {
                    break;
                }
                let _ = ctx
                    .timed(&mut rec, Kind::Beacon, due, ctx.api.beacon())
                    .await;
            }
            rec
        });
    }
}

/// Blasts at `rate` per second from the customers in turn. Each blast is followed by one
/// reached mitra polling its requests and accepting, then ending the session so capacity
/// frees up and the run stays steady. Blasts run concurrently (one task each), so a slow
/// blast does not hold back the schedule.
pub fn spawn_blasts(
    set: &mut JoinSet<Recorder>,
    ctx: &Ctx,
    customers: &Arc<Vec<Login>>,
    mitras: &Arc<Vec<Login>>,
    rate: f64,
) {
    if customers.is_empty() || mitras.is_empty() || rate <= 0.0 {
        return;
    }
    let (ctx, customers, mitras) = (ctx.clone(), customers.clone(), mitras.clone());
    set.spawn(async move {
        let mut rec = Recorder::default();
        let mut flows = JoinSet::new();
        let period = Duration::from_secs_f64(1.0 / rate);
        let start = Instant::now();
        let picker = AtomicU64::new(0);
        for k in 0u32.. {
            let due = start + period * k;
            if !ctx.sleep_until(due).await {
                break;
            }
            let n = usize::try_from(picker.fetch_add(1, Ordering::Relaxed)).unwrap_or(0);
            let customer = customers[n % customers.len()].token.clone();
            let mitra = mitras[rand::random_range(0..mitras.len())].token.clone();
            let ctx = ctx.clone();
            flows.spawn(async move { blast_flow(&ctx, due, &customer, &mitra).await });
            while let Some(Ok(done)) = flows.try_join_next() {
                rec.merge(done);
            }
        }
        while let Some(done) = flows.join_next().await {
            if let Ok(done) = done {
                rec.merge(done);
            }
        }
        rec
    });
}

async fn blast_flow(ctx: &Ctx, due: Instant, customer: &str, mitra: &str) -> Recorder {
    let mut rec = Recorder::default();
    let Ok(blasted) = ctx
        .timed(&mut rec, Kind::Blast, due, ctx.api.blast(customer, 10))
        .await
    else {
        return rec;
    };
    let session = blasted.session;
    let now = Instant::now();
    let _ = ctx
        .timed(
            &mut rec,
            Kind::OpenRequests,
            now,
            ctx.api.open_requests(mitra),
        )
        .await;
    let now = Instant::now();
    let accepted = ctx
        .timed(&mut rec, Kind::Accept, now, ctx.api.accept(mitra, session))
        .await;
    if accepted.is_ok() {
        let now = Instant::now();
        let _ = ctx
            .timed(&mut rec, Kind::End, now, ctx.api.end(mitra, session))
            .await;
    }
    rec
}

/// Logs `count` users of `role` in by OTP, `concurrency` at a time; phone `i` is
/// `+{phone_start + i}`. Mitras then go online. Fails on the first refused login: a load run
/// on half its users would mislead.
pub async fn log_in(
    api: &Api,
    role: &'static str,
    phone_start: u64,
    count: usize,
    code: &str,
    concurrency: usize,
) -> Result<Vec<Login>, (String, ApiFailure)> {
    let done = Arc::new(AtomicU64::new(0));
    let mut set = JoinSet::new();
    let workers = concurrency.clamp(1, count.max(1));
    for w in 0..workers {
        let (api, code, done) = (api.clone(), code.to_owned(), done.clone());
        set.spawn(async move {
            let mut mine = Vec::new();
            for i in (w..count).step_by(workers) {
                let phone = format!("+{}", phone_start + i as u64);
                let login = api
                    .login(role, &phone, &code)
                    .await
                    .map_err(|e| (phone.clone(), e))?;
                if role == "mitra" {
                    api.go_online(&login.token)
                        .await
                        .map_err(|e| (phone.clone(), e))?;
                }
                done.fetch_add(1, Ordering::Relaxed);
                mine.push((i, login));
            }
            Ok::<_, (String, ApiFailure)>(mine)
        });
    }
    let progress = tokio::spawn(print_login_progress(role, done, count));
    let mut all = Vec::with_capacity(count);
    let mut failure = None;
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok(mine)) => all.extend(mine),
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(_) => {
                failure = failure.or(Some((
                    "?".to_owned(),
                    ApiFailure::Transport("login task panicked"),
                )));
            }
        }
    }
    progress.abort();
    if let Some(failure) = failure {
        return Err(failure);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, login)| login).collect())
}

async fn print_login_progress(role: &str, done: Arc<AtomicU64>, count: usize) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        eprintln!(
            "  logging in {role}s: {}/{count}",
            done.load(Ordering::Relaxed)
        );
    }
}
