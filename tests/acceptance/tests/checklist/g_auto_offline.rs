//! Section G — the auto-offline sweep works from Valkey heartbeats and skips its tick on any
//! Valkey error (never mass-offline from Postgres).

use crate::common::DEADLINE;
use halo_acceptance::{eventually, Mitra, Stack, StackOptions};

fn fast_sweep() -> StackOptions {
    StackOptions::default().env("MITRA_AUTO_OFFLINE_SWEEP_SECONDS", 1)
}

/// Total ticks of `sweep` with `outcome` over every instance.
async fn sweeps(stack: &Stack, sweep: &str, outcome: &str) -> u64 {
    let mut total = stack.internal.metrics().await.sweeps(sweep, outcome);
    for public in &stack.publics {
        total += public.metrics().await.sweeps(sweep, outcome);
    }
    total
}

#[tokio::test]
async fn g_sweep_cadence_comes_from_env() {
    let stack = Stack::with(fast_sweep()).await;
    // With the default 30 s cadence no tick would run in this window.
    eventually("three auto-offline ticks", DEADLINE, || async {
        sweeps(&stack, "auto_offline", "done").await
            + sweeps(&stack, "auto_offline", "lease_held").await
            >= 3
    })
    .await;
}

#[tokio::test]
async fn g_stale_after_set_by_operator() {
    let stack = Stack::start().await;
    stack.set_config("heartbeat_interval_seconds", 5).await;
    let settings = stack.set_config("stale_after_seconds", 15).await;
    assert_eq!(settings["stale_after_seconds"], 15);
    let stored: serde_json::Value = stack
        .pg
        .query_one(
            "SELECT value FROM app_config WHERE key = 'stale_after_seconds'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 15);
}

/// An online mitra that pinged once, whose heartbeat key is then deleted.
async fn lost_heartbeat(stack: &Stack) -> Mitra {
    stack.set_config("heartbeat_interval_seconds", 5).await;
    stack.set_config("stale_after_seconds", 15).await;
    let mitra = stack.online_mitra().await;
    stack.heartbeat(&mitra).await.expect(200);
    stack.vk_del(&format!("mitra:heartbeat:{}", mitra.id)).await;
    mitra
}

#[tokio::test]
async fn g_missing_heartbeat_goes_offline_in_postgres() {
    let stack = Stack::with(fast_sweep()).await;
    let mitra = lost_heartbeat(&stack).await;
    let keeps = stack.online_mitra().await;
    // The lost mitra goes once Postgres's last heartbeat (its toggle) is stale too: the sweep
    // never takes offline a mitra whose newest heartbeat in either store is fresh.
    eventually("the sweep to set the mitra offline", DEADLINE, || async {
        stack.heartbeat(&keeps).await.expect(200);
        !stack.pg_is_online(mitra.id).await
    })
    .await;
    let audit = stack
        .pg_count(
            "SELECT count(*) FROM mitra_online_logs
              WHERE mitra_id = $1 AND status = 'offline' AND reason = 'auto_offline'",
            mitra.id,
        )
        .await;
    assert_eq!(audit, 1);
    assert!(
        stack.pg_is_online(keeps.id).await,
        "a fresh mitra stays online"
    );
}

#[tokio::test]
async fn g_missing_heartbeat_removed_from_valkey() {
    let stack = Stack::with(fast_sweep()).await;
    let mitra = lost_heartbeat(&stack).await;
    eventually("the sweep to remove the mitra", DEADLINE, || async {
        !stack.vk_is_member("mitras:online", mitra.id).await
    })
    .await;
    assert_eq!(stack.heartbeat_key(mitra.id).await, None);
    let ack = stack.heartbeat(&mitra).await.expect(200);
    assert_eq!(ack["is_online"], false, "the app learns it was swept");
}

/// Valkey stops under an online mitra with a fast sweep; waits for three skipped ticks.
async fn outage_with_sweeps() -> (Stack, Mitra, i64) {
    let mut stack = Stack::with(fast_sweep()).await;
    let mitra = stack.online_mitra().await;
    let updates = stack.statement_calls("%UPDATE mitra_online_status%").await;
    stack.valkey.kill().await;
    let skipped = sweeps(&stack, "auto_offline", "skipped").await;
    eventually("three skipped auto-offline ticks", DEADLINE, || async {
        sweeps(&stack, "auto_offline", "skipped").await >= skipped + 3
    })
    .await;
    (stack, mitra, updates)
}

#[tokio::test]
async fn g_sweep_skips_on_valkey_error() {
    let (stack, _, _) = outage_with_sweeps().await;
    let skipped: Vec<_> = stack
        .publics
        .iter()
        .chain([&stack.internal])
        .flat_map(|i| i.events("sweep.skipped"))
        .filter(|e| e["sweep"] == "auto_offline")
        .collect();
    assert!(skipped.len() >= 3, "{skipped:?}");
}

#[tokio::test]
async fn g_no_postgres_update_during_valkey_outage() {
    let (stack, mitra, updates) = outage_with_sweeps().await;
    assert_eq!(
        stack.statement_calls("%UPDATE mitra_online_status%").await,
        updates
    );
    assert_eq!(stack.public().metrics().await.pg("set_offline_many"), 0);
    assert_eq!(stack.internal.metrics().await.pg("set_offline_many"), 0);
    assert!(stack.pg_is_online(mitra.id).await, "nobody mass-offlined");
}
