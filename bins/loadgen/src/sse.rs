//! `--sse-blasts`: how long a blast's offer takes to reach the mitras' event streams. Every
//! logged-in mitra holds one stream (`GET /api/mitra/events`), spread round-robin over
//! `--sse-base-urls` (other public-api instances than the one that takes the blasts); then
//! blasts, one after the other, each cancelled once every mitra it reached (its `notified`)
//! got its offer (or after 10 s). Measured per recipient: from the blast's 201 (the moment the
//! response was read) to the moment its stream delivered the `offer` frame; an offer that
//! arrived before the 201 counts as 0. The generator's own reading of thousands of sockets is
//! part of the figure. `--sse-phase <command>` adds a phase: the command runs (the bench
//! changes `blast_max_recipients` with it), then the same blasts again on the same streams.

use crate::api::{loopback_url, Api, Login};
use hdrhistogram::Histogram;
use reqwest::{Client, Url};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

const OFFERS_WITHIN: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SseError {
    #[error("bad --sse-base-urls: {0}")]
    Base(#[from] crate::api::BaseUrlError),
    #[error("cannot build the stream client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("stream {0} refused: HTTP {1}")]
    Refused(usize, u16),
    #[error("blast failed: {0}")]
    Blast(crate::api::ApiFailure),
    #[error("no customer to blast with")]
    NoCustomer,
    #[error("histogram: {0}")]
    Histogram(String),
    #[error("phase command `{0}` failed: {1}")]
    Phase(String, String),
}

pub struct Settings<'a> {
    pub bases: &'a str,
    pub blasts: usize,
    pub concurrency: usize,
    pub hold: Duration,
    /// Shell commands (`sh -c`), one per further phase: each is run and waited for, then the
    /// phase's blasts run on the same open streams (the bench changes a setting with it).
    pub phases: &'a [String],
}

/// What one phase measured: from the 201 and from the send, over every instance, and from
/// the 201 per instance (index in `--sse-base-urls`).
struct Figures {
    from_201: Histogram<u64>,
    from_send: Histogram<u64>,
    per_instance: Vec<Histogram<u64>>,
    notified: Vec<usize>,
    early: usize,
    missing: usize,
    /// Offers a stream received twice for one blast (SPEC §12.4: nothing twice).
    repeated: usize,
}

/// Opens every stream, runs the blasts of each phase, prints the figures.
pub async fn measure(
    api: &Api,
    mitras: &[Login],
    customers: &[Login],
    settings: &Settings<'_>,
) -> Result<(), SseError> {
    let bases = settings
        .bases
        .split(',')
        .map(|raw| loopback_url(raw.trim()))
        .collect::<Result<Vec<Url>, _>>()?;
    let client = Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .build()?;
    let (offers, mut received) = mpsc::unbounded_channel();
    // A pause after the logins, so that whoever watches (the bench's CPU and statement
    // counts) can tell the logins from the openings.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let opened = Instant::now();
    let readers = open_all(&client, &bases, mitras, settings.concurrency, offers).await?;
    eprintln!(
        "{} streams open over {} instance(s) in {:.1}s",
        mitras.len(),
        bases.len(),
        opened.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    while received.try_recv().is_ok() {}
    let commands = std::iter::once(None).chain(settings.phases.iter().map(Some));
    for (phase, command) in commands.enumerate() {
        if let Some(command) = command {
            eprintln!("phase {}: {command}", phase + 1);
            run_command(command).await?;
        }
        let figures = blasts(api, customers, settings.blasts, bases.len(), &mut received).await?;
        print_figures(phase + 1, mitras.len(), &figures);
    }
    if !settings.hold.is_zero() {
        eprintln!(
            "holding the streams for {:.0}s",
            settings.hold.as_secs_f64()
        );
        tokio::time::sleep(settings.hold).await;
    }
    drop(readers);
    Ok(())
}

/// One phase: `count` blasts one after the other, each cancelled once every mitra it reached
/// got its offer (or after 10 s).
async fn blasts(
    api: &Api,
    customers: &[Login],
    count: usize,
    instances: usize,
    received: &mut mpsc::UnboundedReceiver<Offer>,
) -> Result<Figures, SseError> {
    let mut figures = Figures {
        from_201: histogram()?,
        from_send: histogram()?,
        per_instance: (0..instances)
            .map(|_| histogram())
            .collect::<Result<_, _>>()?,
        notified: Vec::new(),
        early: 0,
        missing: 0,
        repeated: 0,
    };
    for b in 0..count {
        let customer = customers
            .get(b % customers.len().max(1))
            .ok_or(SseError::NoCustomer)?;
        let sent = Instant::now();
        let blasted = api
            .blast(&customer.token, 15)
            .await
            .map_err(SseError::Blast)?;
        let created = Instant::now();
        let mut got = 0;
        let mut streams = HashSet::new();
        let deadline = created + OFFERS_WITHIN;
        while got < blasted.notified {
            let Ok(Some(offer)) = tokio::time::timeout_at(deadline, received.recv()).await else {
                break;
            };
            if offer.session != blasted.session {
                continue;
            }
            if !streams.insert(offer.stream) {
                figures.repeated += 1;
                continue;
            }
            got += 1;
            figures.early += usize::from(offer.at < created);
            let took = offer.at.saturating_duration_since(created);
            record(&mut figures.from_201, took);
            record(
                &mut figures.from_send,
                offer.at.saturating_duration_since(sent),
            );
            if let Some(h) = figures.per_instance.get_mut(offer.stream % instances) {
                record(h, took);
            }
        }
        figures.missing += blasted.notified - got;
        figures.notified.push(blasted.notified);
        let _ = api.cancel(&customer.token, blasted.session).await;
        eprintln!(
            "blast {}: {got}/{} offers, last after {:.1} ms",
            b + 1,
            blasted.notified,
            created.elapsed().as_secs_f64() * 1e3
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(figures)
}

async fn run_command(command: &str) -> Result<(), SseError> {
    crate::run_shell(command)
        .await
        .map_err(|why| SseError::Phase(command.to_owned(), why))
}

/// 1 µs to 60 s, three significant figures.
fn histogram() -> Result<Histogram<u64>, SseError> {
    Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| SseError::Histogram(e.to_string()))
}

fn record(histogram: &mut Histogram<u64>, took: Duration) {
    let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
    histogram.saturating_record(micros);
}

fn print_figures(phase: usize, streams: usize, f: &Figures) {
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e3;
    let line = |h: &Histogram<u64>| {
        format!(
            "p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  p99.9 {:.1} ms  max {:.1} ms ({} offers)",
            ms(h, 0.5),
            ms(h, 0.9),
            ms(h, 0.99),
            ms(h, 0.999),
            h.max() as f64 / 1e3,
            h.len()
        )
    };
    let (fewest, most) = (
        f.notified.iter().min().copied().unwrap_or(0),
        f.notified.iter().max().copied().unwrap_or(0),
    );
    println!(
        "sse phase {phase}: {} blasts x {streams} streams, {fewest}-{most} mitras reached per blast; {} offers received, {} missing, {} twice, {} before the 201",
        f.notified.len(),
        f.from_201.len(),
        f.missing,
        f.repeated,
        f.early
    );
    println!("  offer latency from 201: {}", line(&f.from_201));
    println!("  offer latency from send: {}", line(&f.from_send));
    for (i, h) in f.per_instance.iter().enumerate() {
        println!(
            "  offer latency from 201, streams on instance {}: {}",
            i + 1,
            line(h)
        );
    }
}

/// Opens one stream per mitra, `concurrency` at a time; each is read by a task that reports
/// every `offer` with the instant its frame was complete.
async fn open_all(
    client: &Client,
    bases: &[Url],
    mitras: &[Login],
    concurrency: usize,
    offers: mpsc::UnboundedSender<Offer>,
) -> Result<JoinSet<()>, SseError> {
    let mut readers = JoinSet::new();
    let next = Arc::new(AtomicUsize::new(0));
    let mut openers = JoinSet::new();
    for _ in 0..concurrency.clamp(1, mitras.len().max(1)) {
        let (client, bases, next) = (client.clone(), bases.to_vec(), next.clone());
        let tokens: Arc<Vec<String>> = Arc::new(mitras.iter().map(|m| m.token.clone()).collect());
        openers.spawn(async move {
            let mut opened = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(token) = tokens.get(i) else {
                    return Ok(opened);
                };
                let url = bases[i % bases.len()]
                    .join("/api/mitra/events")
                    .map_err(|_| SseError::Refused(i, 0))?;
                let response = client.get(url).bearer_auth(token).send().await?;
                if !response.status().is_success() {
                    return Err(SseError::Refused(i, response.status().as_u16()));
                }
                opened.push((i, response));
            }
        });
    }
    while let Some(done) = openers.join_next().await {
        let Ok(opened) = done else { continue };
        for (stream, response) in opened? {
            readers.spawn(read_offers(stream, response, offers.clone()));
        }
    }
    Ok(readers)
}

/// An `offer` frame as a stream read it: its session, the stream (its instance is
/// `stream % instances`), when.
struct Offer {
    session: Uuid,
    stream: usize,
    at: Instant,
}

async fn read_offers(
    stream: usize,
    mut response: reqwest::Response,
    offers: mpsc::UnboundedSender<Offer>,
) {
    let mut buffer = String::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            if let Some(session) = offer_session(&frame) {
                let _ = offers.send(Offer {
                    session,
                    stream,
                    at: Instant::now(),
                });
            }
        }
    }
}

/// The session of an `offer` frame.
fn offer_session(frame: &str) -> Option<Uuid> {
    if !frame.lines().any(|line| line == "event: offer") {
        return None;
    }
    let data = frame.lines().find_map(|line| line.strip_prefix("data: "))?;
    let value: serde_json::Value = serde_json::from_str(data).ok()?;
    value["session_id"].as_str()?.parse().ok()
}
