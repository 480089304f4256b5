//! Durable timers driven from Postgres, with two instances sweeping the same database: each
//! due session moves once, and capacity follows.

use crate::harness::{Api, Stack};
use halo_testkit::eventually;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(10);

async fn status_and_reason(stack: &Stack, session: Uuid) -> (String, Option<String>) {
    let row = stack
        .db
        .client()
        .await
        .query_one(
            "SELECT status, end_reason FROM chat_sessions WHERE id = $1",
            &[&session],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

async fn wait_for(stack: &Stack, session: Uuid, status: &str, reason: &str) {
    let want = (status.to_owned(), Some(reason.to_owned()));
    eventually(&format!("session {status} ({reason})"), DEADLINE, || {
        let want = want.clone();
        async move { status_and_reason(stack, session).await == want }
    })
    .await;
}

#[tokio::test]
async fn due_timers_fire_once_with_two_instances_and_capacity_follows() {
    let stack = Stack::start().await;
    let second = stack.second_public().await;
    let operator = stack.operator().await;
    stack
        .set_config(&operator, "max_customers_per_mitra", 5)
        .await;
    let mitra = stack.online_mitra(&operator, "+628600000001").await;

    let active: Vec<Uuid> = {
        let mut ids = Vec::new();
        for n in 0..3 {
            let customer = stack.customer(&format!("+62860000010{n}")).await;
            let session = stack.blast(&customer).await;
            assert_eq!(stack.accept(&mitra, session).await.0, 200);
            ids.push(session);
        }
        ids
    };
    let searching = stack.blast(&stack.customer("+628600000110").await).await;
    let targeted = stack
        .ok(
            Api::Public,
            Method::POST,
            "/api/client/chat/requests",
            Some(&stack.customer("+628600000111").await.access),
            Some(json!({ "minutes": 10, "mitra_id": mitra.id })),
        )
        .await;
    let pending: Uuid = targeted["session_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        stack.capacity(&mitra).await,
        4,
        "three active sessions and one held slot"
    );

    // The timer never waits in memory: moving the deadlines in Postgres is enough.
    stack
        .sql(
            "UPDATE chat_sessions SET ends_at = now() - interval '1 second' WHERE status = 'active';
             UPDATE chat_sessions SET created_at = now() - interval '1 hour'
              WHERE status IN ('searching', 'pending_payment');",
        )
        .await;
    for session in &active {
        wait_for(&stack, *session, "ended", "expired").await;
    }
    wait_for(&stack, searching, "failed", "blast_timeout").await;
    wait_for(&stack, pending, "cancelled", "payment_timeout").await;
    eventually("capacity back to 0", DEADLINE, || async {
        stack.capacity(&mitra).await == 0
    })
    .await;

    // Five sessions were due; the three instances sweeping together moved exactly five.
    let instances = [&stack.public, &stack.internal, &second];
    let moved = || {
        instances
            .iter()
            .map(|app| app.availability.metrics().timer_transitions())
            .sum::<u64>()
    };
    // Each counter moves just after its instance's commit: wait until all five are counted.
    eventually("five transitions counted", DEADLINE, || async {
        moved() >= 5
    })
    .await;
    assert_eq!(moved(), 5, "each due session moved once, by one instance");
    second.stop().await.unwrap();
    stack.stop().await;
}
