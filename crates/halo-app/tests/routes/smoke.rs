//! The smoke path of the README: mitra logs in, goes online, heartbeats; the customer sees the
//! beacon and requests a chat; the mitra accepts; capacity 1; the chat ends; capacity 0.

use crate::harness::{uuid, Api, Stack};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn smoke_path_from_login_to_the_end_of_a_chat() {
    let stack = Stack::start().await;
    let operator = stack.operator().await;
    let mitra = stack.online_mitra(&operator, "+628100000001").await;

    let ack = stack.heartbeat(&mitra).await;
    assert_eq!(ack["ok"], true);
    assert_eq!(ack["is_online"], true);
    assert!(ack["interval_seconds"].as_u64().unwrap() > 0);

    let beacon = stack
        .get_ok(Api::Public, "/public/bestie-availability", None)
        .await;
    assert_eq!(beacon, json!({ "available": true, "count": 1 }));

    let customer = stack.customer("+628100000100").await;
    let (status, created) = stack
        .post(
            Api::Public,
            "/api/client/chat/requests",
            Some(&customer.access),
            json!({ "minutes": 15 }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "searching");
    assert_eq!(created["notified"], 1);
    let session = uuid(&created["session_id"]);

    let open = stack
        .get_ok(Api::Public, "/api/mitra/chat/requests", Some(&mitra.access))
        .await;
    assert_eq!(uuid(&open["requests"][0]["id"]), session);

    let (status, accepted) = stack.accept(&mitra, session).await;
    assert_eq!(status, 200, "{accepted}");
    assert_eq!(accepted["status"], "active");
    assert_eq!(uuid(&accepted["mitra_id"]), mitra.id);
    assert!(accepted["ends_at"].is_string());
    assert_eq!(stack.capacity(&mitra).await, 1);

    let seen = stack
        .get_ok(
            Api::Public,
            &format!("/api/client/chat/sessions/{session}"),
            Some(&customer.access),
        )
        .await;
    assert_eq!(seen["status"], "active");

    let ended = stack
        .ok(
            Api::Public,
            Method::POST,
            &format!("/api/client/chat/sessions/{session}/end"),
            Some(&customer.access),
            None,
        )
        .await;
    assert_eq!(ended["status"], "ended");
    assert_eq!(ended["end_reason"], "ended_by_customer");
    assert_eq!(stack.capacity(&mitra).await, 0);

    let stats = stack
        .get_ok(Api::Internal, "/internal/dashboard/stats", Some(&operator))
        .await;
    assert_eq!(
        stats,
        json!({ "online_mitras": 1, "available_mitras": 1, "active_sessions": 0 })
    );
    stack.stop().await;
}
