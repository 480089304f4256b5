//! Section J — a Valkey outage: every path keeps working from Postgres, nothing is lost, and
//! the product heals on its own when Valkey returns (restarted empty, on the same port).

use crate::common::DEADLINE;
use halo_acceptance::{eventually, Stack};
use reqwest::Method;
use serde_json::Value;

async fn readiness(stack: &Stack) -> Value {
    stack
        .app(Method::GET, "/readyz", "", None)
        .await
        .expect(200)
}

#[tokio::test]
async fn j_outage_reported_degraded_not_down() {
    let mut stack = Stack::start().await;
    stack.valkey.kill().await;
    let ready = readiness(&stack).await;
    assert_eq!(ready["status"], "degraded");
    assert_eq!(ready["postgres"], "up");
}

#[tokio::test]
async fn j_beacon_falls_back_to_postgres() {
    let mut stack = Stack::start().await;
    stack.online_mitra().await;
    stack.online_mitra().await;
    let with_valkey = stack.beacon(0).await;
    stack.valkey.kill().await;
    assert_eq!(stack.beacon(0).await, with_valkey, "same answer");
    let metrics = stack.public().metrics().await;
    // At least this poll's; the event pump's once-a-second look at the beacon (SPEC §12.9)
    // may add its own.
    assert!(
        metrics.fallbacks("count_available") >= 1,
        "the poll fell back"
    );
    // The instance answers its last beacon (Valkey's, or one from Postgres) for the TTL: at
    // most one Postgres computation per TTL, and none for the polls after it.
    let computed = metrics.pg("candidate_states");
    assert!(computed <= 1, "{computed} Postgres computations");
    stack.beacon(0).await;
    assert_eq!(
        stack.public().metrics().await.pg("candidate_states"),
        computed
    );
}

#[tokio::test]
async fn j_blast_falls_back_to_postgres() {
    let mut stack = Stack::start().await;
    stack.online_mitra().await;
    let customer = stack.customer().await;
    stack.valkey.kill().await;
    let blast = stack.blast(&customer).await.expect(201);
    assert_eq!(blast["notified"], 1);
    assert_eq!(
        stack.public().metrics().await.fallbacks("offer_candidates"),
        1
    );
}

#[tokio::test]
async fn j_heartbeat_succeeds_while_sweep_skips() {
    let mut stack = Stack::with(
        halo_acceptance::StackOptions::default().env("MITRA_AUTO_OFFLINE_SWEEP_SECONDS", 1),
    )
    .await;
    let mitra = stack.online_mitra().await;
    stack.valkey.kill().await;
    let ack = stack.heartbeat(&mitra).await.expect(200);
    assert_eq!(ack["is_online"], true);
    eventually("an auto-offline tick skipped", DEADLINE, || async {
        stack
            .public()
            .metrics()
            .await
            .sweeps("auto_offline", "skipped")
            + stack
                .internal
                .metrics()
                .await
                .sweeps("auto_offline", "skipped")
            > 0
    })
    .await;
    assert!(stack.pg_is_online(mitra.id).await);
}

#[tokio::test]
async fn j_toggle_during_outage_back_in_set_after_restart() {
    let mut stack = Stack::start().await;
    let mitra = stack.mitra().await;
    stack.valkey.kill().await;
    stack.toggle(&mitra, true).await.expect(200);
    assert!(stack.pg_is_online(mitra.id).await);
    stack.valkey.restart().await;
    eventually("mitras:online to hold the mitra", DEADLINE, || async {
        stack.vk_is_member("mitras:online", mitra.id).await
    })
    .await;
    stack.wait_in_sync("no drift", DEADLINE).await;
}

#[tokio::test]
async fn j_valkey_restart_reseeds_and_ends_degraded_period() {
    let mut stack = Stack::start().await;
    let mitra = stack.online_mitra().await;
    stack.valkey.kill().await;
    assert_eq!(readiness(&stack).await["status"], "degraded");
    stack.valkey.restart().await;
    eventually("a reconnect seed", DEADLINE, || async {
        let (p, i) = (
            stack.public().metrics().await,
            stack.internal.metrics().await,
        );
        p.seeds("reconnect") + p.seeds("flushed") + i.seeds("reconnect") + i.seeds("flushed") > 0
    })
    .await;
    eventually("readiness back to ready", DEADLINE, || async {
        readiness(&stack).await["status"] == "ready"
    })
    .await;
    stack.wait_in_sync("no drift", DEADLINE).await;
    let fallbacks = stack.public().metrics().await.fallbacks("heartbeat");
    stack.heartbeat(&mitra).await.expect(200);
    assert_eq!(
        stack.public().metrics().await.fallbacks("heartbeat"),
        fallbacks
    );
}

#[tokio::test]
async fn j_hung_valkey_fails_fast_and_heals() {
    let stack = Stack::start().await;
    let mitra = stack.online_mitra().await;
    stack.valkey.pause();
    let ack = stack.heartbeat(&mitra).await.expect(200);
    assert_eq!(ack["is_online"], true);
    assert_eq!(stack.public().metrics().await.fallbacks("heartbeat"), 1);
    stack.valkey.resume();
    stack
        .wait_in_sync("no drift after the pause", DEADLINE)
        .await;
    assert!(stack.pg_is_online(mitra.id).await);
}
