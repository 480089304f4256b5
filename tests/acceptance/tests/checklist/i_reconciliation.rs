//! Section I — the reconciliation sweep reseeds the mirror from Postgres on its cadence, and
//! is off when the cadence is 0.

use crate::common::{seed_events, wait_for_seed, DEADLINE};
use halo_acceptance::{eventually, Stack, StackOptions};
use uuid::Uuid;

const BOGUS: &str = "00000000-0000-0000-0000-000000000999";

/// Corrupts the mirror as the checklist does; returns the real mitra removed and the one whose
/// capacity was overwritten.
async fn corrupt(stack: &Stack) -> (Uuid, Uuid) {
    let removed = stack.online_mitra().await;
    let overwritten = stack.online_mitra().await;
    let mut vk = stack.vk().await;
    let _: i64 = redis::cmd("SADD")
        .arg("mitras:online")
        .arg(BOGUS)
        .query_async(&mut vk)
        .await
        .unwrap();
    let _: i64 = redis::cmd("SREM")
        .arg("mitras:online")
        .arg(removed.id.to_string())
        .query_async(&mut vk)
        .await
        .unwrap();
    stack
        .vk_set(&format!("mitra:capacity:{}", overwritten.id), "99")
        .await;
    assert_eq!(stack.drift().await["in_sync"], false);
    (removed.id, overwritten.id)
}

fn reconciling() -> StackOptions {
    StackOptions::default().env("VALKEY_ONLINE_MIRROR_SWEEP_SECONDS", 2)
}

#[tokio::test]
async fn i_reconciliation_logs_a_seed() {
    let stack = Stack::with(reconciling()).await;
    corrupt(&stack).await;
    let before = seed_events(&stack).len();
    let seeds = wait_for_seed(&stack, before).await;
    assert_eq!(seeds[0]["reason"], "reconciliation");
}

#[tokio::test]
async fn i_reconciliation_restores_postgres_state() {
    let stack = Stack::with(reconciling()).await;
    let (removed, overwritten) = corrupt(&stack).await;
    stack.wait_in_sync("reconciliation to heal", DEADLINE).await;
    let online = stack.vk_members("mitras:online").await;
    assert!(!online.contains(BOGUS));
    assert!(online.contains(&removed.to_string()));
    assert_eq!(stack.capacity_key(overwritten).await.as_deref(), Some("0"));
}

#[tokio::test]
async fn i_sweep_disabled_when_env_zero() {
    let stack = Stack::with(
        StackOptions::default()
            .env("VALKEY_ONLINE_MIRROR_SWEEP_SECONDS", 0)
            .env("MITRA_AUTO_OFFLINE_SWEEP_SECONDS", 1),
    )
    .await;
    corrupt(&stack).await;
    // Time passes, measured by the 1 s auto-offline sweep rather than a sleep.
    eventually("four auto-offline ticks", DEADLINE, || async {
        let metrics = stack.public().metrics().await;
        metrics.sweeps("auto_offline", "done") + metrics.sweeps("auto_offline", "lease_held") >= 4
    })
    .await;
    let reasons: Vec<_> = seed_events(&stack)
        .iter()
        .map(|e| e["reason"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(reasons, ["startup", "startup"], "only the start-up seeds");
    assert_eq!(
        stack.drift().await["in_sync"],
        false,
        "the corruption stays"
    );
}
