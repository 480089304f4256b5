//! Request tracing, logging and metrics. Every request runs inside a `request` span carrying its
//! request id and trace id — taken from `X-Request-Id` / W3C `traceparent` when the caller (or
//! the load balancer) sent one, made up otherwise — so every log line it causes, down to the
//! store calls, can be followed; the id is returned as `X-Request-Id`. When spans are exported
//! (OTLP), the span is an OpenTelemetry server span, the child of the caller's `traceparent`
//! or the root of a new trace, and the logs carry *its* trace id. Metrics use the route
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
use opentelemetry::trace::{
    SpanContext, SpanId, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use std::str::FromStr;
use std::time::{Duration, Instant};
use tracing::field::Empty;
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub const REQUEST_ID_HEADER: &str = "x-request-id";
const TRACEPARENT_HEADER: &str = "traceparent";
const TRACESTATE_HEADER: &str = "tracestate";
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
        let trace_id = traceparent
            .and_then(TraceParent::parse)
            .map(|p| p.trace_id_hex());
        Self::new(request_id, trace_id)
    }

    /// The caller's request id when acceptable, else the trace id; the trace id given (the
    /// caller's, or the exported span's) or a new one.
    fn new(request_id: Option<&str>, trace_id: Option<String>) -> Self {
        let trace_id = trace_id.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let request_id = request_id
            .filter(|id| is_acceptable_id(id))
            .map_or_else(|| trace_id.clone(), str::to_owned);
        Self {
            request_id,
            trace_id,
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

/// A valid W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`): the caller's trace and span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TraceParent {
    trace_id: u128,
    parent_id: u64,
    flags: u8,
}

impl TraceParent {
    /// `None` when malformed, of version `ff`, or with a zero trace or parent id.
    fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        let valid = hex(version, 2)
            && version != "ff"
            && hex(trace, 32)
            && hex(parent, 16)
            && hex(flags, 2);
        if !valid {
            return None;
        }
        let parsed = Self {
            trace_id: u128::from_str_radix(trace, 16).ok()?,
            parent_id: u64::from_str_radix(parent, 16).ok()?,
            flags: u8::from_str_radix(flags, 16).ok()?,
        };
        (parsed.trace_id != 0 && parsed.parent_id != 0).then_some(parsed)
    }

    /// 32 lowercase hex digits, as logged and exported.
    fn trace_id_hex(self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The caller's span as the remote parent of ours, with its `tracestate` when valid.
    fn remote_context(self, tracestate: Option<&str>) -> opentelemetry::Context {
        let state = tracestate
            .and_then(|s| TraceState::from_str(s).ok())
            .unwrap_or_default();
        let span = SpanContext::new(
            TraceId::from(self.trace_id),
            SpanId::from(self.parent_id),
            TraceFlags::new(self.flags),
            true,
            state,
        );
        opentelemetry::Context::new().with_remote_span_context(span)
    }
}

fn header<'a>(req: &'a ServiceRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The request span for the logs alone (no export): the ids are known before it is made.
fn logged_request_span(req: &ServiceRequest) -> (Span, RequestIds) {
    let ids = RequestIds::from_headers(
        header(req, REQUEST_ID_HEADER),
        header(req, TRACEPARENT_HEADER),
    );
    let span = tracing::info_span!(
        "request",
        request_id = %ids.request_id,
        trace_id = %ids.trace_id,
        method = %req.method(),
    );
    (span, ids)
}

/// The request span as an exported OpenTelemetry server span named `<method> <route>`: its
/// trace id (the caller's, or a new one the SDK makes) is the one the logs then carry.
fn exported_request_span(req: &ServiceRequest) -> (Span, RequestIds) {
    let method = req.method();
    let route = req.match_pattern();
    let name = route
        .as_deref()
        .map_or_else(|| method.to_string(), |route| format!("{method} {route}"));
    let span = tracing::info_span!(
        "request",
        request_id = Empty,
        trace_id = Empty,
        method = %method,
        otel.name = name,
        otel.kind = "server",
    );
    let parent = header(req, TRACEPARENT_HEADER).and_then(TraceParent::parse);
    if let Some(parent) = parent {
        // Fails only without the exporter's layer, where the span is not exported anyway.
        let _ = span.set_parent(parent.remote_context(header(req, TRACESTATE_HEADER)));
    }
    let otel = span.context();
    let exported = otel.span().span_context().trace_id();
    // What a request the sampler dropped would only allocate for nothing.
    if otel.span().span_context().is_sampled() {
        span.set_attribute("http.request.method", method.to_string());
        span.set_attribute("url.path", req.path().to_owned());
        if let Some(route) = route {
            span.set_attribute("http.route", route);
        }
    }
    let trace_id = if exported == TraceId::INVALID {
        parent.map(TraceParent::trace_id_hex)
    } else {
        Some(exported.to_string())
    };
    let ids = RequestIds::new(header(req, REQUEST_ID_HEADER), trace_id);
    span.record("request_id", ids.request_id.as_str());
    span.record("trace_id", ids.trace_id.as_str());
    (span, ids)
}

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let export = state.as_ref().is_some_and(|s| s.trace_export);
    let (span, ids) = if export {
        exported_request_span(&req)
    } else {
        logged_request_span(&req)
    };
    let method = req.method().clone();
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
    if export {
        span.set_attribute("http.response.status_code", i64::from(status));
        if status >= 500 {
            span.set_status(Status::error(""));
        }
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
    fn a_traceparent_becomes_the_remote_parent_of_the_request_span() {
        let parsed =
            TraceParent::parse(&format!("00-{}-00F067AA0BA902B7-01", TRACE.to_uppercase()));
        let parent = parsed.unwrap_or_else(|| panic!("valid"));
        assert_eq!(parent.trace_id_hex(), TRACE);
        let cx = parent.remote_context(Some("vendor=abc,other=1"));
        let span = cx.span();
        let remote = span.span_context();
        assert_eq!(remote.trace_id().to_string(), TRACE);
        assert_eq!(remote.span_id().to_string(), "00f067aa0ba902b7");
        assert!(remote.is_remote() && remote.is_sampled());
        assert_eq!(remote.trace_state().get("vendor"), Some("abc"));
        let unsampled = TraceParent::parse(&format!("00-{TRACE}-00f067aa0ba902b7-00"));
        assert!(unsampled.is_some_and(|p| !p
            .remote_context(Some("not valid"))
            .span()
            .span_context()
            .is_sampled()));
        let zero_parent = format!("00-{TRACE}-0000000000000000-01");
        assert_eq!(TraceParent::parse(&zero_parent), None);
        assert_eq!(ids(None, Some(&zero_parent)).trace_id.len(), 32);
        assert_ne!(ids(None, Some(&zero_parent)).trace_id, TRACE);
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
