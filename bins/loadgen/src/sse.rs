//! `--sse-blasts`: how long a blast's offer takes to reach the mitras' event streams. Every
//! logged-in mitra holds one stream (`GET /api/mitra/events`), spread round-robin over
//! `--sse-base-urls` (other public-api instances than the one that takes the blasts); then
//! blasts, one after the other, each cancelled once every stream got its offer (or after
//! 10 s). Measured per recipient: from the blast's 201 (the moment the response was read) to
//! the moment its stream delivered the `offer` frame; an offer that arrived before the 201
//! counts as 0. The generator's own reading of thousands of sockets is part of the figure.

use crate::api::{loopback_url, Api, Login};
use hdrhistogram::Histogram;
use reqwest::{Client, Url};
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
}

pub struct Settings<'a> {
    pub bases: &'a str,
    pub blasts: usize,
    pub concurrency: usize,
    pub hold: Duration,
}

/// Opens every stream, runs the blasts, prints the figures.
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
    let mut from_201 = histogram()?;
    let mut from_send = histogram()?;
    let (mut early, mut missing) = (0usize, 0usize);
    for b in 0..settings.blasts {
        let customer = customers
            .get(b % customers.len().max(1))
            .ok_or(SseError::NoCustomer)?;
        let sent = Instant::now();
        let session = api
            .blast(&customer.token, 15)
            .await
            .map_err(SseError::Blast)?;
        let created = Instant::now();
        let mut got = 0;
        let deadline = created + OFFERS_WITHIN;
        while got < mitras.len() {
            let Ok(Some((id, at))) = tokio::time::timeout_at(deadline, received.recv()).await
            else {
                break;
            };
            if id != session {
                continue;
            }
            got += 1;
            early += usize::from(at < created);
            record(&mut from_201, at.saturating_duration_since(created));
            record(&mut from_send, at.saturating_duration_since(sent));
        }
        missing += mitras.len() - got;
        let _ = api.cancel(&customer.token, session).await;
        eprintln!(
            "blast {}: {got}/{} offers, last after {:.1} ms",
            b + 1,
            mitras.len(),
            created.elapsed().as_secs_f64() * 1e3
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    print_figures(
        settings.blasts,
        mitras.len(),
        &from_201,
        &from_send,
        early,
        missing,
    );
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

/// 1 µs to 60 s, three significant figures.
fn histogram() -> Result<Histogram<u64>, SseError> {
    Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| SseError::Histogram(e.to_string()))
}

fn record(histogram: &mut Histogram<u64>, took: Duration) {
    let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
    histogram.saturating_record(micros);
}

fn print_figures(
    blasts: usize,
    streams: usize,
    from_201: &Histogram<u64>,
    from_send: &Histogram<u64>,
    early: usize,
    missing: usize,
) {
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e3;
    println!("sse: {blasts} blasts x {streams} streams; {} offers received, {missing} missing, {early} before the 201", from_201.len());
    for (name, h) in [("from 201", from_201), ("from send", from_send)] {
        println!(
            "  offer latency {name}: p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            ms(h, 0.5),
            ms(h, 0.9),
            ms(h, 0.99),
            h.max() as f64 / 1e3
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
    offers: mpsc::UnboundedSender<(Uuid, Instant)>,
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
                opened.push(response);
            }
        });
    }
    while let Some(done) = openers.join_next().await {
        let Ok(opened) = done else { continue };
        for response in opened? {
            readers.spawn(read_offers(response, offers.clone()));
        }
    }
    Ok(readers)
}

async fn read_offers(
    mut response: reqwest::Response,
    offers: mpsc::UnboundedSender<(Uuid, Instant)>,
) {
    let mut buffer = String::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            if let Some(session) = offer_session(&frame) {
                let _ = offers.send((session, Instant::now()));
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
