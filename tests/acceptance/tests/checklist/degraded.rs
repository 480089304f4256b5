//! Degraded mode and recovery (docs/ARCHITECTURE.md, "Mirror health"): while the mirror is not
//! trusted every path answers from Postgres without waiting on Valkey, and no way Valkey can
//! come back — with its old data, empty, flushed, after a pause or a cut connection — takes a
//! live mitra offline or lets a deactivated one through.

use crate::common::DEADLINE;
use futures_util::future::join_all;
use halo_acceptance::{eventually, Mitra, Stack, StackOptions};
use reqwest::Method;
use serde_json::Value;
use std::time::Duration;

async fn readiness(stack: &Stack, i: usize) -> Value {
    stack
        .app_on(i, Method::GET, "/readyz", "", None)
        .await
        .expect(200)
}

async fn wait_mirror(stack: &Stack, i: usize, state: &str) {
    eventually(&format!("public {i}: mirror {state}"), DEADLINE, || async {
        readiness(stack, i).await["mirror"] == state
    })
    .await;
}

async fn status(stack: &Stack, mitra: &Mitra) -> Value {
    stack
        .app(Method::GET, "/api/mitra/status", &mitra.token, None)
        .await
        .expect(200)
}

/// Short heartbeat interval and staleness, and a sweep every second: a wrong sweep shows fast.
async fn fast_staleness(stack: &Stack) {
    stack.set_config("heartbeat_interval_seconds", 5).await;
    stack.set_config("stale_after_seconds", 10).await;
}

fn fast_sweep() -> StackOptions {
    StackOptions::default().env("MITRA_AUTO_OFFLINE_SWEEP_SECONDS", 1)
}

async fn auto_offline_rows(stack: &Stack, mitra: &Mitra) -> i64 {
    stack
        .pg_count(
            "SELECT count(*) FROM mitra_online_logs WHERE mitra_id = $1 AND reason = 'auto_offline'",
            mitra.id,
        )
        .await
}

/// Every path a request takes while Valkey is known to be down: not one round trip to Valkey.
#[tokio::test]
async fn a_down_mirror_costs_requests_no_valkey_round_trip() {
    let mut stack = Stack::start().await;
    // The event pump has looked at the beacon since start-up (SPEC §12.9): with a short TTL,
    // wait until it counts the mitra, so the outage's beacon is the truth's.
    stack.set_config("beacon_cache_ttl_seconds", 1).await;
    let mitra = stack.online_mitra().await;
    let customer = stack.customer().await;
    eventually("the beacon counts the mitra", DEADLINE, || async {
        stack.beacon(0).await["available"] == true
    })
    .await;
    stack.valkey.kill().await;
    stack.heartbeat(&mitra).await.expect(200); // finds Valkey down
    wait_mirror(&stack, 0, "down").await;
    let before = stack.public().metrics().await.valkey_from_requests();
    for _ in 0..10 {
        assert_eq!(stack.heartbeat(&mitra).await.expect(200)["is_online"], true);
        assert_eq!(stack.beacon(0).await["available"], true);
        assert_eq!(status(&stack, &mitra).await["is_online"], true);
    }
    assert_eq!(stack.blast(&customer).await.expect(201)["notified"], 1);
    stack.toggle(&mitra, true).await.expect(200);
    readiness(&stack, 0).await;
    let metrics = stack.public().metrics().await;
    assert_eq!(
        metrics.valkey_from_requests(),
        before,
        "no Valkey wait while down"
    );
    assert!(metrics.mirror_state_is("down"));
    assert!(metrics.fallbacks("heartbeat") >= 11);
}

/// A hung (SIGSTOPped) server costs one deadline, then the breaker is open.
#[tokio::test]
async fn a_paused_valkey_costs_one_deadline_then_none() {
    let stack = Stack::start().await;
    let mitra = stack.online_mitra().await;
    stack.valkey.pause();
    assert_eq!(stack.heartbeat(&mitra).await.expect(200)["is_online"], true);
    wait_mirror(&stack, 0, "down").await;
    let before = stack.public().metrics().await.valkey_from_requests();
    for _ in 0..10 {
        stack.heartbeat(&mitra).await.expect(200);
    }
    assert_eq!(
        stack.public().metrics().await.valkey_from_requests(),
        before
    );
    stack.valkey.resume();
    wait_mirror(&stack, 0, "trusted").await;
    stack
        .wait_in_sync("no drift after the pause", DEADLINE)
        .await;
    let state = stack.public().events("mirror.state");
    assert!(state.iter().any(|e| e["to"] == "down"), "{state:?}");
    assert!(state.iter().any(|e| e["to"] == "trusted"), "{state:?}");
}

/// The reproduction of the mass-offline bug: Valkey dies, its heartbeats frozen at their
/// pre-outage times while the pings go to Postgres, and comes back with that old data. No
/// mitra that kept pinging may be swept; one that stopped before the outage still is.
#[tokio::test]
async fn a_restart_with_old_data_takes_no_pinging_mitra_offline() {
    let mut stack = Stack::with(fast_sweep()).await;
    fast_staleness(&stack).await;
    let pinging = [
        stack.online_mitra().await,
        stack.online_mitra().await,
        stack.online_mitra().await,
    ];
    let quiet = stack.online_mitra().await;
    for mitra in &pinging {
        stack.heartbeat(mitra).await.expect(200);
    }
    stack.valkey.save().await;
    stack.valkey.kill().await;
    // Longer than stale_after: the saved heartbeats are stale by the time Valkey returns.
    let outage_end = tokio::time::Instant::now() + Duration::from_secs(12);
    while tokio::time::Instant::now() < outage_end {
        for mitra in &pinging {
            assert_eq!(stack.heartbeat(mitra).await.expect(200)["is_online"], true);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stack.valkey.restart_with_saved_data().await;
    // Pinging all along, until the sweep (after its post-recovery grace) has taken the quiet
    // mitra: sweeps ran on the recovered mirror, and none took a pinging mitra.
    eventually("the quiet mitra swept", Duration::from_secs(40), || async {
        for mitra in &pinging {
            assert_eq!(
                stack.heartbeat(mitra).await.expect(200)["is_online"],
                true,
                "a live mitra was answered offline after the restart"
            );
        }
        auto_offline_rows(&stack, &quiet).await == 1
    })
    .await;
    for mitra in &pinging {
        assert!(stack.pg_is_online(mitra.id).await);
        assert_eq!(auto_offline_rows(&stack, mitra).await, 0);
    }
    stack.wait_in_sync("no drift", DEADLINE).await;
}

/// Restarted empty: at no instant does a deactivated mitra's ping pass, the beacon say nobody
/// is available, or a blast fail, while online mitras exist in Postgres.
#[tokio::test]
async fn an_empty_restart_is_never_trusted() {
    let mut stack = Stack::start().await;
    // The event pump looks at the beacon every second (SPEC §12.9): with a short TTL, wait
    // until it counts what the test set up, so the restart's beacon is the truth's.
    stack.set_config("beacon_cache_ttl_seconds", 1).await;
    let online = stack.online_mitra().await;
    let deactivated = stack.online_mitra().await;
    stack.set_active(&deactivated, false).await.expect(200);
    eventually(
        "the beacon counts the one active mitra",
        DEADLINE,
        || async { stack.beacon(0).await["count"] == 1 },
    )
    .await;
    stack.valkey.restart().await;
    let end = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < end {
        assert_eq!(
            stack.heartbeat(&deactivated).await.code(),
            "ACCOUNT_INACTIVE"
        );
        assert_eq!(stack.beacon(0).await["count"], 1);
        let customer = stack.customer().await;
        assert_eq!(stack.blast(&customer).await.expect(201)["notified"], 1);
        assert_eq!(
            stack.heartbeat(&online).await.expect(200)["is_online"],
            true
        );
    }
    wait_mirror(&stack, 0, "trusted").await;
    stack.wait_in_sync("reseeded", DEADLINE).await;
}

/// FLUSHDB without a restart (no connection drops): the first read that finds the generation
/// marker missing falls back and has the watcher reseed at once.
#[tokio::test]
async fn a_flush_is_noticed_by_the_read_that_meets_it() {
    let stack = Stack::with(StackOptions::default().env("MIRROR_WATCH_INTERVAL_MS", 60_000)).await;
    // The event pump looks at the beacon every second (SPEC §12.9): a beacon is up to one TTL
    // old, so the TTL is short here.
    stack.set_config("beacon_cache_ttl_seconds", 1).await;
    let mitra = stack.online_mitra().await;
    let deactivated = stack.online_mitra().await;
    stack.set_active(&deactivated, false).await.expect(200);
    stack.flushdb().await;
    assert_eq!(
        stack.heartbeat(&deactivated).await.code(),
        "ACCOUNT_INACTIVE"
    );
    eventually("the beacon counts the online mitra", DEADLINE, || async {
        stack.beacon(0).await["count"] == 1
    })
    .await;
    // The watcher's own cadence is a minute: only the read's report can seed this soon.
    eventually("a flushed reseed", DEADLINE, || async {
        stack.public().metrics().await.seeds("flushed") == 1
    })
    .await;
    wait_mirror(&stack, 0, "trusted").await;
    assert_eq!(stack.heartbeat(&mitra).await.expect(200)["is_online"], true);
    assert!(
        stack
            .vk_is_member("mitras:deactivated", deactivated.id)
            .await
    );
}

/// `CLIENT KILL` cuts every connection with the data intact: the cut request falls back (not
/// resent: the server could have been another with older data), the instance reseeds.
#[tokio::test]
async fn cut_connections_fall_back_and_reseed() {
    let stack = Stack::start().await;
    let mitra = stack.online_mitra().await;
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut stack.vk().await)
        .await
        .unwrap();
    assert!(killed > 0);
    for _ in 0..5 {
        assert_eq!(stack.heartbeat(&mitra).await.expect(200)["is_online"], true);
    }
    eventually("a reconnect seed", DEADLINE, || async {
        stack.public().metrics().await.seeds("reconnect") >= 1
    })
    .await;
    wait_mirror(&stack, 0, "trusted").await;
    stack.wait_in_sync("no drift", DEADLINE).await;
}

/// Two public instances and the internal one seeding at once (a flush makes every watcher
/// reseed), while mitras toggle and one is deactivated: no older seed undoes a newer write,
/// so the mirror ends equal to Postgres with no reconciliation after the last change.
#[tokio::test]
async fn racing_seeds_and_toggles_leave_no_drift() {
    let stack = Stack::with(StackOptions::default().publics(2)).await;
    let mut mitras = Vec::new();
    for _ in 0..6 {
        mitras.push(stack.online_mitra().await);
    }
    for round in 0..6 {
        let stack = &stack;
        let toggles = mitras.iter().enumerate().map(|(i, mitra)| async move {
            let path = if (i + round) % 2 == 0 {
                "online"
            } else {
                "offline"
            };
            let path = format!("/api/mitra/status/{path}");
            stack
                .app_on(i % 2, Method::POST, &path, &mitra.token, None)
                .await
        });
        let reseed = stack.cc(Method::POST, "/internal/mirror/reseed", None);
        let (replies, reseeded) = tokio::join!(join_all(toggles), async {
            stack.flushdb().await;
            reseed.await
        });
        for reply in replies {
            assert!(
                reply.code().is_empty() || reply.code() == "ACCOUNT_INACTIVE",
                "{reply:?}"
            );
        }
        reseeded.expect(200);
        if round == 2 {
            stack.set_active(&mitras[0], false).await.expect(200);
        }
    }
    for i in 0..2 {
        wait_mirror(&stack, i, "trusted").await;
    }
    stack
        .wait_in_sync("no drift after racing seeds", DEADLINE)
        .await;
    assert!(stack.vk_is_member("mitras:deactivated", mitras[0].id).await);
}

/// Two chats on one mitra ended at the same moment: the mirrored capacity equals Postgres
/// (recounts are ordered, whichever write lands first).
#[tokio::test]
async fn concurrent_session_ends_leave_the_capacity_of_postgres() {
    let stack = Stack::start().await;
    let mitra = stack.online_mitra().await;
    for _ in 0..5 {
        let (a, b) = (
            stack.start_chat(&mitra).await,
            stack.start_chat(&mitra).await,
        );
        tokio::join!(stack.end_chat(&mitra, a), stack.end_chat(&mitra, b));
        assert_eq!(stack.capacity_key(mitra.id).await.as_deref(), Some("0"));
    }
}
