//! Section B — online/offline toggles write Postgres first, then Valkey; a Valkey failure is
//! absorbed and healed.

use crate::common::{heartbeat_at, DEADLINE};
use halo_acceptance::{eventually, Stack};
use std::time::Duration;
use time::OffsetDateTime;

const WITHIN_ONE_SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn b_toggle_online_updates_postgres() {
    let stack = Stack::start().await;
    let mitra = stack.mitra().await;
    assert!(!stack.pg_is_online(mitra.id).await);
    let reply = stack.toggle(&mitra, true).await.expect(200);
    assert_eq!(reply["is_online"], true);
    assert!(stack.pg_is_online(mitra.id).await);
}

#[tokio::test]
async fn b_toggle_online_adds_to_online_set_within_1s() {
    let stack = Stack::start().await;
    let mitra = stack.mitra().await;
    stack.toggle(&mitra, true).await.expect(200);
    eventually("SISMEMBER mitras:online = 1", WITHIN_ONE_SECOND, || async {
        stack.vk_is_member("mitras:online", mitra.id).await
    })
    .await;
}

#[tokio::test]
async fn b_toggle_online_writes_fresh_heartbeat() {
    let stack = Stack::start().await;
    let mitra = stack.mitra().await;
    let before = OffsetDateTime::now_utc();
    stack.toggle(&mitra, true).await.expect(200);
    let at = heartbeat_at(&stack, mitra.id).await.expect("heartbeat key");
    assert!(at >= before && at <= OffsetDateTime::now_utc(), "{at}");
}

#[tokio::test]
async fn b_toggle_offline_answers_offline() {
    let stack = Stack::start().await;
    let mitra = stack.online_mitra().await;
    let reply = stack.toggle(&mitra, false).await.expect(200);
    assert_eq!(reply["is_online"], false);
}

#[tokio::test]
async fn b_toggle_offline_clears_postgres_and_mirror() {
    let stack = Stack::start().await;
    let mitra = stack.online_mitra().await;
    stack.toggle(&mitra, false).await.expect(200);
    assert!(!stack.pg_is_online(mitra.id).await);
    assert!(!stack.vk_is_member("mitras:online", mitra.id).await);
    assert_eq!(stack.heartbeat_key(mitra.id).await, None);
}

#[tokio::test]
async fn b_toggles_write_paired_audit_rows() {
    let stack = Stack::start().await;
    let mitra = stack.online_mitra().await;
    stack.toggle(&mitra, false).await.expect(200);
    // A repeated toggle is not a transition: no extra row.
    stack.toggle(&mitra, false).await.expect(200);
    let rows: Vec<(String, String)> = stack
        .pg
        .query(
            "SELECT status, reason FROM mitra_online_logs WHERE mitra_id = $1 ORDER BY id",
            &[&mitra.id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let statuses: Vec<&str> = rows.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(statuses, ["online", "offline"], "{rows:?}");
}

#[tokio::test]
async fn b_toggle_with_valkey_down_succeeds_and_updates_postgres() {
    let mut stack = Stack::start().await;
    let mitra = stack.mitra().await;
    stack.valkey.kill().await;
    stack.toggle(&mitra, true).await.expect(200);
    assert!(stack.pg_is_online(mitra.id).await);
    let metrics = stack.public().metrics().await;
    assert_eq!(metrics.write_failures("mark_online"), 1);
    let failures = stack.public().events("mirror.write_failed");
    assert!(
        failures.iter().any(|e| e["op"] == "mark_online"),
        "{failures:?}"
    );
}

#[tokio::test]
async fn b_valkey_restart_rebuilds_online_set() {
    let mut stack = Stack::start().await;
    let mitra = stack.mitra().await;
    stack.valkey.kill().await;
    stack.toggle(&mitra, true).await.expect(200);
    stack.valkey.restart().await;
    eventually("the mitra back in mitras:online", DEADLINE, || async {
        stack.vk_is_member("mitras:online", mitra.id).await
    })
    .await;
    stack
        .wait_in_sync("no drift after the restart", DEADLINE)
        .await;
}
