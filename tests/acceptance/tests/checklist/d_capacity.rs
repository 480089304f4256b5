//! Section D — `mitra:capacity:<id>` follows the session lifecycle (re-derived from Postgres
//! after every transition) and gates the blast.

use crate::common::DEADLINE;
use halo_acceptance::{eventually, Mitra, Stack};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

const WITHIN_ONE_SECOND: Duration = Duration::from_secs(1);

async fn capacity_is(stack: &Stack, mitra: &Mitra, n: u32) {
    let what = format!("mitra:capacity = {n}");
    eventually(&what, WITHIN_ONE_SECOND, || async {
        stack.capacity_key(mitra.id).await == Some(n.to_string())
    })
    .await;
}

/// One mitra with two accepted chats.
async fn two_chats(stack: &Stack) -> (Mitra, Uuid, Uuid) {
    let mitra = stack.online_mitra().await;
    let first = stack.start_chat(&mitra).await;
    let second = stack.start_chat(&mitra).await;
    (mitra, first, second)
}

/// The session timer fires now: its end is moved into the past (a test cannot wait the
/// minutes a real chat lasts), and the services' own timer loop ends it.
async fn expire(stack: &Stack, session: Uuid) {
    stack
        .pg
        .execute(
            "UPDATE chat_sessions SET ends_at = now() - interval '1 second' WHERE id = $1",
            &[&session],
        )
        .await
        .unwrap();
    eventually("the timer to end the session", DEADLINE, || async {
        stack.session_status(session).await == "ended"
    })
    .await;
}

#[tokio::test]
async fn d_fresh_mitra_has_zero_capacity() {
    let stack = Stack::start().await;
    let mitra = stack.online_mitra().await;
    assert_eq!(stack.capacity_key(mitra.id).await.as_deref(), Some("0"));
}

#[tokio::test]
async fn d_accepted_blast_starts_chat() {
    let stack = Stack::start().await;
    let mitra = stack.online_mitra().await;
    let session = stack.start_chat(&mitra).await;
    assert_eq!(stack.session_status(session).await, "active");
}

#[tokio::test]
async fn d_capacity_one_after_first_accept() {
    let stack = Stack::start().await;
    let mitra = stack.online_mitra().await;
    stack.start_chat(&mitra).await;
    capacity_is(&stack, &mitra, 1).await;
}

#[tokio::test]
async fn d_second_customer_accepted_by_same_mitra() {
    let stack = Stack::start().await;
    let (mitra, first, second) = two_chats(&stack).await;
    assert_ne!(first, second);
    assert_eq!(stack.open_sessions(mitra.id).await, 2);
}

#[tokio::test]
async fn d_capacity_two_after_second_accept() {
    let stack = Stack::start().await;
    let (mitra, _, _) = two_chats(&stack).await;
    capacity_is(&stack, &mitra, 2).await;
}

#[tokio::test]
async fn d_first_session_expires() {
    let stack = Stack::start().await;
    let (_, first, _) = two_chats(&stack).await;
    expire(&stack, first).await;
    let reason: Option<String> = stack
        .pg
        .query_one(
            "SELECT end_reason FROM chat_sessions WHERE id = $1",
            &[&first],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(reason.as_deref(), Some("expired"));
}

#[tokio::test]
async fn d_capacity_one_after_expiry() {
    let stack = Stack::start().await;
    let (mitra, first, _) = two_chats(&stack).await;
    expire(&stack, first).await;
    capacity_is(&stack, &mitra, 1).await;
}

#[tokio::test]
async fn d_second_session_ends() {
    let stack = Stack::start().await;
    let (mitra, first, second) = two_chats(&stack).await;
    expire(&stack, first).await;
    let ended = stack.end_chat(&mitra, second).await;
    assert_eq!(ended["status"], "ended");
}

#[tokio::test]
async fn d_capacity_zero_after_both_end() {
    let stack = Stack::start().await;
    let (mitra, first, second) = two_chats(&stack).await;
    expire(&stack, first).await;
    stack.end_chat(&mitra, second).await;
    capacity_is(&stack, &mitra, 0).await;
}

async fn reroute(stack: &Stack) -> (Mitra, Mitra, Uuid) {
    let from = stack.online_mitra().await;
    let session = stack.start_chat(&from).await;
    let to = stack.online_mitra().await;
    let moved = stack
        .cc(
            Method::POST,
            &format!("/internal/chat/sessions/{session}/reroute"),
            Some(json!({ "mitra_id": to.id })),
        )
        .await
        .expect(200);
    assert_eq!(moved["mitra_id"], to.id.to_string());
    (from, to, session)
}

#[tokio::test]
async fn d_reroute_moves_active_session() {
    let stack = Stack::start().await;
    let (_, to, session) = reroute(&stack).await;
    let row = stack
        .pg
        .query_one(
            "SELECT mitra_id, status FROM chat_sessions WHERE id = $1",
            &[&session],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Uuid>(0), to.id);
    assert_eq!(row.get::<_, String>(1), "active");
}

#[tokio::test]
async fn d_reroute_rederives_both_capacities() {
    let stack = Stack::start().await;
    let (from, to, _) = reroute(&stack).await;
    // Re-derived before the reroute answered: no wait.
    assert_eq!(stack.capacity_key(from.id).await.as_deref(), Some("0"));
    assert_eq!(stack.capacity_key(to.id).await.as_deref(), Some("1"));
}

#[tokio::test]
async fn d_full_capacity_excludes_mitra_from_blast() {
    let stack = Stack::start().await;
    let full = stack.online_mitra().await;
    let free = stack.online_mitra().await;
    stack
        .vk_set(&format!("mitra:capacity:{}", full.id), "3")
        .await;
    let customer = stack.customer().await;
    let blast = stack.blast(&customer).await.expect(201);
    assert_eq!(blast["notified"], 1);
    let session: Uuid = blast["session_id"].as_str().unwrap().parse().unwrap();
    let notified: Vec<Uuid> = stack
        .pg
        .query(
            "SELECT mitra_id FROM chat_request_notifications WHERE session_id = $1",
            &[&session],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(notified, [free.id]);
}
