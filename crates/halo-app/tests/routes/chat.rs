//! The chat-session lifecycle over HTTP: blast, targeted request, pay, accept, reject, end,
//! extend and reroute, each error code, and capacity after every transition.

use crate::harness::{code, uuid, Api, Login, Stack};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

async fn request(stack: &Stack, customer: &Login, body: Value) -> (u16, Value) {
    stack
        .post(
            Api::Public,
            "/api/client/chat/requests",
            Some(&customer.access),
            body,
        )
        .await
}

async fn client_call(
    stack: &Stack,
    customer: &Login,
    session: Uuid,
    action: &str,
    body: Value,
) -> (u16, Value) {
    stack
        .post(
            Api::Public,
            &format!("/api/client/chat/sessions/{session}/{action}"),
            Some(&customer.access),
            body,
        )
        .await
}

async fn session_row_status(stack: &Stack, session: Uuid) -> String {
    stack
        .db
        .client()
        .await
        .query_one(
            "SELECT status FROM chat_sessions WHERE id = $1",
            &[&session],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_blast_reaching_nobody_is_recorded_failed() {
    let stack = Stack::start().await;
    let customer = stack.customer("+628400000100").await;
    let (status, reply) = request(&stack, &customer, json!({ "minutes": 10 })).await;
    assert_eq!((status, code(&reply)), (409, "NO_BESTIE_AVAILABLE"));
    let failed: i64 = stack
        .db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM chat_sessions WHERE status = 'failed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(failed, 1);
    stack.stop().await;
}

#[tokio::test]
async fn a_blast_skips_mitras_at_capacity_and_the_first_accept_wins() {
    let (stack, operator) = one_customer_per_mitra().await;
    let busy = stack.online_mitra(&operator, "+628400000001").await;
    let free = stack.online_mitra(&operator, "+628400000002").await;
    let customer = stack.customer("+628400000101").await;

    let first = stack.blast(&customer).await;
    let (status, _) = stack.accept(&busy, first).await;
    assert_eq!(status, 200);
    let (status, reply) = stack.accept(&free, first).await;
    assert_eq!((status, code(&reply)), (409, "REQUEST_TAKEN"));

    let (status, second) = request(&stack, &customer, json!({ "minutes": 10 })).await;
    assert_eq!(
        (status, second["notified"].as_u64()),
        (201, Some(1)),
        "the busy mitra is skipped"
    );
    let second = uuid(&second["session_id"]);
    let (status, reply) = stack.accept(&busy, second).await;
    assert_eq!(
        (status, code(&reply)),
        (404, "NOT_FOUND"),
        "never offered to the busy mitra"
    );

    let (status, _) = stack
        .post(
            Api::Public,
            &format!("/api/mitra/chat/requests/{second}/reject"),
            Some(&free.access),
            json!(null),
        )
        .await;
    assert_eq!(status, 200);
    let open = stack
        .get_ok(Api::Public, "/api/mitra/chat/requests", Some(&free.access))
        .await;
    assert_eq!(
        open["requests"],
        json!([]),
        "a rejected request is no longer open"
    );
    stack.stop().await;
}

#[tokio::test]
async fn accepting_beyond_capacity_is_refused() {
    let (stack, operator) = one_customer_per_mitra().await;
    let mitra = stack.online_mitra(&operator, "+628400000003").await;
    let a = stack.customer("+628400000102").await;
    let b = stack.customer("+628400000103").await;
    let first = stack.blast(&a).await;
    let second = stack.blast(&b).await;
    assert_eq!(stack.accept(&mitra, first).await.0, 200);
    let (status, reply) = stack.accept(&mitra, second).await;
    assert_eq!((status, code(&reply)), (409, "AT_CAPACITY"));
    assert_eq!(stack.capacity(&mitra).await, 1);
    stack.stop().await;
}

#[tokio::test]
async fn a_targeted_request_holds_the_slot_until_paid_then_extends_and_ends() {
    let stack = Stack::start().await;
    let operator = stack.operator().await;
    let mitra = stack.online_mitra(&operator, "+628400000004").await;
    let customer = stack.customer("+628400000104").await;

    let body = json!({ "minutes": 10, "mitra_id": mitra.id });
    let (status, created) = request(&stack, &customer, body).await;
    assert_eq!(
        (status, created["status"].as_str()),
        (201, Some("pending_payment")),
        "{created}"
    );
    let session = uuid(&created["session_id"]);
    assert_eq!(stack.capacity(&mitra).await, 1, "the slot is held");

    let (status, reply) = client_call(
        &stack,
        &customer,
        session,
        "extend",
        json!({ "minutes": 5 }),
    )
    .await;
    assert_eq!(
        (status, code(&reply)),
        (409, "INVALID_STATE"),
        "not active yet"
    );

    let (status, paid) = client_call(&stack, &customer, session, "pay", json!(null)).await;
    assert_eq!((status, paid["status"].as_str()), (200, Some("active")));
    let (status, reply) = client_call(&stack, &customer, session, "pay", json!(null)).await;
    assert_eq!(
        (status, &reply),
        (200, &paid),
        "a retried pay answers as the first"
    );

    let (status, extended) = client_call(
        &stack,
        &customer,
        session,
        "extend",
        json!({ "minutes": 5 }),
    )
    .await;
    assert_eq!(status, 200, "{extended}");
    let before = time::OffsetDateTime::parse(
        paid["ends_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let after = time::OffsetDateTime::parse(
        extended["ends_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!((after - before).whole_minutes(), 5);

    stack
        .ok(
            Api::Public,
            Method::POST,
            "/api/mitra/status/offline",
            Some(&mitra.access),
            None,
        )
        .await;
    let (status, reply) = client_call(
        &stack,
        &customer,
        session,
        "extend",
        json!({ "minutes": 5 }),
    )
    .await;
    assert_eq!((status, code(&reply)), (409, "BESTIE_UNREACHABLE"));

    let ended = stack
        .ok(
            Api::Public,
            Method::POST,
            &format!("/api/mitra/chat/sessions/{session}/end"),
            Some(&mitra.access),
            None,
        )
        .await;
    assert_eq!(ended["end_reason"], "ended_by_mitra");
    let (status, reply) = client_call(&stack, &customer, session, "end", json!(null)).await;
    assert_eq!(
        (status, code(&reply)),
        (409, "INVALID_STATE"),
        "already ended"
    );
    assert_eq!(stack.capacity(&mitra).await, 0);
    assert_eq!(session_row_status(&stack, session).await, "ended");
    stack.stop().await;
}

#[tokio::test]
async fn a_targeted_request_needs_an_available_mitra() {
    let stack = Stack::start().await;
    let operator = stack.operator().await;
    let offline = stack.create_mitra(&operator, "+628400000005").await;
    let customer = stack.customer("+628400000105").await;
    let (status, reply) = request(
        &stack,
        &customer,
        json!({ "minutes": 10, "mitra_id": offline }),
    )
    .await;
    assert_eq!((status, code(&reply)), (409, "BESTIE_UNAVAILABLE"));
    let (status, reply) = request(
        &stack,
        &customer,
        json!({ "minutes": 10, "mitra_id": Uuid::new_v4() }),
    )
    .await;
    assert_eq!(
        (status, code(&reply)),
        (409, "BESTIE_UNAVAILABLE"),
        "unknown mitra"
    );
    stack.stop().await;
}

#[tokio::test]
async fn an_operator_reroutes_an_active_session_and_both_capacities_follow() {
    let stack = Stack::start().await;
    let operator = stack.operator().await;
    let a = stack.online_mitra(&operator, "+628400000006").await;
    let b = stack.create_mitra(&operator, "+628400000007").await;
    let customer = stack.customer("+628400000106").await;
    let session = stack.blast(&customer).await;
    assert_eq!(stack.accept(&a, session).await.0, 200);

    let path = format!("/internal/chat/sessions/{session}/reroute");
    let (status, reply) = stack
        .post(
            Api::Internal,
            &path,
            Some(&operator),
            json!({ "mitra_id": b }),
        )
        .await;
    assert_eq!(
        (status, code(&reply)),
        (409, "BESTIE_UNAVAILABLE"),
        "B is offline"
    );

    let b_login = stack.login("mitra", "+628400000007").await;
    stack
        .ok(
            Api::Public,
            Method::POST,
            "/api/mitra/status/online",
            Some(&b_login.access),
            None,
        )
        .await;
    let moved = stack
        .ok(
            Api::Internal,
            Method::POST,
            &path,
            Some(&operator),
            Some(json!({ "mitra_id": b })),
        )
        .await;
    assert_eq!(uuid(&moved["mitra_id"]), b);
    assert_eq!(stack.capacity(&a).await, 0);
    assert_eq!(stack.capacity(&b_login).await, 1);
    stack.stop().await;
}

/// A stack whose mitras take one customer at a time, and its operator's token.
async fn one_customer_per_mitra() -> (Stack, String) {
    let stack = Stack::start().await;
    let operator = stack.operator().await;
    stack
        .set_config(&operator, "max_customers_per_mitra", 1)
        .await;
    (stack, operator)
}
