//! Request tracing, logging and metrics. Every request runs inside a `request` span carrying its
//! request id and trace id — taken from `X-Request-Id` / W3C `traceparent` when the caller (or
//! the load balancer) sent one, made up otherwise — so every log line it causes, down to the
//! store calls, can be followed; the id is returned as `X-Request-Id`. Metrics use the route
//! pattern (not the raw path, so ids do not explode label cardinality), the method and the
//! status. The request line is DEBUG on the hot paths (70,000 heartbeats/s would be the log
//! bill), INFO elsewhere, WARN for server errors and for requests slower than
//! `LOG_SLOW_REQUEST_MS`.

use crate::AppState;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, Error};
use std::time::{Duration, Instant};
use tracing::Instrument;

pub const REQUEST_ID_HEADER: &str = "x-request-id";
const TRACEPARENT_HEADER: &str = "traceparent";
const MAX_REQUEST_ID_LEN: usize = 128;

/// Routes polled or pinged continuously by every app: their request lines are DEBUG.
const HOT_ROUTES: &[&str] = &[
    "/api/mitra/status/heartbeat",
    "/public/bestie-availability",
    "/api/mitra/status",
    "/api/mitra/chat/requests",
    "/healthz",
    "/readyz",
    "/metrics",
];

/// Who the request is, for the logs: its own id and the trace it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestIds {
    pub request_id: String,
    /// 32 lowercase hex digits (W3C trace id).
    pub trace_id: String,
}

impl RequestIds {
    /// From the request's headers, or new ones.
    pub fn from_headers(request_id: Option<&str>, traceparent: Option<&str>) -> Self {
        let trace_id = traceparent.and_then(trace_id_of);
        let request_id = request_id
            .filter(|id| is_acceptable_id(id))
            .map(str::to_owned);
        let fresh = || uuid::Uuid::new_v4().simple().to_string();
        match (request_id, trace_id) {
            (Some(request_id), Some(trace_id)) => Self {
                request_id,
                trace_id,
            },
            (Some(request_id), None) => Self {
                request_id,
                trace_id: fresh(),
            },
            (None, Some(trace_id)) => Self {
                request_id: trace_id.clone(),
                trace_id,
            },
            (None, None) => {
                let id = fresh();
                Self {
                    request_id: id.clone(),
                    trace_id: id,
                }
            }
        }
    }
}

/// A caller's id is echoed into logs and headers: short, and only characters that cannot
/// break either.
fn is_acceptable_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The trace id of a `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), unless malformed or zero.
fn trace_id_of(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0');
    valid.then(|| trace.to_ascii_lowercase())
}

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let ids = RequestIds::from_headers(header(REQUEST_ID_HEADER), header(TRACEPARENT_HEADER));
    let method = req.method().clone();
    let span = tracing::info_span!(
        "request",
        request_id = %ids.request_id,
        trace_id = %ids.trace_id,
        method = %method,
    );
    let mut response = next.call(req).instrument(span.clone()).await?;
    let latency = started.elapsed();
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = response.status().as_u16();
    let slow_after = state.as_ref().map_or(Duration::MAX, |s| s.slow_request);
    if let Some(state) = &state {
        state
            .metrics
            .http_request(method_label(&method), &route, status, latency);
    }
    if let Ok(value) = HeaderValue::from_str(&ids.request_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    let _entered = span.enter();
    match line_level(&route, status, latency, slow_after) {
        LineLevel::Warn if status >= 500 => {
            tracing::warn!(%method, route, status, latency_us, "request failed");
        }
        LineLevel::Warn => tracing::warn!(%method, route, status, latency_us, "slow request"),
        LineLevel::Info => tracing::info!(%method, route, status, latency_us, "request"),
        LineLevel::Debug => tracing::debug!(%method, route, status, latency_us, "request"),
    }
    Ok(response)
}

/// The method as a metric label: any token is a valid method to actix, and each new label
/// value would be a new series forever.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[derive(Debug, PartialEq, Eq)]
enum LineLevel {
    Debug,
    Info,
    Warn,
}

fn line_level(route: &str, status: u16, latency: Duration, slow_after: Duration) -> LineLevel {
    if status >= 500 || latency >= slow_after {
        LineLevel::Warn
    } else if HOT_ROUTES.contains(&route) {
        LineLevel::Debug
    } else {
        LineLevel::Info
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    fn ids(request_id: Option<&str>, traceparent: Option<&str>) -> RequestIds {
        RequestIds::from_headers(request_id, traceparent)
    }

    #[test]
    fn a_caller_request_id_and_trace_are_kept() {
        let parent = format!("00-{TRACE}-00f067aa0ba902b7-01");
        assert_eq!(
            ids(Some("req-1"), Some(&parent)),
            RequestIds {
                request_id: "req-1".into(),
                trace_id: TRACE.into()
            }
        );
        let only_trace = ids(None, Some(&parent));
        assert_eq!(only_trace.request_id, TRACE);
        assert_eq!(only_trace.trace_id, TRACE);
        let upper = format!("00-{}-00f067aa0ba902b7-01", TRACE.to_uppercase());
        assert_eq!(ids(None, Some(&upper)).trace_id, TRACE);
    }

    #[test]
    fn bad_headers_are_replaced() {
        let too_long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        for (request_id, traceparent) in [
            (Some(""), None),
            (Some("has space"), None),
            (Some("line\nbreak"), None),
            (Some(too_long.as_str()), None),
            (
                None,
                Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            ),
            (
                None,
                Some("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            ),
            (
                None,
                Some("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01"),
            ),
            (
                None,
                Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"),
            ),
            (None, Some("garbage")),
        ] {
            let made = ids(request_id, traceparent);
            assert_eq!(made.request_id.len(), 32, "{request_id:?} {traceparent:?}");
            assert_eq!(made.request_id, made.trace_id);
            assert!(made.trace_id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert_eq!(ids(Some(&"a".repeat(128)), None).request_id.len(), 128);
        assert_ne!(ids(None, None), ids(None, None), "fresh ids differ");
    }

    #[test]
    fn unusual_methods_share_one_label() {
        use actix_web::http::Method;
        assert_eq!(method_label(&Method::POST), "POST");
        let made_up = Method::from_bytes(b"FOO1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(method_label(&made_up), "other");
        assert_eq!(method_label(&Method::TRACE), "other");
    }

    #[test]
    fn request_lines_are_quiet_on_hot_paths_and_loud_when_wrong() {
        let ms = Duration::from_millis;
        let slow = ms(500);
        let check = |route, status, latency, expected| {
            assert_eq!(
                line_level(route, status, latency, slow),
                expected,
                "{route} {status}"
            );
        };
        check("/api/mitra/status/heartbeat", 200, ms(1), LineLevel::Debug);
        check("/api/mitra/status/heartbeat", 403, ms(1), LineLevel::Debug);
        check("/public/bestie-availability", 200, ms(1), LineLevel::Debug);
        check("/api/client/chat/requests", 201, ms(1), LineLevel::Info);
        check("/api/mitra/status/heartbeat", 503, ms(1), LineLevel::Warn);
        check("/api/mitra/status/heartbeat", 200, ms(500), LineLevel::Warn);
        check("/internal/mitras", 200, ms(499), LineLevel::Info);
    }
}
