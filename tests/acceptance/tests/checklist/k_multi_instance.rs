//! Section K — two public-api processes and one internal-api on the same stores.

use crate::common::{
    assert_mirror_matches_postgres, heartbeat_at, pg_heartbeat_at, wait_max_customers_seen, world,
    DEADLINE,
};
use halo_acceptance::{eventually, Kind, Stack, StackOptions};
use reqwest::Method;
use std::collections::BTreeSet;

async fn two_publics(options: StackOptions) -> Stack {
    Stack::with(options.publics(2)).await
}

#[tokio::test]
async fn k_seeds_of_two_instances_are_idempotent() {
    let mut stack = two_publics(StackOptions::default()).await;
    world(&stack).await;
    // Both public instances restart at once: two concurrent start-up seeds.
    stack.publics[0].stop().await;
    stack.publics[1].stop().await;
    let (a, b) = tokio::join!(stack.spawn(Kind::Public), stack.spawn(Kind::Public));
    stack.publics = vec![a, b];
    for public in &stack.publics {
        let seeds = public.events("mirror.seed");
        assert_eq!(seeds.len(), 1);
        assert_eq!(seeds[0]["online"], 2);
    }
    assert_mirror_matches_postgres(&stack).await;
}

#[tokio::test]
async fn k_concurrent_toggles_of_one_mitra_are_correct() {
    let stack = two_publics(StackOptions::default()).await;
    let mitra = stack.mitra().await;
    for online in [true, false, true] {
        let path = if online { "online" } else { "offline" };
        let path = format!("/api/mitra/status/{path}");
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..10 {
            let (http, token) = (stack.http.clone(), mitra.token.clone());
            let url = stack.publics[i % 2].url(&path);
            calls.spawn(async move { http.call(Method::POST, &url, Some(&token), None).await });
        }
        while let Some(reply) = calls.join_next().await {
            reply.unwrap().expect(200);
        }
        assert_eq!(stack.pg_is_online(mitra.id).await, online);
        assert_eq!(stack.vk_is_member("mitras:online", mitra.id).await, online);
    }
    let transitions = stack
        .pg_count(
            "SELECT count(*) FROM mitra_online_logs WHERE mitra_id = $1",
            mitra.id,
        )
        .await;
    assert_eq!(transitions, 3, "one audit row per real transition");
    assert_eq!(stack.drift().await["in_sync"], true);
}

async fn recomputes(stack: &Stack) -> u64 {
    stack.publics[0].metrics().await.beacon_recomputes()
        + stack.publics[1].metrics().await.beacon_recomputes()
}

#[tokio::test]
async fn k_beacon_snapshot_shared_across_instances() {
    let stack = two_publics(StackOptions::default()).await;
    stack.online_mitra().await;
    stack.bust_snapshot().await;
    let before = recomputes(&stack).await;
    let a = stack.beacon(0).await;
    let b = stack.beacon(1).await;
    assert_eq!(a, b);
    for i in 0..20 {
        assert_eq!(stack.beacon(i % 2).await, a);
    }
    // One recompute across both; which instance made it is open, since each one's event pump
    // also looks at the beacon (SPEC §12.9).
    assert_eq!(
        recomputes(&stack).await - before,
        1,
        "one recompute across both"
    );
}

#[tokio::test]
async fn k_config_invalidate_reaches_other_instances() {
    let stack = two_publics(StackOptions::default()).await;
    let mitra = stack.mitra().await;
    let subscribers: Vec<(String, i64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg("config:invalidate")
        .query_async(&mut stack.vk().await)
        .await
        .unwrap();
    assert_eq!(subscribers[0].1, 3, "every instance subscribed");
    stack.beacon(0).await;
    stack.set_config("max_customers_per_mitra", 7).await;
    assert_eq!(stack.vk_get("availability:snapshot").await, None);
    // Each public instance reloads its settings on the message (the safety net is 30 s).
    for i in 0..2 {
        wait_max_customers_seen(&stack, i, &mitra, 7).await;
    }
}

#[tokio::test]
async fn k_heartbeat_mirror_from_both_instances_is_idempotent() {
    let stack =
        two_publics(StackOptions::default().env("HEARTBEAT_MIRROR_INTERVAL_SECONDS", 1)).await;
    let mitras = [stack.online_mitra().await, stack.online_mitra().await];
    for round in 0..3 {
        for (i, mitra) in mitras.iter().enumerate() {
            stack.heartbeat_on((i + round) % 2, mitra).await.expect(200);
        }
        for mitra in &mitras {
            let valkey = heartbeat_at(&stack, mitra.id).await;
            eventually("Postgres to hold the last ping", DEADLINE, || async {
                pg_heartbeat_at(&stack, mitra.id).await == valkey
            })
            .await;
        }
    }
    let mut failed = 0;
    let mut instances_that_mirrored = BTreeSet::new();
    for (i, instance) in stack.publics.iter().chain([&stack.internal]).enumerate() {
        let metrics = instance.metrics().await;
        failed += metrics.sweeps("heartbeat_mirror", "failed");
        if metrics.pg("record_heartbeats") > 0 {
            instances_that_mirrored.insert(i);
        }
    }
    assert_eq!(failed, 0, "no errors");
    assert!(!instances_that_mirrored.is_empty());
}
