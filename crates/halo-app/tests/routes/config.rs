//! `app_config` through the control centre: validated (422 naming the field), audited with who
//! changed it, and honoured by the other instances within a second.

use crate::harness::{code, Api, Stack};
use halo_testkit::eventually;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn bad_values_are_refused_naming_the_field() {
    let stack = Stack::start().await;
    let operator = stack.operator().await;
    for (body, field) in [
        (
            json!({ "max_customers_per_mitra": 0 }),
            "max_customers_per_mitra",
        ),
        (
            json!({ "stale_after_seconds": 999_999 }),
            "stale_after_seconds",
        ),
        (
            json!({ "beacon_cache_ttl_seconds": "ten" }),
            "beacon_cache_ttl_seconds",
        ),
        (json!({ "no_such_setting": 1 }), "no_such_setting"),
    ] {
        let (status, reply) = stack
            .send(
                Api::Internal,
                Method::PATCH,
                "/internal/config",
                Some(&operator),
                Some(body),
            )
            .await;
        assert_eq!(
            (status, code(&reply)),
            (422, "VALIDATION_FAILED"),
            "{reply}"
        );
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{message} names {field}");
    }
    let (status, reply) = stack
        .send(
            Api::Internal,
            Method::PATCH,
            "/internal/config",
            Some(&operator),
            Some(json!({})),
        )
        .await;
    assert_eq!((status, code(&reply)), (422, "VALIDATION_FAILED"));
    let settings = stack
        .get_ok(Api::Internal, "/internal/config", Some(&operator))
        .await;
    assert_eq!(settings["max_customers_per_mitra"], 3, "nothing changed");
    stack.stop().await;
}

#[tokio::test]
async fn a_change_is_recorded_and_reaches_another_instance_within_a_second() {
    let stack = Stack::start().await;
    let second = stack.second_public().await;
    let operator = stack.operator().await;
    let mitra = stack.online_mitra(&operator, "+628700000001").await;
    let status_on_second = format!("http://127.0.0.1:{}/api/mitra/status", second.port);
    let (_, before) = stack
        .send_to(&status_on_second, Method::GET, Some(&mitra.access), None)
        .await;
    assert_eq!(before["max_customers"], 3);

    let changed = stack
        .ok(
            Api::Internal,
            Method::PATCH,
            "/internal/config",
            Some(&operator),
            Some(json!({ "max_customers_per_mitra": 5 })),
        )
        .await;
    assert_eq!(changed["max_customers_per_mitra"], 5);
    eventually(
        "the other instance honours the change",
        Duration::from_secs(1),
        || async {
            let (_, now) = stack
                .send_to(&status_on_second, Method::GET, Some(&mitra.access), None)
                .await;
            now["max_customers"] == 5
        },
    )
    .await;

    let operator_id: uuid::Uuid = stack
        .db
        .client()
        .await
        .query_one(
            "SELECT updated_by FROM app_config WHERE key = 'max_customers_per_mitra'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let (_, me) = stack
        .get(Api::Public, "/api/shared/whoami", Some(&operator))
        .await;
    assert_eq!(operator_id.to_string(), me["user_id"].as_str().unwrap());
    second.stop().await.unwrap();
    stack.stop().await;
}
