//! Section A — seed and start-up: the mirror is built from Postgres before traffic is served,
//! and rebuilt when Valkey is flushed under a running backend.

use crate::common::{
    assert_mirror_matches_postgres, parse_time, seed_events, wait_for_seed, world, PG_DEACTIVATED,
    PG_ONLINE,
};
use halo_acceptance::{Kind, Stack};
use time::OffsetDateTime;
use uuid::Uuid;

/// A populated world, then a cold start: both services stopped, Valkey emptied, and one
/// public-api started, so everything in Valkey comes from its start-up seed.
async fn cold_start() -> (Stack, OffsetDateTime) {
    let mut stack = Stack::start().await;
    world(&stack).await;
    stack.internal.stop().await;
    stack.publics[0].stop().await;
    stack.flushdb().await;
    let restarted = OffsetDateTime::now_utc();
    stack.publics[0] = stack.spawn(Kind::Public).await;
    stack.internal = stack.spawn(Kind::Internal).await;
    (stack, restarted)
}

#[tokio::test]
async fn a_startup_logs_one_seed_line() {
    let (stack, _) = cold_start().await;
    let seeds = stack.public().events("mirror.seed");
    assert_eq!(seeds.len(), 1, "{seeds:?}");
    assert_eq!(seeds[0]["reason"], "startup");
}

#[tokio::test]
async fn a_seed_counts_match_postgres() {
    let (stack, _) = cold_start().await;
    let row = stack
        .pg
        .query_one(
            "SELECT (SELECT COUNT(*) FROM mitra_online_status WHERE is_online=true) AS online,
                    (SELECT COUNT(*) FROM mitras WHERE is_active=false) AS deactivated,
                    (SELECT COUNT(DISTINCT mitra_id) FROM chat_sessions WHERE mitra_id IS NOT NULL
                       AND status IN ('active','pending_payment')) AS with_sessions",
            &[],
        )
        .await
        .unwrap();
    let seed = &stack.public().events("mirror.seed")[0];
    for (i, field) in ["online", "deactivated", "with_sessions"]
        .iter()
        .enumerate()
    {
        assert_eq!(seed[field].as_i64(), Some(row.get::<_, i64>(i)), "{field}");
    }
    assert_eq!(seed["online"], 2, "the world has two online mitras");
}

#[tokio::test]
async fn a_online_set_matches_postgres() {
    let (stack, _) = cold_start().await;
    let online = stack.pg_ids(PG_ONLINE).await;
    assert_eq!(online.len(), 2);
    assert_eq!(stack.vk_members("mitras:online").await, online);
}

#[tokio::test]
async fn a_heartbeats_seeded_for_online_mitras() {
    let (stack, restarted) = cold_start().await;
    for id in stack.pg_ids(PG_ONLINE).await {
        let raw = stack.heartbeat_key(id.parse().unwrap()).await;
        let at = parse_time(&raw.expect("heartbeat key of an online mitra"));
        assert!(at >= restarted, "seeded as now: {at} < {restarted}");
        assert!(at <= OffsetDateTime::now_utc());
    }
}

#[tokio::test]
async fn a_capacity_matches_open_sessions() {
    let (stack, _) = cold_start().await;
    let mut counts = Vec::new();
    for id in stack.pg_ids(PG_ONLINE).await {
        let id: Uuid = id.parse().unwrap();
        let open = stack.open_sessions(id).await;
        assert_eq!(stack.capacity_key(id).await, Some(open.to_string()));
        counts.push(open);
    }
    counts.sort_unstable();
    assert_eq!(
        counts,
        [0, 2],
        "the busy mitra holds an active and a pending session"
    );
}

#[tokio::test]
async fn a_deactivated_set_matches_postgres() {
    let (stack, _) = cold_start().await;
    let deactivated = stack.pg_ids(PG_DEACTIVATED).await;
    assert_eq!(deactivated.len(), 1);
    assert_eq!(stack.vk_members("mitras:deactivated").await, deactivated);
}

#[tokio::test]
async fn a_flushdb_triggers_second_seed() {
    let stack = Stack::start().await;
    world(&stack).await;
    let before = seed_events(&stack).len();
    stack.flushdb().await;
    let seeds = wait_for_seed(&stack, before).await;
    assert_eq!(seeds[0]["reason"], "flushed", "{seeds:?}");
    assert_eq!(seeds[0]["online"], 2, "{seeds:?}");
}

#[tokio::test]
async fn a_flushdb_rebuilds_all_structures() {
    let stack = Stack::start().await;
    world(&stack).await;
    let before = seed_events(&stack).len();
    stack.flushdb().await;
    wait_for_seed(&stack, before).await;
    stack
        .wait_in_sync("the mirror to be rebuilt", crate::common::DEADLINE)
        .await;
    assert_mirror_matches_postgres(&stack).await;
}
