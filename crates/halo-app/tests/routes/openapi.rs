//! `GET /openapi.json` on both services: it lists exactly the routes of SPEC §4.2–§4.4, every
//! `$ref` resolves, the `info` is ours, and every operation, probed with no token and with an
//! operator's or app's token and an empty body, answers a status the document declares (never
//! a 500) with one of the codes it declares for that status.

use crate::harness::{Api, Stack};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const PUBLIC: &[&str] = &[
    "GET /api/shared/auth-providers",
    "GET /api/shared/whoami",
    "GET /public/bestie-availability",
    "POST /api/{app}/auth/otp/request",
    "POST /api/{app}/auth/otp/verify",
    "POST /api/{app}/auth/refresh",
    "POST /api/{app}/auth/logout",
    "GET /api/mitra/status",
    "POST /api/mitra/status/online",
    "POST /api/mitra/status/offline",
    "POST /api/mitra/status/heartbeat",
    "GET /api/mitra/chat/requests",
    "POST /api/mitra/chat/requests/{id}/accept",
    "POST /api/mitra/chat/requests/{id}/reject",
    "GET /api/mitra/chat/sessions/{id}",
    "POST /api/mitra/chat/sessions/{id}/end",
    "POST /api/client/chat/requests",
    "GET /api/client/chat/sessions/{id}",
    "POST /api/client/chat/sessions/{id}/pay",
    "POST /api/client/chat/sessions/{id}/extend",
    "POST /api/client/chat/sessions/{id}/end",
    "GET /api/mitra/events",
    "GET /api/client/events",
];

const INTERNAL: &[&str] = &[
    "POST /internal/auth/login",
    "GET /internal/mitras",
    "POST /internal/mitras",
    "PATCH /internal/mitras/{id}",
    "POST /internal/mitras/{id}/offline",
    "POST /internal/chat/sessions/{id}/reroute",
    "GET /internal/config",
    "GET /internal/config/history",
    "PATCH /internal/config",
    "GET /internal/dashboard/stats",
    "GET /internal/mirror/drift",
    "POST /internal/mirror/reseed",
];

const PROBES: &[&str] = &["GET /healthz", "GET /readyz", "GET /version"];

fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            found.push((method.to_uppercase(), path.clone(), operation.clone()));
        }
    }
    found
}

/// Every `$ref` in `value`, with where it was found.
fn refs<'a>(value: &'a Value, at: String, found: &mut Vec<(String, &'a str)>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner.as_str()) {
                    ("$ref", Some(target)) => found.push((at.clone(), target)),
                    _ => refs(inner, format!("{at}/{key}"), found),
                }
            }
        }
        Value::Array(items) => {
            for (i, inner) in items.iter().enumerate() {
                refs(inner, format!("{at}/{i}"), found);
            }
        }
        _ => {}
    }
}

/// Fails on a `$ref` that does not point into the document itself.
fn assert_refs_resolve(doc: &Value) {
    let mut found = Vec::new();
    refs(doc, String::new(), &mut found);
    assert!(!found.is_empty(), "a document without any $ref");
    for (at, target) in found {
        let pointer = target
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{at}: $ref {target} leaves the document"));
        assert!(
            doc.pointer(pointer).is_some(),
            "{at}: $ref {target} does not resolve"
        );
    }
}

/// The codes an error response declares (empty for a non-error body).
fn declared_codes(response: &Value) -> Vec<String> {
    response["content"]["application/json"]["schema"]["properties"]["error"]["properties"]["code"]
        ["enum"]
        .as_array()
        .map(|codes| {
            codes
                .iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn concrete(path: &str) -> String {
    path.replace("{app}", "client")
        .replace("{id}", &uuid::Uuid::new_v4().to_string())
}

#[tokio::test]
async fn both_documents_list_the_spec_routes_and_their_answers() {
    let stack = Stack::start().await;
    let operator = stack.operator().await;
    let customer = stack.customer("+628990000100").await;
    for (api, routes, token) in [
        (Api::Public, PUBLIC, customer.access.as_str()),
        (Api::Internal, INTERNAL, operator.as_str()),
    ] {
        let (status, doc) = stack.get(api, "/openapi.json", None).await;
        assert_eq!(status, 200);
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        assert_refs_resolve(&doc);
        assert!(doc["info"]["title"].as_str().unwrap().starts_with("Halo "));
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        assert!(doc["info"]["license"]["name"]
            .as_str()
            .unwrap()
            .contains("UNLICENSED"));
        assert!(doc["info"].get("contact").is_none(), "a contact nobody is");
        let listed: BTreeSet<String> = operations(&doc)
            .iter()
            .map(|(method, path, _)| format!("{method} {path}"))
            .collect();
        // Only the internal service serves /metrics on its own port (public-api's are on its
        // admin listener, outside the API).
        let metrics: &[&str] = match api {
            Api::Public => &[],
            Api::Internal => &["GET /metrics"],
        };
        let expected: BTreeSet<String> = routes
            .iter()
            .chain(PROBES)
            .chain(metrics)
            .map(|r| (*r).to_owned())
            .collect();
        assert_eq!(listed, expected, "{api:?} document");

        for (method, path, operation) in operations(&doc) {
            if path == "/internal/mirror/reseed" || path.ends_with("/logout") || path == "/metrics"
            {
                continue; // state-changing, or not JSON: covered by their own tests
            }
            let declared: BTreeSet<u16> = operation["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.parse().unwrap())
                .collect();
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            // An event stream's 200 never ends: it is read by the acceptance suite; here its
            // refusal, and that the document says what it streams.
            let stream = path.ends_with("/events");
            if stream {
                let ok = &operation["responses"]["200"]["content"]["text/event-stream"];
                assert!(ok["schema"].is_object(), "{path}: no event-stream schema");
            }
            let tokens = if stream {
                vec![None]
            } else {
                vec![None, Some(token)]
            };
            for token in tokens {
                let body = (method != Method::GET).then(|| json!({}));
                let (status, reply) = stack
                    .send(api, method.clone(), &concrete(&path), token, body)
                    .await;
                assert!(
                    declared.contains(&status),
                    "{method} {path} answered {status} ({reply}), the document declares {declared:?}"
                );
                let codes = declared_codes(&operation["responses"][status.to_string()]);
                if let Some(code) = reply["error"]["code"].as_str() {
                    assert!(
                        codes.iter().any(|c| c == code),
                        "{method} {path} answered {status} {code}, the document declares {codes:?}"
                    );
                }
            }
        }
    }
    stack.stop().await;
}
