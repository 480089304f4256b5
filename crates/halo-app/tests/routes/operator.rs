//! The control centre's mitra routes: list with live state, create, deactivate/reactivate,
//! force a ghost offline, dashboard, drift and reseed; and the heartbeat of an offline mitra.

use crate::harness::{code, Api, Stack};
use halo_testkit::eventually;
use redis::AsyncCommands;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn mitras_are_listed_with_live_state_and_paginated() {
    let stack = Stack::start().await;
    let operator = stack.operator().await;
    let online = stack.online_mitra(&operator, "+628800000001").await;
    for n in 2..=5 {
        stack
            .create_mitra(&operator, &format!("+62880000000{n}"))
            .await;
    }
    let page = stack
        .get_ok(
            Api::Internal,
            "/internal/mitras?page=1&per_page=2",
            Some(&operator),
        )
        .await;
    assert_eq!(
        (
            page["total"].as_u64(),
            page["mitras"].as_array().unwrap().len()
        ),
        (Some(5), 2)
    );
    let mut all = Vec::new();
    for number in 1..=3 {
        let page = stack
            .get_ok(
                Api::Internal,
                &format!("/internal/mitras?page={number}&per_page=2"),
                Some(&operator),
            )
            .await;
        all.extend(page["mitras"].as_array().unwrap().clone());
    }
    assert_eq!(all.len(), 5, "three pages hold all five");
    let me = all
        .iter()
        .find(|m| m["id"] == online.id.to_string())
        .unwrap();
    assert_eq!(me["is_online"], true);
    assert_eq!(me["deactivated"], false);
    assert_eq!(me["active_sessions"], 0);

    let (status, reply) = stack
        .post(
            Api::Internal,
            "/internal/mitras",
            Some(&operator),
            json!({ "phone": "+628800000001", "display_name": "Twin" }),
        )
        .await;
    assert_eq!(
        (status, code(&reply)),
        (409, "CONFLICT"),
        "phone already taken"
    );
    let (status, reply) = stack
        .post(
            Api::Internal,
            "/internal/mitras",
            Some(&operator),
            json!({ "phone": "+628800000009", "display_name": " " }),
        )
        .await;
    assert_eq!((status, code(&reply)), (422, "VALIDATION_FAILED"));
    stack.stop().await;
}

#[tokio::test]
async fn deactivation_takes_a_mitra_out_and_reactivation_lets_it_back() {
    let stack = Stack::start().await;
    let operator = stack.operator().await;
    let mitra = stack.online_mitra(&operator, "+628800000010").await;
    let path = format!("/internal/mitras/{}", mitra.id);
    let view = stack
        .ok(
            Api::Internal,
            Method::PATCH,
            &path,
            Some(&operator),
            Some(json!({ "is_active": false })),
        )
        .await;
    assert_eq!(
        (view["deactivated"].as_bool(), view["is_online"].as_bool()),
        (Some(true), Some(false))
    );
    let beacon = stack
        .get_ok(Api::Public, "/public/bestie-availability", None)
        .await;
    assert_eq!(beacon["count"], 0);
    for action in ["heartbeat", "online"] {
        let (status, reply) = stack
            .post(
                Api::Public,
                &format!("/api/mitra/status/{action}"),
                Some(&mitra.access),
                json!(null),
            )
            .await;
        assert_eq!(
            (status, code(&reply)),
            (403, "ACCOUNT_INACTIVE"),
            "{action}"
        );
    }

    stack
        .ok(
            Api::Internal,
            Method::PATCH,
            &path,
            Some(&operator),
            Some(json!({ "is_active": true })),
        )
        .await;
    let again = stack.login("mitra", "+628800000010").await;
    stack
        .ok(
            Api::Public,
            Method::POST,
            "/api/mitra/status/online",
            Some(&again.access),
            None,
        )
        .await;
    let stats = stack
        .get_ok(Api::Internal, "/internal/dashboard/stats", Some(&operator))
        .await;
    assert_eq!(stats["online_mitras"], 1);
    stack.stop().await;
}

#[tokio::test]
async fn a_heartbeat_never_brings_an_offline_mitra_back() {
    let stack = Stack::start().await;
    let operator = stack.operator().await;
    let mitra = stack.online_mitra(&operator, "+628800000020").await;
    let (status, _) = stack
        .post(
            Api::Internal,
            &format!("/internal/mitras/{}/offline", mitra.id),
            Some(&operator),
            json!(null),
        )
        .await;
    assert_eq!(status, 200);
    let reason: String = stack
        .db
        .client()
        .await
        .query_one(
            "SELECT reason FROM mitra_online_logs WHERE mitra_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
            &[&mitra.id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(reason, "operator");

    // The app was in the background while swept offline; its next heartbeat learns it.
    let ack = stack.heartbeat(&mitra).await;
    assert_eq!(
        (ack["ok"].as_bool(), ack["is_online"].as_bool()),
        (Some(true), Some(false))
    );
    let status = stack
        .get_ok(Api::Public, "/api/mitra/status", Some(&mitra.access))
        .await;
    assert_eq!(status["is_online"], false);
    let beacon = stack
        .get_ok(Api::Public, "/public/bestie-availability", None)
        .await;
    assert_eq!(beacon, json!({ "available": false, "count": 0 }));
    stack.stop().await;
}

#[tokio::test]
async fn drift_shows_a_corrupted_mirror_and_a_reseed_heals_it() {
    let stack = Stack::start().await;
    let operator = stack.operator().await;
    stack.online_mitra(&operator, "+628800000030").await;
    let drift = stack
        .get_ok(Api::Internal, "/internal/mirror/drift", Some(&operator))
        .await;
    assert_eq!(drift["in_sync"], true, "{drift}");

    let mut valkey = stack.valkey.connection().await;
    let _: () = valkey
        .sadd("mitras:online", "00000000-0000-4000-8000-00000000dead")
        .await
        .unwrap();
    let drift = stack
        .get_ok(Api::Internal, "/internal/mirror/drift", Some(&operator))
        .await;
    assert_eq!(drift["in_sync"], false);
    assert_eq!(
        drift["extra"][0]["member"],
        "00000000-0000-4000-8000-00000000dead"
    );

    let seeded = stack
        .ok(
            Api::Internal,
            Method::POST,
            "/internal/mirror/reseed",
            Some(&operator),
            None,
        )
        .await;
    assert_eq!(seeded["online"], 1);
    eventually(
        "drift empty after the reseed",
        Duration::from_secs(5),
        || async {
            let drift = stack
                .get_ok(Api::Internal, "/internal/mirror/drift", Some(&operator))
                .await;
            drift["in_sync"] == true
        },
    )
    .await;
    stack.stop().await;
}

#[tokio::test]
async fn a_page_of_mitras_costs_one_mirror_round_trip_or_one_query_during_an_outage() {
    let mut stack = Stack::start().await;
    let operator = stack.operator().await;
    let online = stack.online_mitra(&operator, "+628800000040").await;
    for n in 1..=4 {
        stack
            .create_mitra(&operator, &format!("+62880000004{n}"))
            .await;
    }
    let metrics = stack.internal.availability.metrics().clone();
    let page = "/internal/mitras?per_page=5";

    let trips = metrics.valkey_round_trips("mitra_state");
    let listed = stack.get_ok(Api::Internal, page, Some(&operator)).await;
    assert_eq!(listed["mitras"].as_array().unwrap().len(), 5);
    assert_eq!(metrics.valkey_round_trips("mitra_state"), trips + 1);

    stack.valkey.kill().await;
    let queries = metrics.pg_queries("mitra_state");
    let listed = stack.get_ok(Api::Internal, page, Some(&operator)).await;
    let mitras = listed["mitras"].as_array().unwrap();
    assert_eq!(mitras.len(), 5, "answered from Postgres");
    let me = mitras
        .iter()
        .find(|m| m["id"] == online.id.to_string())
        .unwrap();
    assert_eq!(me["is_online"], true);
    assert_eq!(metrics.pg_queries("mitra_state"), queries + 1);
    stack.stop().await;
}
