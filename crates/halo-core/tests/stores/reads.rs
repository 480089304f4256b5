//! Section F and the heartbeat: Valkey-first reads through the domain rules.

use crate::fixture::{cap_key, hb_key, sorted, stack};
use halo_domain::MitraId;
use redis::AsyncCommands;
use std::collections::BTreeSet;

#[tokio::test]
async fn f_reachability_follows_online_and_heartbeat_freshness() {
    let s = stack().await;
    let id = s.online_mitra().await;
    assert!(s.av.is_mitra_reachable(id).await.unwrap());
    s.set(&hb_key(id), "2020-01-01T00:00:00Z").await;
    assert!(
        !s.av.is_mitra_reachable(id).await.unwrap(),
        "stale heartbeat, still online in postgres"
    );
    assert!(s.pg_online(id).await);
    let offline = s.mitra().await;
    assert!(!s.av.is_mitra_reachable(offline).await.unwrap());
}

#[tokio::test]
async fn f_find_available_applies_every_rule() {
    let s = stack().await;
    let fresh = s.online_mitra().await;
    let stale = s.online_mitra().await;
    s.set(&hb_key(stale), "2020-01-01T00:00:00Z").await;
    let full = s.online_mitra().await;
    s.set(&cap_key(full), "3").await; // at max_customers_per_mitra = 3
    let busy = s.online_mitra().await;
    s.set(&cap_key(busy), "2").await;
    let deactivated = s.online_mitra().await;
    s.av.update_mitra_status(deactivated, false).await.unwrap();
    let _offline = s.mitra().await;
    let () = s
        .vk()
        .await
        .sadd("mitras:online", "not-a-uuid")
        .await
        .unwrap();

    let mut found = s.av.find_available_mitras().await.unwrap();
    found.sort();
    assert_eq!(sorted(found), sorted([fresh, busy]));
    assert_eq!(s.metrics.valkey_fallbacks("find_available_mitras"), 0);
}

#[tokio::test]
async fn f_beacon_is_cached_in_valkey_with_the_spec_shape() {
    let s = stack().await;
    s.online_mitra().await;
    s.online_mitra().await;
    let beacon = s.av.count_available().await.unwrap();
    assert_eq!((beacon.available(), beacon.count), (true, 2));
    let raw = s
        .get("availability:snapshot")
        .await
        .expect("snapshot stored");
    let json: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(json["available"], true);
    assert_eq!(json["count"], 2);
    assert!(json["computed_at"].as_str().unwrap().ends_with('Z'));
    let ttl: i64 = s.vk().await.pttl("availability:snapshot").await.unwrap();
    assert!(
        ttl > 0 && ttl <= 10_000,
        "TTL = beacon_cache_ttl_seconds, got {ttl} ms"
    );

    // A third mitra does not show until the snapshot expires or is busted.
    s.online_mitra().await;
    assert_eq!(s.av.count_available().await.unwrap().count, 2);
    s.av.bust_beacon().await;
    assert_eq!(s.get("availability:snapshot").await, None);
    assert_eq!(s.av.count_available().await.unwrap().count, 3);
}

#[tokio::test]
async fn f_dashboard_online_count_is_scard() {
    let s = stack().await;
    for _ in 0..3 {
        s.online_mitra().await;
    }
    let scard: u64 = s.vk().await.scard("mitras:online").await.unwrap();
    assert_eq!(s.av.dashboard_online_count().await.unwrap(), scard);
    assert_eq!(scard, 3);
}

#[tokio::test]
async fn c_heartbeat_advances_and_never_sets_online() {
    let s = stack().await;
    let id = s.online_mitra().await;
    s.set(&hb_key(id), "2026-01-01T00:00:00Z").await;
    let ack = s.av.heartbeat(id).await.unwrap();
    assert!(ack.online);
    assert_eq!(ack.interval_seconds, 30);
    let after = s.get(&hb_key(id)).await.unwrap();
    assert!(
        after.as_str() > "2026-01-01T00:00:00Z",
        "heartbeat advanced to {after}"
    );

    let offline = s.mitra().await;
    let ack = s.av.heartbeat(offline).await.unwrap();
    assert!(!ack.online, "an offline mitra is told so");
    assert_eq!(s.get(&hb_key(offline)).await, None, "nothing recorded");
    assert!(!s
        .smembers("mitras:online")
        .await
        .contains(&offline.to_string()));
}

/// An offer round on real stores (SPEC §12.5): longest idle first, the mitras whose sessions
/// started or ended moved to the back; the same ranks in both stores, so the same order from
/// Postgres once Valkey is gone.
#[tokio::test]
async fn an_offer_round_reads_the_same_idle_order_from_either_store() {
    let mut s = stack().await;
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(s.online_mitra().await);
    }
    // Two mitras with sessions since they came online: one that ended a second from now, and
    // one that started two seconds from now and runs (busy, under capacity).
    for (id, status, ended) in [(ids[0], "ended", true), (ids[1], "active", false)] {
        let session = s.session(id, status).await;
        s.pg.execute(
            "UPDATE chat_sessions
                SET accepted_at = now() + CASE WHEN $2 THEN interval '0' ELSE interval '2 s' END,
                    ended_at = CASE WHEN $2 THEN now() + interval '1 s' END
              WHERE id = $1",
            &[&session, &ended],
        )
        .await
        .unwrap();
        s.av.recompute_capacity_for_mitra(id).await.unwrap();
    }
    let in_postgres: Vec<MitraId> =
        s.pg.query(
            "SELECT mitra_id FROM mitra_online_status WHERE is_online
              ORDER BY idle_rank, mitra_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| MitraId::new(row.get(0)))
        .collect();
    assert_eq!(&in_postgres[6..], &ids[..2], "moved to the back, in order");

    let none = BTreeSet::new();
    let from_mirror = s.av.offer_candidates(20, &none).await.unwrap();
    assert_eq!(from_mirror, in_postgres);
    assert_eq!(s.metrics.valkey_fallbacks("offer_candidates"), 0);
    assert!(s.drift_is_empty().await, "the same ranks in both stores");
    let excluded: BTreeSet<MitraId> = [in_postgres[0], in_postgres[3]].into();
    let first_three = s.av.offer_candidates(3, &excluded).await.unwrap();
    assert_eq!(
        first_three,
        [in_postgres[1], in_postgres[2], in_postgres[4]]
    );

    s.valkey.kill().await;
    assert_eq!(s.av.offer_candidates(20, &none).await.unwrap(), in_postgres);
    assert!(!s.av.mirror_trusted());
    assert_eq!(
        s.av.offer_candidates(3, &excluded).await.unwrap(),
        first_three
    );
    assert_eq!(s.metrics.valkey_fallbacks("offer_candidates"), 2);
}
