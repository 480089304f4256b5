//! OpenTelemetry export (docs/RUNBOOK.md, "Traces"): with `OTEL_EXPORTER_OTLP_ENDPOINT` set,
//! both services send their spans to a collector — here a loopback [`OtlpReceiver`] — and a
//! request span continues the caller's `traceparent`; the logs carry the same trace id; what is
//! queued is sent on SIGTERM. Unset, no exporter runs. A bad endpoint is refused at start-up,
//! an unreachable one costs nothing but the lost spans.

use halo_acceptance::{
    eventually, run_to_exit, Kind, OtlpReceiver, ReceivedSpan, Stack, StackOptions,
};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
/// A trace whose caller decided "not sampled" (flags 00).
const UNSAMPLED_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
/// The name of the SDK's batch thread as Linux keeps it (15 characters).
const BATCH_THREAD: &str = "OpenTelemetry.T";

fn traceparent() -> String {
    format!("00-{TRACE}-{CALLER_SPAN}-01")
}

/// The one span named `name` of `service` in `trace` (any trace: `None`).
fn server_span<'a>(
    spans: &'a [ReceivedSpan],
    name: &str,
    service: &str,
    trace: Option<&str>,
) -> &'a ReceivedSpan {
    let found: Vec<_> = spans
        .iter()
        .filter(|s| s.name == name && s.resource["service.name"] == service)
        .filter(|s| trace.is_none_or(|t| s.trace_id == t))
        .collect();
    assert_eq!(found.len(), 1, "spans {name} of {service}: {spans:#?}");
    found[0]
}

#[tokio::test]
async fn spans_reach_the_collector_continuing_the_callers_trace_and_flush_on_sigterm() {
    let receiver = OtlpReceiver::start().await;
    // A batch is due only after a minute: what arrives below was sent by the shutdown flush.
    // Every new trace is sampled (the default is a tenth); a caller's decision always wins.
    let options = StackOptions::default()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
        .env("OTEL_BSP_SCHEDULE_DELAY", 60_000)
        .env("OTEL_TRACES_SAMPLER", "parentbased_always_on");
    let mut stack = Stack::with(options).await;
    assert!(
        stack
            .public()
            .thread_names()
            .iter()
            .any(|t| t == BATCH_THREAD),
        "{:?}",
        stack.public().thread_names()
    );
    let mitra = stack.online_mitra().await;
    let parent = traceparent();
    let headers = [("traceparent", parent.as_str())];
    let beat = stack
        .http
        .call_with(
            Method::POST,
            &stack.public().url("/api/mitra/status/heartbeat"),
            Some(&mitra.token),
            None,
            &headers,
        )
        .await;
    assert_eq!(beat.status, 200, "{beat:?}");
    assert_eq!(beat.request_id.as_deref(), Some(TRACE));
    let probe = stack
        .http
        .get_traced(&stack.internal.url("/healthz"), &parent)
        .await;
    assert_eq!(probe.status, 200);
    let unsampled = format!("00-{UNSAMPLED_TRACE}-{CALLER_SPAN}-00");
    let skipped = stack
        .http
        .get_traced(&stack.public().url("/readyz"), &unsampled)
        .await;
    assert_eq!(skipped.request_id.as_deref(), Some(UNSAMPLED_TRACE));
    // No traceparent: a new trace, whose id the request's log lines carry.
    let otp = stack
        .http
        .call_with(
            Method::POST,
            &stack.public().url("/api/client/auth/otp/request"),
            None,
            Some(&json!({ "phone": "+628111222333445" })),
            &[("x-request-id", "otlp-req-1")],
        )
        .await;
    assert_eq!(otp.status, 200, "{otp:?}");
    let logged_trace = stack
        .public()
        .log_lines()
        .iter()
        .find(|line| line["request_id"] == "otlp-req-1" && line["message"] == "request")
        .and_then(|line| line["trace_id"].as_str().map(str::to_owned))
        .expect("the request line of otlp-req-1 with its trace id");
    assert!(receiver.spans().is_empty(), "sent before the batch was due");

    stack.publics[0].stop().await;
    stack.internal.stop().await;
    eventually("the flushed spans", Duration::from_secs(10), || async {
        let spans = receiver.spans();
        ["public-api", "internal-api"]
            .iter()
            .all(|service| spans.iter().any(|s| s.resource["service.name"] == *service))
    })
    .await;
    let spans = receiver.spans();

    let beat = server_span(
        &spans,
        "POST /api/mitra/status/heartbeat",
        "public-api",
        None,
    );
    assert_eq!(beat.trace_id, TRACE);
    assert_eq!(beat.parent_span_id, CALLER_SPAN);
    assert_eq!(beat.kind, 2, "server");
    assert_eq!(beat.attributes["http.route"], "/api/mitra/status/heartbeat");
    assert_eq!(beat.attributes["http.response.status_code"], "200");
    assert_eq!(beat.resource["service.version"], env!("CARGO_PKG_VERSION"));
    // The store call inside it is its child, in the same trace.
    assert!(
        spans
            .iter()
            .any(|s| s.name == "valkey" && s.parent_span_id == beat.span_id && s.trace_id == TRACE),
        "{spans:#?}"
    );

    // (The harness polled /healthz at start-up too, each poll a trace of its own.)
    let probe = server_span(&spans, "GET /healthz", "internal-api", Some(TRACE));
    assert_eq!(probe.parent_span_id, CALLER_SPAN);

    let otp = server_span(
        &spans,
        "POST /api/{app}/auth/otp/request",
        "public-api",
        Some(&logged_trace),
    );
    assert_ne!(otp.trace_id, TRACE);
    assert_eq!(otp.parent_span_id, "", "a root span");
    assert_eq!(otp.attributes["request_id"], "otlp-req-1");
    assert!(
        !spans.iter().any(|s| s.trace_id == UNSAMPLED_TRACE),
        "the caller said no"
    );
    // Background work (sweeps, timers) is not traced: every store span is inside a request.
    let request_spans: Vec<&str> = spans
        .iter()
        .filter(|s| s.name.contains(' '))
        .map(|s| s.span_id.as_str())
        .collect();
    assert!(
        spans
            .iter()
            .filter(|s| s.name == "pg" || s.name == "valkey")
            .all(|s| request_spans.contains(&s.parent_span_id.as_str())),
        "{spans:#?}"
    );
    assert_eq!(receiver.other_requests(), 0);
}

#[tokio::test]
async fn without_an_endpoint_no_exporter_runs() {
    // The other OTEL_* variables alone switch nothing on; an empty endpoint counts as unset.
    let options = StackOptions::default()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "")
        .env("OTEL_SERVICE_NAME", "halo-test")
        .env("OTEL_EXPORTER_OTLP_HEADERS", "x-token=abc");
    let stack = Stack::with(options).await;
    let mitra = stack.online_mitra().await;
    stack.heartbeat(&mitra).await.expect(200);
    for instance in [stack.public(), &stack.internal] {
        let threads = instance.thread_names();
        assert!(!threads.is_empty(), "threads of {:?}", instance.kind);
        assert!(!threads.iter().any(|t| t == BATCH_THREAD), "{threads:?}");
    }
}

#[tokio::test]
async fn a_bad_endpoint_is_refused_at_start_and_an_unreachable_one_is_harmless() {
    let stack = Stack::start().await;
    let mut env = stack.env_vars().to_vec();
    env.push((
        "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
        "collector:4318".into(),
    ));
    let refused = run_to_exit(Kind::Public, &[], &env).await;
    assert_eq!(refused.status.code(), Some(2));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{said}");

    // Nobody listens there: every export fails, no request does, and SIGTERM still stops it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let unreachable = format!("http://{}", closed.local_addr().expect("its address"));
    drop(closed);
    let mut public = stack
        .spawn_with(
            Kind::Public,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &unreachable),
                ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ],
        )
        .await;
    let mitra = stack.online_mitra().await;
    for _ in 0..20 {
        let reply = stack
            .http
            .call(
                Method::POST,
                &public.url("/api/mitra/status/heartbeat"),
                Some(&mitra.token),
                None,
            )
            .await;
        assert_eq!(reply.status, 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    public.stop().await;
}
