//! Bad input never reaches a 500: malformed JSON, wrong types, bad UUIDs, out-of-range minutes,
//! oversize bodies and unknown paths get a 4xx with a code. CORS only for `CC_ORIGIN`, only on
//! the internal API.

use crate::harness::{code, Api, Stack};
use reqwest::header::{
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_REQUEST_METHOD, CONTENT_TYPE, ORIGIN,
};
use reqwest::Method;
use serde_json::{json, Value};

async fn raw(
    stack: &Stack,
    path: &str,
    token: &str,
    content_type: &str,
    body: String,
) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(stack.url(Api::Public, path))
        .bearer_auth(token)
        .header(CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn malformed_requests_get_a_coded_4xx() {
    let stack = Stack::start().await;
    let customer = stack.customer("+628900000100").await;
    let token = customer.access.as_str();
    let requests = "/api/client/chat/requests";
    // Bodies the JSON extractor must refuse: (content type, body, status, code).
    let bodies = [
        (
            "application/json",
            "{\"minutes\":".to_owned(),
            400,
            "BAD_REQUEST",
        ),
        (
            "application/json",
            "{\"minutes\":\"ten\"}".to_owned(),
            422,
            "VALIDATION_FAILED",
        ),
        (
            "application/json",
            "{}".to_owned(),
            422,
            "VALIDATION_FAILED",
        ),
        (
            "text/plain",
            "{\"minutes\":10}".to_owned(),
            400,
            "BAD_REQUEST",
        ),
        (
            "application/json",
            format!("{{\"minutes\":10,\"pad\":\"{}\"}}", "x".repeat(20_000)),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
    ];
    for (content_type, body, want_status, want_code) in bodies {
        let (status, reply) = raw(&stack, requests, token, content_type, body).await;
        assert_eq!(
            (status, code(&reply)),
            (want_status, want_code),
            "{content_type} body: {reply}"
        );
    }
    let cases = [
        (
            stack
                .post(Api::Public, requests, Some(token), json!({ "minutes": 0 }))
                .await,
            422,
            "VALIDATION_FAILED",
        ),
        (
            stack
                .post(
                    Api::Public,
                    requests,
                    Some(token),
                    json!({ "minutes": 100_000 }),
                )
                .await,
            422,
            "VALIDATION_FAILED",
        ),
        (
            stack
                .post(
                    Api::Public,
                    requests,
                    Some(token),
                    json!({ "minutes": 10, "mitra_id": "nope" }),
                )
                .await,
            422,
            "VALIDATION_FAILED",
        ),
        (
            stack
                .get(
                    Api::Public,
                    "/api/client/chat/sessions/not-a-uuid",
                    Some(token),
                )
                .await,
            400,
            "BAD_REQUEST",
        ),
        (
            stack.get(Api::Public, "/no/such/route", None).await,
            404,
            "NOT_FOUND",
        ),
    ];
    for (n, ((status, reply), want_status, want_code)) in cases.into_iter().enumerate() {
        assert_eq!(
            (status, code(&reply)),
            (want_status, want_code),
            "case {n}: {reply}"
        );
    }
    let operator = stack.operator().await;
    let (status, reply) = stack
        .get(Api::Internal, "/internal/mitras?page=abc", Some(&operator))
        .await;
    assert_eq!((status, code(&reply)), (400, "BAD_REQUEST"));
    stack.stop().await;
}

async fn preflight(stack: &Stack, api: Api, origin: &str) -> Option<String> {
    let response = reqwest::Client::new()
        .request(Method::OPTIONS, stack.url(api, "/healthz"))
        .header(ORIGIN, origin)
        .header(ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .send()
        .await
        .unwrap();
    response
        .headers()
        .get(ACCESS_CONTROL_ALLOW_ORIGIN)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn cors_admits_the_control_centre_on_the_internal_api_only() {
    let stack = Stack::start().await;
    let cc = "http://cc.example.test";
    assert_eq!(
        preflight(&stack, Api::Internal, cc).await.as_deref(),
        Some(cc)
    );
    assert_eq!(
        preflight(&stack, Api::Internal, "http://evil.example.test").await,
        None
    );
    assert_eq!(preflight(&stack, Api::Public, cc).await, None);
    stack.stop().await;
}
