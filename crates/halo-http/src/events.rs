//! The apps' event streams (SPEC §12) as Server-Sent Events: `GET /api/mitra/events` and
//! `GET /api/client/events`. The token is checked by the usual extractors before the stream
//! starts; then each event is one `id:` / `event:` / `data:` (JSON) frame, and a comment ping
//! (every 15 s, `SSE_PING_INTERVAL_MS`) keeps proxies from closing an idle stream and lets the server notice a client
//! that went away (the write fails, the body is dropped, the stream leaves the hub).
//!
//! A small responder over actix's streaming body rather than a helper crate: what SSE needs
//! here is a dozen lines of framing, and the stream's end must stay in our hands (the hub's
//! registration is dropped with the body).

use crate::dto;
use crate::error::ApiError;
use crate::extract::{ActiveMitra, Customer};
use crate::AppState;
use actix_web::http::header::{self, HeaderValue};
use actix_web::web::Bytes;
use actix_web::{get, web, HttpRequest, HttpResponse};
use futures_util::Stream;
use halo_core::{Delivery, EventStream};
use halo_ports::{AppEvent, Audience, AudienceKind};
use serde::Serialize;
use std::convert::Infallible;
use std::time::Duration;

/// Sent first: the app's reconnect delay, and the response head goes out at once.
const PREAMBLE: &[u8] = b"retry: 1000\n\n";
const PING: &[u8] = b": ping\n\n";

type Reply = Result<HttpResponse, ApiError>;

#[utoipa::path(
    tag = "mitra",
    security(("bearer" = ["mitra"])),
    params(("Last-Event-ID" = Option<String>, Header, description = "The `id` of the last event received: the stream resumes after it (else it starts with the current state: one `offer` per open offer, one `session` per open session).")),
    responses((status = 200, content_type = "text/event-stream", body = dto::MitraEvent, description = "Server-Sent Events: `offer`, `offer_withdrawn`, `session` and `away`, each with an `id:` and a JSON `data:` line; `: ping` comments every 15 s.")),
    extensions(("x-error-codes" = json!(["ACCOUNT_INACTIVE", "NOT_FOUND", "STORE_UNAVAILABLE"])))
)]
#[get("/api/mitra/events")]
pub(crate) async fn mitra_events(
    state: web::Data<AppState>,
    mitra: ActiveMitra,
    req: HttpRequest,
) -> Reply {
    let stream = state
        .events
        .open(Audience::Mitra(mitra.id), last_event_id(&req))
        .await?;
    Ok(sse(stream, AudienceKind::Mitra, state.sse_ping))
}

#[utoipa::path(
    tag = "client",
    security(("bearer" = ["customer"])),
    params(("Last-Event-ID" = Option<String>, Header, description = "The `id` of the last event received: the stream resumes after it (else it starts with the current state: one `session` per open request or session).")),
    responses((status = 200, content_type = "text/event-stream", body = dto::ClientEvent, description = "Server-Sent Events: `session` (with `queue_position` and `estimated_wait_seconds` while queued) and `availability`, each with an `id:` and a JSON `data:` line; `: ping` comments every 15 s.")),
    extensions(("x-error-codes" = json!(["STORE_UNAVAILABLE"])))
)]
#[get("/api/client/events")]
pub(crate) async fn client_events(
    state: web::Data<AppState>,
    customer: Customer,
    req: HttpRequest,
) -> Reply {
    let stream = state
        .events
        .open(Audience::Customer(customer.id), last_event_id(&req))
        .await?;
    Ok(sse(stream, AudienceKind::Customer, state.sse_ping))
}

/// An id this server sent; anything else means "from the current state".
fn last_event_id(req: &HttpRequest) -> Option<i64> {
    req.headers()
        .get("last-event-id")?
        .to_str()
        .ok()?
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|id| *id >= 0)
}

fn sse(stream: EventStream, audience: AudienceKind, ping: Duration) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        // Proxies that buffer (nginx) would hold the events back.
        .insert_header(("x-accel-buffering", HeaderValue::from_static("no")))
        .streaming(frames(stream, audience, ping))
}

/// The body: the preamble, then events and pings until the stream ends (cut off by the hub)
/// or actix drops the body (the client went away), which drops the stream with it.
fn frames(
    stream: EventStream,
    audience: AudienceKind,
    every: Duration,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    futures_util::stream::unfold(
        (stream, ping, true),
        move |(mut stream, mut ping, first)| async move {
            if first {
                return Some((Ok(Bytes::from_static(PREAMBLE)), (stream, ping, false)));
            }
            loop {
                let frame = tokio::select! {
                    delivery = stream.next() => frame(&delivery?, audience),
                    _ = ping.tick() => Some(Bytes::from_static(PING)),
                };
                if let Some(frame) = frame {
                    return Some((Ok(frame), (stream, ping, false)));
                }
            }
        },
    )
}

/// `None` for an event the audience has no shape for (none is written; see `client_event`).
fn frame(delivery: &Delivery, audience: AudienceKind) -> Option<Bytes> {
    let data = match audience {
        AudienceKind::Mitra => json(&mitra_event(&delivery.event)?),
        AudienceKind::Customer => json(&client_event(&delivery.event)?),
    };
    let name = event_name(&delivery.event);
    Some(Bytes::from(format!(
        "id: {}\nevent: {name}\ndata: {data}\n\n",
        delivery.id
    )))
}

/// Plain structs of strings, numbers and timestamps: encoding them cannot fail.
fn json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned())
}

fn event_name(event: &AppEvent) -> &'static str {
    match event {
        AppEvent::Offer { .. } => "offer",
        AppEvent::OfferWithdrawn { .. } => "offer_withdrawn",
        AppEvent::Session { .. } => "session",
        AppEvent::Away { .. } => "away",
        AppEvent::Availability { .. } => "availability",
    }
}

/// A mitra's log holds no `availability` event (the audience column says so).
fn mitra_event(event: &AppEvent) -> Option<dto::MitraEvent> {
    Some(match *event {
        AppEvent::Offer {
            session_id,
            minutes,
            expires_at,
        } => dto::MitraEvent::Offer(dto::OfferEvent {
            session_id,
            minutes,
            expires_at,
        }),
        AppEvent::OfferWithdrawn { session_id, reason } => {
            dto::MitraEvent::OfferWithdrawn(dto::OfferWithdrawnEvent {
                session_id,
                reason: reason.as_str(),
            })
        }
        AppEvent::Session {
            session_id,
            status,
            ends_at,
            ..
        } => dto::MitraEvent::Session(dto::MitraSessionEvent {
            session_id,
            status: status.as_str(),
            ends_at,
        }),
        AppEvent::Away { reason } => dto::MitraEvent::Away(dto::AwayEvent {
            reason: reason.as_str(),
        }),
        AppEvent::Availability { .. } => return None,
    })
}

/// A customer's log holds `session` and `availability` events only (the audience column says
/// so).
fn client_event(event: &AppEvent) -> Option<dto::ClientEvent> {
    if let AppEvent::Availability { available, count } = *event {
        return Some(dto::ClientEvent::Availability(dto::AvailabilityEvent {
            available,
            count,
        }));
    }
    let AppEvent::Session {
        session_id,
        status,
        mitra_id,
        ends_at,
        queue,
    } = *event
    else {
        return None;
    };
    Some(dto::ClientEvent::Session(dto::ClientSessionEvent {
        session_id,
        status: status.as_str(),
        mitra_id: mitra_id.map(|id| id.uuid()),
        ends_at,
        queue_position: queue.map(|q| q.position),
        estimated_wait_seconds: queue.and_then(|q| q.estimated_wait_seconds),
    }))
}
