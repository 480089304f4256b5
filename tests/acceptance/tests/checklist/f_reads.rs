//! Section F — reads from Valkey first with the same answer from Postgres when Valkey fails:
//! reachability (extension), the blast, the beacon (shared snapshot), the dashboard count.

use crate::common::{parse_time, DEADLINE};
use halo_acceptance::{eventually, Customer, Http, Mitra, Stack};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// A customer chatting with an online mitra.
async fn chatting(stack: &Stack) -> (Mitra, Customer, Uuid) {
    let mitra = stack.online_mitra().await;
    let customer = stack.customer().await;
    let blast = stack.blast(&customer).await.expect(201);
    let session = blast["session_id"].as_str().unwrap().to_owned();
    stack.accept(&mitra, &session).await.expect(200);
    (mitra, customer, session.parse().unwrap())
}

/// The extension flow: the route that asks `is_mitra_reachable`.
async fn extend(stack: &Stack, customer: &Customer, session: Uuid) -> halo_acceptance::Reply {
    stack
        .app(
            Method::POST,
            &format!("/api/client/chat/sessions/{session}/extend"),
            &customer.token,
            Some(json!({ "minutes": 5 })),
        )
        .await
}

fn stale_timestamp() -> String {
    // Older than the default stale_after_seconds (90).
    let at = OffsetDateTime::now_utc() - Duration::seconds(120);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[tokio::test]
async fn f_reachable_with_fresh_heartbeat() {
    let stack = Stack::start().await;
    let (_, customer, session) = chatting(&stack).await;
    let before = extend(&stack, &customer, session).await.expect(200);
    let ends_at = parse_time(before["ends_at"].as_str().unwrap());
    let again = extend(&stack, &customer, session).await.expect(200);
    assert_eq!(
        parse_time(again["ends_at"].as_str().unwrap()) - ends_at,
        Duration::minutes(5)
    );
}

#[tokio::test]
async fn f_unreachable_with_stale_heartbeat_key() {
    let stack = Stack::start().await;
    let (mitra, customer, session) = chatting(&stack).await;
    stack
        .vk_set(&format!("mitra:heartbeat:{}", mitra.id), &stale_timestamp())
        .await;
    let reply = extend(&stack, &customer, session).await;
    assert_eq!((reply.status, reply.code()), (409, "BESTIE_UNREACHABLE"));
    assert!(
        stack.pg_is_online(mitra.id).await,
        "Postgres still says online"
    );
}

#[tokio::test]
async fn f_reachable_falls_back_to_postgres() {
    let mut stack = Stack::start().await;
    let (mitra, customer, session) = chatting(&stack).await;
    stack.valkey.kill().await;
    extend(&stack, &customer, session).await.expect(200);
    // Offline in Postgres → unreachable from Postgres too.
    stack.toggle(&mitra, false).await.expect(200);
    let reply = extend(&stack, &customer, session).await;
    assert_eq!((reply.status, reply.code()), (409, "BESTIE_UNREACHABLE"));
    let metrics = stack.public().metrics().await;
    assert_eq!(metrics.fallbacks("is_mitra_reachable"), 2);
    assert!(stack.public().logged_fallback("is_mitra_reachable"));
}

#[tokio::test]
async fn f_blast_uses_valkey_path() {
    let stack = Stack::start().await;
    stack.online_mitra().await;
    let before = stack.public().metrics().await;
    let customer = stack.customer().await;
    stack.blast(&customer).await.expect(201);
    let after = stack.public().metrics().await;
    assert_eq!(after.fallbacks("offer_candidates"), 0);
    assert_eq!(after.pg("offer_candidates"), before.pg("offer_candidates"));
    assert!(after.valkey("offer_candidates") > before.valkey("offer_candidates"));
    assert!(stack.public().events("mirror.fallback").is_empty());
}

/// Mitras in every state the blast must tell apart; returns the one that is available.
async fn mixed_mitras(stack: &Stack) -> Mitra {
    let available = stack.online_mitra().await;
    let stale = stack.online_mitra().await;
    stack
        .vk_set(&format!("mitra:heartbeat:{}", stale.id), &stale_timestamp())
        .await;
    let full = stack.online_mitra().await;
    stack
        .vk_set(&format!("mitra:capacity:{}", full.id), "3")
        .await;
    let deactivated = stack.online_mitra().await;
    stack.set_active(&deactivated, false).await.expect(200);
    stack.mitra().await; // offline
    available
}

/// The checklist's formula over Valkey: SDIFF online deactivated, then capacity and freshness.
async fn expected_from_valkey(stack: &Stack) -> BTreeSet<String> {
    let online = stack.vk_members("mitras:online").await;
    let deactivated = stack.vk_members("mitras:deactivated").await;
    let mut expected = BTreeSet::new();
    for id in online.difference(&deactivated) {
        let id_uuid: Uuid = id.parse().unwrap();
        let capacity: u32 = stack.capacity_key(id_uuid).await.unwrap().parse().unwrap();
        let beat = stack
            .heartbeat_key(id_uuid)
            .await
            .map(|raw| parse_time(&raw));
        let fresh = beat.is_some_and(|at| OffsetDateTime::now_utc() - at <= Duration::seconds(90));
        if capacity < 3 && fresh {
            expected.insert(id.clone());
        }
    }
    expected
}

async fn notified(stack: &Stack, blast: &Value) -> BTreeSet<String> {
    let session: Uuid = blast["session_id"].as_str().unwrap().parse().unwrap();
    stack
        .pg
        .query(
            "SELECT mitra_id FROM chat_request_notifications WHERE session_id = $1",
            &[&session],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, Uuid>(0).to_string())
        .collect()
}

#[tokio::test]
async fn f_blast_matches_sdiff_filtered_by_capacity_and_freshness() {
    let stack = Stack::start().await;
    let available = mixed_mitras(&stack).await;
    let expected = expected_from_valkey(&stack).await;
    assert_eq!(expected, BTreeSet::from([available.id.to_string()]));
    let customer = stack.customer().await;
    let blast = stack.blast(&customer).await.expect(201);
    assert_eq!(notified(&stack, &blast).await, expected);
}

#[tokio::test]
async fn f_blast_falls_back_to_postgres() {
    let mut stack = Stack::start().await;
    let first = stack.online_mitra().await;
    let second = stack.online_mitra().await;
    let inactive = stack.online_mitra().await;
    stack.set_active(&inactive, false).await.expect(200);
    let customer = stack.customer().await;
    stack.valkey.kill().await;
    let blast = stack.blast(&customer).await.expect(201);
    let expected = BTreeSet::from([first.id.to_string(), second.id.to_string()]);
    assert_eq!(notified(&stack, &blast).await, expected);
    let metrics = stack.public().metrics().await;
    assert_eq!(metrics.fallbacks("offer_candidates"), 1);
    assert_eq!(
        metrics.pg("offer_candidates"),
        1,
        "one bounded statement (SPEC §12.5)"
    );
}

/// Available mitras by the rules, counted in Postgres.
async fn available_in_postgres(stack: &Stack) -> i64 {
    stack
        .pg
        .query_one(
            "SELECT count(*) FROM mitras m JOIN mitra_online_status s ON s.mitra_id = m.id
              WHERE s.is_online AND m.is_active
                AND s.last_heartbeat_at > now() - interval '90 seconds'
                AND (SELECT count(*) FROM chat_sessions c WHERE c.mitra_id = m.id
                      AND c.status IN ('active','pending_payment')) < 3",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn f_beacon_matches_reality() {
    let stack = Stack::start().await;
    assert_eq!(
        stack.beacon(0).await,
        json!({ "available": false, "count": 0 })
    );
    stack.online_mitra().await;
    stack.online_mitra().await;
    let full = stack.online_mitra().await;
    for _ in 0..3 {
        stack.start_chat(&full).await;
    }
    stack.bust_snapshot().await;
    let expected = available_in_postgres(&stack).await;
    assert_eq!(expected, 2);
    assert_eq!(
        stack.beacon(0).await,
        json!({ "available": true, "count": expected })
    );
}

#[tokio::test]
async fn f_beacon_snapshot_cached_in_valkey() {
    let stack = Stack::start().await;
    stack.online_mitra().await;
    let polled = OffsetDateTime::now_utc();
    let beacon = stack.beacon(0).await;
    let raw = stack
        .vk_get("availability:snapshot")
        .await
        .expect("snapshot");
    let snapshot: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(snapshot["count"], beacon["count"]);
    assert_eq!(snapshot["available"], beacon["available"]);
    let computed = parse_time(snapshot["computed_at"].as_str().unwrap());
    // Within one TTL (10 s): the event pumps look at the beacon too (SPEC §12.9), so the
    // snapshot this poll found may be theirs.
    assert!(
        computed >= polled - Duration::seconds(10),
        "fresh: {computed}"
    );
    let ttl: i64 = redis::cmd("TTL")
        .arg("availability:snapshot")
        .query_async(&mut stack.vk().await)
        .await
        .unwrap();
    assert!((1..=10).contains(&ttl), "TTL {ttl}");
}

/// Polls the beacon `n` times from three client addresses (127.0.0.1-3), concurrently.
async fn poll_from_three_ips(stack: &Stack, n: usize) {
    let clients: Vec<Http> = (1..=3)
        .map(|last| Http::from_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))))
        .collect();
    let url = stack.public().url("/public/bestie-availability");
    let mut polls = tokio::task::JoinSet::new();
    for i in 0..n {
        let (client, url) = (clients[i % 3].clone(), url.clone());
        polls.spawn(async move { client.call(Method::GET, &url, None, None).await.expect(200) });
    }
    while let Some(poll) = polls.join_next().await {
        poll.unwrap();
    }
}

#[tokio::test]
async fn f_rapid_polls_recompute_once_per_ttl_without_postgres() {
    let stack = Stack::start().await;
    stack.online_mitra().await;
    stack.bust_snapshot().await;
    let joins_before = stack
        .statement_calls("%FROM mitras m JOIN mitra_online_status%")
        .await;
    let before = stack.public().metrics().await;
    // The miss: one recompute, from Valkey data.
    stack.beacon(0).await;
    // 30 polls well inside the 10 s TTL: served from the snapshot.
    poll_from_three_ips(&stack, 30).await;
    let after = stack.public().metrics().await;
    assert_eq!(after.beacon_recomputes() - before.beacon_recomputes(), 1);
    assert_eq!(after.pg("candidate_states"), before.pg("candidate_states"));
    assert_eq!(
        stack
            .statement_calls("%FROM mitras m JOIN mitra_online_status%")
            .await,
        joins_before,
        "zero availability joins in Postgres"
    );
}

#[tokio::test]
async fn f_config_change_busts_snapshot() {
    let stack = Stack::start().await;
    stack.online_mitra().await;
    stack.beacon(0).await;
    assert!(stack.vk_get("availability:snapshot").await.is_some());
    let busts = stack.public().metrics().await.valkey("bust_beacon");
    stack.set_config("max_customers_per_mitra", 5).await;
    assert_eq!(stack.vk_get("availability:snapshot").await, None, "DEL'd");
    // The public instance reloads its settings on the invalidation message and then drops the
    // snapshot again (one computed meanwhile would hold the old settings): wait for that, so
    // the recompute below is the one that stays.
    eventually(
        "the public instance to apply the invalidation",
        DEADLINE,
        || async { stack.public().metrics().await.valkey("bust_beacon") > busts },
    )
    .await;
    let before = stack.public().metrics().await.beacon_recomputes();
    stack.beacon(0).await;
    assert_eq!(
        stack.public().metrics().await.beacon_recomputes(),
        before + 1
    );
    assert!(stack.vk_get("availability:snapshot").await.is_some());
}

async fn dashboard(stack: &Stack) -> Value {
    stack
        .cc(Method::GET, "/internal/dashboard/stats", None)
        .await
        .expect(200)
}

#[tokio::test]
async fn f_dashboard_online_matches_scard() {
    let stack = Stack::start().await;
    for _ in 0..3 {
        stack.online_mitra().await;
    }
    let offline = stack.online_mitra().await;
    stack.toggle(&offline, false).await.expect(200);
    let scard = stack.vk_members("mitras:online").await.len();
    assert_eq!(scard, 3);
    assert_eq!(dashboard(&stack).await["online_mitras"], scard);
}

#[tokio::test]
async fn f_dashboard_does_not_count_online_in_postgres() {
    let stack = Stack::start().await;
    stack.online_mitra().await;
    let pattern = "%count(*) FROM mitra_online_status WHERE is_online%";
    let calls = stack.statement_calls(pattern).await;
    let before = stack.internal.metrics().await;
    dashboard(&stack).await;
    let after = stack.internal.metrics().await;
    assert_eq!(after.pg("count_online"), before.pg("count_online"));
    assert!(after.valkey("online_count") > before.valkey("online_count"));
    assert_eq!(stack.statement_calls(pattern).await, calls);
}
