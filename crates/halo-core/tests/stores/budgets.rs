//! Hot-path budgets, proven by counters: no Postgres on the hot paths, constant round trips.

use crate::fixture::{bulk_online_mitras, counted_instance, stack};
use halo_core::SeedReason;

#[tokio::test]
async fn heartbeat_costs_zero_postgres_queries_and_one_round_trip() {
    let s = stack().await;
    let (av, metrics) = counted_instance(&s.db, &s.valkey.url()).await;
    let id = s.online_mitra().await;
    let deactivated = s.mitra().await;
    s.av.update_mitra_status(deactivated, false).await.unwrap();
    let (pg, vk) = (
        metrics.pg_queries_total(),
        metrics.valkey_round_trips_total(),
    );
    for _ in 0..10 {
        assert!(av.heartbeat(id).await.unwrap().online);
    }
    assert!(av.heartbeat(deactivated).await.is_err());
    assert_eq!(
        metrics.pg_queries_total() - pg,
        0,
        "no postgres on the heartbeat path"
    );
    assert_eq!(
        metrics.valkey_round_trips_total() - vk,
        10 + 2,
        "one round trip per heartbeat of an online mitra; a deactivated mitra has no key to \
         refresh, so its refusal takes the guarded script as a second"
    );
}

#[tokio::test]
async fn find_available_is_constant_round_trips_for_1_or_5000_mitras() {
    let s = stack().await;
    let (av, metrics) = counted_instance(&s.db, &s.valkey.url()).await;
    s.online_mitra().await;
    let (pg, vk) = (
        metrics.pg_queries_total(),
        metrics.valkey_round_trips_total(),
    );
    assert_eq!(av.find_available_mitras().await.unwrap().len(), 1);
    assert_eq!(metrics.pg_queries_total() - pg, 0);
    let small = metrics.valkey_round_trips_total() - vk;
    assert!(small <= 2, "{small} round trips for 1 mitra");

    bulk_online_mitras(&s.pg, "+64", 4999).await;
    s.av.seed_from_postgres(SeedReason::Operator).await.unwrap();
    let (pg, vk) = (
        metrics.pg_queries_total(),
        metrics.valkey_round_trips_total(),
    );
    assert_eq!(av.find_available_mitras().await.unwrap().len(), 5000);
    assert_eq!(metrics.pg_queries_total() - pg, 0);
    assert_eq!(
        metrics.valkey_round_trips_total() - vk,
        small,
        "same round trips at 5000 mitras"
    );
}

/// The commands Valkey ran since the last `CONFIG RESETSTAT` (`INFO commandstats`), the
/// probe's own left out.
async fn server_commands(vk: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(vk)
        .await
        .unwrap();
    info.lines()
        .filter_map(|line| line.strip_prefix("cmdstat_")?.split_once(':'))
        .filter(|(name, _)| !name.starts_with("config") && *name != "info")
        .filter_map(|(_, fields)| fields.strip_prefix("calls=")?.split(',').next())
        .map(|calls| calls.parse::<u64>().unwrap())
        .sum()
}

/// An offer round of 50 (SPEC §12.5) costs the same with 60 or 5,000 mitras online: one round
/// trip, the same commands on the server, no Postgres.
#[tokio::test]
async fn an_offer_round_costs_the_same_for_60_or_5000_online_mitras() {
    let s = stack().await;
    let (av, metrics) = counted_instance(&s.db, &s.valkey.url()).await;
    let mut vk = s.vk().await;
    let none = std::collections::BTreeSet::new();
    let mut costs = Vec::new();
    for (phones, more) in [("+64", 60), ("+65", 4940)] {
        bulk_online_mitras(&s.pg, phones, more).await;
        s.av.seed_from_postgres(SeedReason::Operator).await.unwrap();
        let (pg, trips) = (
            metrics.pg_queries_total(),
            metrics.valkey_round_trips("offer_candidates"),
        );
        let () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut vk)
            .await
            .unwrap();
        assert_eq!(av.offer_candidates(50, &none).await.unwrap().len(), 50);
        assert_eq!(metrics.pg_queries_total() - pg, 0, "no postgres");
        let trips = metrics.valkey_round_trips("offer_candidates") - trips;
        costs.push((trips, server_commands(&mut vk).await));
    }
    assert_eq!(costs[0].0, 1, "one round trip");
    assert_eq!(costs[1], costs[0], "the same at 5000 online");
}

#[tokio::test]
async fn dashboard_count_costs_zero_postgres_queries() {
    let s = stack().await;
    let (av, metrics) = counted_instance(&s.db, &s.valkey.url()).await;
    s.online_mitra().await;
    let pg = metrics.pg_queries_total();
    assert_eq!(av.dashboard_online_count().await.unwrap(), 1);
    assert_eq!(metrics.pg_queries_total() - pg, 0);
}

#[tokio::test]
async fn k_beacon_is_recomputed_once_per_ttl_across_three_polling_instances() {
    let s = stack().await;
    for _ in 0..3 {
        s.online_mitra().await;
    }
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(counted_instance(&s.db, &s.valkey.url()).await);
    }
    // 3 instances × 20 concurrent polls, well inside one 10 s TTL.
    let mut polls = Vec::new();
    for (av, _) in &instances {
        for _ in 0..20 {
            let av = av.clone();
            polls.push(tokio::spawn(async move {
                av.count_available().await.unwrap().count
            }));
        }
    }
    for poll in polls {
        assert_eq!(poll.await.unwrap(), 3);
    }
    let recomputes: u64 = instances.iter().map(|(_, m)| m.beacon_recomputes()).sum();
    assert_eq!(recomputes, 1, "one recompute per TTL across all instances");
    let pg: u64 = instances
        .iter()
        .map(|(_, m)| m.pg_queries("candidate_states"))
        .sum();
    assert_eq!(pg, 0, "no postgres availability query in steady state");
}

/// Once Valkey is known to be down, requests send nothing to it (the breaker), and answer.
#[tokio::test]
async fn while_down_requests_send_nothing_to_valkey() {
    let mut s = stack().await;
    let (av, metrics) = counted_instance(&s.db, &s.valkey.url()).await;
    let id = s.online_mitra().await;
    s.valkey.kill().await;
    assert!(av.heartbeat(id).await.unwrap().online, "finds Valkey down");
    assert_eq!(av.mirror_state(), halo_core::MirrorState::Down);
    let sent = metrics.valkey_round_trips_total();
    for _ in 0..20 {
        assert!(av.heartbeat(id).await.unwrap().online);
        av.ensure_active(id).await.unwrap();
        assert!(av.is_mitra_reachable(id).await.unwrap());
    }
    assert_eq!(av.find_available_mitras().await.unwrap(), vec![id]);
    assert_eq!(av.count_available().await.unwrap().count, 1);
    assert_eq!(av.dashboard_online_count().await.unwrap(), 1);
    av.set_offline(id, halo_ports::OnlineReason::Manual)
        .await
        .unwrap();
    av.recompute_capacity_for_mitra(id).await.unwrap();
    assert_eq!(
        metrics.valkey_round_trips_total(),
        sent,
        "no round trip while down"
    );
    assert!(
        metrics.mirror_write_failures("mark_offline") >= 1,
        "counted as not landed"
    );
}

/// A beacon lock held by a claimer that died: concurrent polls on one instance wait, then
/// one of them computes; the others take its answer. The dead owner's lock is not touched.
#[tokio::test]
async fn k_a_dead_claimer_costs_one_recompute_per_instance() {
    let s = stack().await;
    let (av, metrics) = counted_instance(&s.db, &s.valkey.url()).await;
    s.online_mitra().await;
    let mut vk = s.vk().await;
    let () = redis::cmd("SET")
        .arg("availability:snapshot:lock")
        .arg("dead-owner")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut vk)
        .await
        .unwrap();
    let () = redis::cmd("DEL")
        .arg("availability:snapshot")
        .query_async(&mut vk)
        .await
        .unwrap();
    let before = metrics.beacon_recomputes();
    let polls: Vec<_> = (0..20)
        .map(|_| {
            let av = av.clone();
            tokio::spawn(async move { av.count_available().await.unwrap() })
        })
        .collect();
    for poll in polls {
        assert_eq!(poll.await.unwrap().count, 1);
    }
    assert_eq!(metrics.beacon_recomputes() - before, 1);
    let lock: Option<String> = redis::cmd("GET")
        .arg("availability:snapshot:lock")
        .query_async(&mut vk)
        .await
        .unwrap();
    assert_eq!(lock.as_deref(), Some("dead-owner"));
}
