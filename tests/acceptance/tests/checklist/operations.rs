//! What an on-call engineer relies on (docs/RUNBOOK.md): every request carries an id through
//! every log line it causes, logs are in the shape a log pipeline reads and hold no phone
//! number, the hot paths do not flood the log, and the metrics say where time goes.

use halo_acceptance::{eventually, Stack};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

const PHONE: &str = "+628111222333444";

#[tokio::test]
async fn a_request_id_follows_the_request_through_its_log_lines() {
    let stack = Stack::start().await;
    let url = stack.public().url("/api/client/auth/otp/request");
    let body = json!({ "phone": PHONE });
    let reply = stack
        .http
        .call_with(
            Method::POST,
            &url,
            None,
            Some(&body),
            &[("x-request-id", "acc-req-1")],
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.request_id.as_deref(), Some("acc-req-1"));

    // The OTP sender's line (deep inside the core) carries the request's id, masked phone.
    eventually("the sender's line", Duration::from_secs(5), || async {
        stack.public().log_lines().iter().any(|line| {
            line["request_id"] == "acc-req-1"
                && line["message"] == "otp code issued (log sender)"
                && line["severity"] == "INFO"
        })
    })
    .await;
    assert!(
        !stack.public().logged(&PHONE[1..]),
        "a phone number reached the log in clear"
    );

    // A W3C trace context is adopted; without any, an id is made up and returned.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = format!("00-{trace}-00f067aa0ba902b7-01");
    let traced = stack
        .http
        .get_traced(&stack.public().url("/readyz"), &parent)
        .await;
    assert_eq!(traced.request_id.as_deref(), Some(trace));
    let fresh = stack
        .http
        .call(Method::GET, &stack.public().url("/healthz"), None, None)
        .await;
    let made = fresh.request_id.expect("a request id");
    assert_eq!(made.len(), 32);
}

#[tokio::test]
async fn hot_paths_stay_out_of_the_info_log_and_count_by_method() {
    let stack = Stack::start().await;
    let mitra = stack.online_mitra().await;
    for _ in 0..5 {
        stack.heartbeat(&mitra).await.expect(200);
    }
    stack.beacon(0).await;
    let customer = stack.customer().await;
    stack.blast(&customer).await.expect(201);
    let lines = stack.public().log_lines();
    let request_lines: Vec<_> = lines.iter().filter(|l| l["message"] == "request").collect();
    assert!(
        !request_lines
            .iter()
            .any(|l| l["route"] == "/api/mitra/status/heartbeat"
                || l["route"] == "/public/bestie-availability"),
        "hot-path request lines must be DEBUG"
    );
    assert!(
        request_lines
            .iter()
            .any(|l| l["route"] == "/api/client/chat/requests" && l["status"] == 201),
        "other requests are logged at INFO"
    );

    let metrics = stack.public().metrics().await;
    assert_eq!(
        metrics.sum(
            "halo_http_requests_total",
            &[
                ("method", "POST"),
                ("route", "/api/mitra/status/heartbeat"),
                ("status", "200")
            ]
        ),
        5.0
    );
    assert!(
        metrics.sum(
            "halo_valkey_call_duration_seconds_count",
            &[("op", "heartbeat")]
        ) >= 5.0
    );
    assert!(metrics.sum("halo_pg_query_duration_seconds_count", &[]) >= 1.0);
    assert!(metrics.sum("halo_pg_pool_connections", &[("state", "max")]) >= 1.0);
}
