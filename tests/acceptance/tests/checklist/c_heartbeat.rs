//! Section C — the heartbeat: one Valkey round trip and zero Postgres statements per ping; the
//! deactivation guard from Valkey; the Postgres fallback while Valkey is down.

use crate::common::{heartbeat_at, pg_heartbeat_at, DEADLINE};
use halo_acceptance::{eventually, Mitra, Stack, StackOptions};
use std::time::Duration;

/// Statements that touch a mitra's online row: every write the heartbeat could make.
const ONLINE_ROW_UPDATES: &str = "%UPDATE mitra_online_status%";

async fn heartbeats(stack: &Stack, mitra: &Mitra, n: usize) {
    for _ in 0..n {
        let ack = stack.heartbeat(mitra).await.expect(200);
        assert_eq!(ack["ok"], true);
    }
}

#[tokio::test]
async fn c_online_mitra_heartbeats_for_a_cycle() {
    let stack = Stack::start().await;
    let mitra = stack.online_mitra().await;
    for _ in 0..3 {
        let ack = stack.heartbeat(&mitra).await.expect(200);
        assert_eq!(ack["is_online"], true);
        assert_eq!(ack["interval_seconds"], 30);
    }
}

#[tokio::test]
async fn c_heartbeat_does_no_postgres_statement() {
    let stack = Stack::start().await;
    let mitra = stack.online_mitra().await;
    let (before, updates_before) = (
        stack.public().metrics().await,
        stack.statement_calls(ONLINE_ROW_UPDATES).await,
    );
    heartbeats(&stack, &mitra, 20).await;
    let after = stack.public().metrics().await;
    assert_eq!(after.pg_from_requests_since(&before), 0);
    assert_eq!(after.valkey("heartbeat") - before.valkey("heartbeat"), 20);
    assert_eq!(
        stack.statement_calls(ONLINE_ROW_UPDATES).await,
        updates_before,
        "no UPDATE mitra_online_status per ping"
    );
}

#[tokio::test]
async fn c_heartbeat_key_advances_on_each_ping() {
    let stack = Stack::start().await;
    let mitra = stack.online_mitra().await;
    let mut last = heartbeat_at(&stack, mitra.id).await.unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        stack.heartbeat(&mitra).await.expect(200);
        let now = heartbeat_at(&stack, mitra.id).await.unwrap();
        assert!(now > last, "{now} after {last}");
        last = now;
    }
}

#[tokio::test]
async fn c_heartbeat_mirror_advances_last_heartbeat_at() {
    let stack =
        Stack::with(StackOptions::default().env("HEARTBEAT_MIRROR_INTERVAL_SECONDS", 1)).await;
    let mitra = stack.online_mitra().await;
    let toggled = pg_heartbeat_at(&stack, mitra.id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    stack.heartbeat(&mitra).await.expect(200);
    let pinged = heartbeat_at(&stack, mitra.id).await.unwrap();
    assert!(pinged > toggled);
    eventually("last_heartbeat_at = the ping", DEADLINE, || async {
        pg_heartbeat_at(&stack, mitra.id).await == Some(pinged)
    })
    .await;
}

#[tokio::test]
async fn c_operator_deactivates_mitra() {
    let stack = Stack::start().await;
    let mitra = stack.online_mitra().await;
    let view = stack.set_active(&mitra, false).await.expect(200);
    assert_eq!(view["is_active"], false);
    assert_eq!(view["deactivated"], true);
}

#[tokio::test]
async fn c_deactivated_set_updated_at_once() {
    let stack = Stack::start().await;
    let mitra = stack.online_mitra().await;
    stack.set_active(&mitra, false).await.expect(200);
    // No wait: the PATCH answered after the mirror write.
    assert!(stack.vk_is_member("mitras:deactivated", mitra.id).await);
}

#[tokio::test]
async fn c_deactivated_heartbeat_is_403() {
    let stack = Stack::start().await;
    let mitra = stack.online_mitra().await;
    stack.set_active(&mitra, false).await.expect(200);
    let reply = stack.heartbeat(&mitra).await;
    assert_eq!((reply.status, reply.code()), (403, "ACCOUNT_INACTIVE"));
}

#[tokio::test]
async fn c_deactivated_guard_does_no_postgres_query() {
    let stack = Stack::start().await;
    let mitra = stack.online_mitra().await;
    stack.set_active(&mitra, false).await.expect(200);
    let before = stack.public().metrics().await;
    let mitras_reads = stack.statement_calls("%FROM mitras%").await;
    assert_eq!(stack.heartbeat(&mitra).await.status, 403);
    let after = stack.public().metrics().await;
    assert_eq!(after.pg_from_requests_since(&before), 0);
    assert_eq!(stack.statement_calls("%FROM mitras%").await, mitras_reads);
}

#[tokio::test]
async fn c_heartbeat_falls_back_to_postgres_with_valkey_down() {
    let mut stack = Stack::start().await;
    let active = stack.online_mitra().await;
    let inactive = stack.online_mitra().await;
    stack.set_active(&inactive, false).await.expect(200);
    stack.valkey.kill().await;
    let ack = stack.heartbeat(&active).await.expect(200);
    assert_eq!(ack["is_online"], true);
    let refused = stack.heartbeat(&inactive).await;
    assert_eq!((refused.status, refused.code()), (403, "ACCOUNT_INACTIVE"));
    let metrics = stack.public().metrics().await;
    assert_eq!(metrics.fallbacks("heartbeat"), 2);
    assert_eq!(metrics.pg("heartbeat_fallback"), 2);
    assert!(stack.public().logged_fallback("heartbeat"));
}

#[tokio::test]
async fn c_valkey_restart_returns_heartbeat_to_valkey() {
    let mut stack = Stack::start().await;
    let mitra = stack.online_mitra().await;
    stack.valkey.kill().await;
    stack.heartbeat(&mitra).await.expect(200);
    stack.valkey.restart().await;
    eventually("a reseed after the restart", DEADLINE, || async {
        stack.public().metrics().await.seeds("reconnect")
            + stack.public().metrics().await.seeds("flushed")
            > 0
    })
    .await;
    let before = stack.public().metrics().await;
    let ack = stack.heartbeat(&mitra).await.expect(200);
    assert_eq!(ack["is_online"], true);
    let after = stack.public().metrics().await;
    assert_eq!(after.fallbacks("heartbeat"), before.fallbacks("heartbeat"));
    // One send, or two when this request's worker finds its connection from before the
    // restart dropped and sends again on the reconnected one.
    let sends = after.valkey("heartbeat") - before.valkey("heartbeat");
    assert!((1..=2).contains(&sends), "{sends} sends");
}
