//! The adapter against a real `valkey-server`: the mirror contract every mirror passes
//! (`contract`), and what only this adapter has: what the seed leaves behind, its round trips,
//! its connections, and the two ways of reading the per-mitra records (SORT patterns, or the
//! Lua scripts when the key prefix holds a `*` or the login may not SORT) giving the same
//! answers.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test setup may panic

use halo_domain::MitraId;
use halo_fakes::contract::{self as port, count, id, kept, rules, seed};
use halo_metrics::Metrics;
use halo_ports::{MirrorHotPath, MirrorMaintenance};
use halo_testkit::{eventually, ValkeyServer};
use halo_valkey::{Keys, ValkeyMirror, ValkeySettings};
use redis::AsyncCommands;
use std::collections::BTreeSet;
use std::time::Duration;
use time::OffsetDateTime;

mod cluster;
mod contract;

fn mirror(server: &ValkeyServer, prefix: &str) -> ValkeyMirror {
    mirror_counted(server, prefix, Metrics::new())
}

fn mirror_counted(server: &ValkeyServer, prefix: &str, metrics: Metrics) -> ValkeyMirror {
    let settings = ValkeySettings {
        url: server.url(),
        key_prefix: prefix.to_owned(),
        timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let (_client, conn) = halo_valkey::connect(&settings).unwrap();
    ValkeyMirror::new(conn, Keys::new(prefix), settings.timeout, metrics)
}

/// The contract's heartbeat case, counted: the common case is one plain `SET … XX`; only a
/// mitra without a heartbeat key (deactivated, offline, or its key lost) takes a second round
/// trip (the guarded script).
#[tokio::test]
async fn a_heartbeat_is_one_command_unless_its_key_is_missing() {
    let metrics = Metrics::new();
    let (m, raw) = contract::valkey_counted(metrics.clone()).await;
    port::heartbeats_refresh_online_active_mitras_and_never_create_a_key(&m, &raw).await;
    assert_eq!(metrics.valkey_round_trips("heartbeat"), 7);
    assert_eq!(
        metrics.valkey_round_trips("heartbeat_guarded"),
        5,
        "deactivated 2, offline 5, key-less 3, deactivated 4 twice"
    );
}

/// An offer round costs one round trip when the walk passes over few members; passing over
/// many costs a few more, each step asking for twice as many as the last, never one per member.
#[tokio::test]
async fn an_offer_round_is_one_round_trip_unless_it_passes_over_many() {
    let metrics = Metrics::new();
    let (m, raw) = contract::valkey_counted(metrics.clone()).await;
    port::offers_walk_the_idle_order_through_the_rules(&m, &raw).await;
    assert_eq!(
        metrics.valkey_round_trips("offer_candidates"),
        8,
        "one per round (a round of 0 sends nothing)"
    );
    let metrics = Metrics::new();
    let (m, raw) = contract::valkey_counted(metrics.clone()).await;
    port::a_long_walk_passes_over_the_unavailable_and_the_excluded(&m, &raw).await;
    assert_eq!(
        metrics.valkey_round_trips("offer_candidates"),
        5,
        "past 200 at capacity: 66, 132, then the rest (3); past 210 excluded: 1; all: 1"
    );
}

/// Every read about availability learns that the mirror is unseeded in its own round trip.
#[tokio::test]
async fn an_unseeded_read_takes_one_round_trip() {
    let metrics = Metrics::new();
    let (m, _raw) = contract::valkey_counted(metrics.clone()).await;
    let before = metrics.valkey_round_trips_total();
    port::unseeded_reads(&m).await;
    assert_eq!(metrics.valkey_round_trips_total() - before, 7, "one each");
}

#[tokio::test]
async fn the_seeded_sets_do_not_expire() {
    let server = ValkeyServer::start().await;
    let m = mirror(&server, "");
    seed(&m, OffsetDateTime::now_utc()).await;
    let mut conn = server.connection().await;
    for key in ["mitras:online", "mitras:deactivated", "mirror:generation"] {
        let ttl: i64 = conn.ttl(key).await.unwrap();
        assert_eq!(ttl, -1, "{key} must not expire");
    }
}

#[tokio::test]
async fn sort_and_lua_reads_agree() {
    let server = ValkeyServer::start().await;
    let now = OffsetDateTime::now_utc();
    let mut answers = Vec::new();
    for prefix in ["p1:", "p*2:"] {
        let m = mirror(&server, prefix);
        seed(&m, now).await;
        // A member that is not an id, and one whose heartbeat and capacity are unreadable.
        let mut conn = server.connection().await;
        let _: () = conn
            .sadd(format!("{prefix}mitras:online"), "not-a-uuid")
            .await
            .unwrap();
        let _: () = conn
            .set(format!("{prefix}mitra:heartbeat:{}", id(4)), "garbage")
            .await
            .unwrap();
        let _: () = conn
            .set(format!("{prefix}mitra:capacity:{}", id(4)), "x")
            .await
            .unwrap();
        let mut candidates = m.candidate_states().await.unwrap();
        candidates.sort_by_key(|(id, _)| *id);
        let mut heartbeats = m.online_heartbeats().await.unwrap();
        heartbeats.sort_by_key(|(id, _)| *id);
        // The offer walk the same two ways: 4 (unreadable heartbeat) does not pass.
        let none = BTreeSet::new();
        let offered = m.offer_candidates(10, &none, now, rules()).await.unwrap();
        assert_eq!(offered, [id(3), id(1)], "{prefix}");
        let _: () = conn
            .zadd(format!("{prefix}mitras:idle_order"), "not-a-uuid", 0)
            .await
            .unwrap();
        let offered = m.offer_candidates(10, &none, now, rules()).await.unwrap();
        assert_eq!(
            offered,
            [id(3), id(1)],
            "{prefix}: a member that is not an id is passed over"
        );
        answers.push((candidates, heartbeats));
    }
    let (candidates, heartbeats) = &answers[0];
    assert_eq!(&answers[1], &answers[0]);
    let ids: Vec<MitraId> = candidates.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![id(1), id(3), id(4)]);
    let seeded = kept(now);
    assert_eq!(candidates[0].1.last_heartbeat, Some(seeded));
    assert_eq!(candidates[1].1.open_sessions, 2);
    assert_eq!(candidates[2].1.last_heartbeat, None);
    assert_eq!(candidates[2].1.open_sessions, 0);
    let ids: Vec<MitraId> = heartbeats.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![id(1), id(2), id(3), id(4), id(6)]);
    assert_eq!(heartbeats[0].1, Some(seeded));
    assert_eq!(heartbeats[3].1, None);
}

/// A thread that binds gets its own connection (driven on its own runtime); threads that did
/// not bind share one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_thread_has_its_own_connection() {
    let server = ValkeyServer::start().await;
    let mut admin = server.connection().await;
    let m = mirror(&server, "");
    m.ping().await.unwrap();
    assert_eq!(
        connected_clients(&mut admin).await,
        2,
        "admin + the shared connection"
    );

    let bound = m.clone();
    let mut admin_there = admin.clone();
    let seen_while_bound = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            bound.bind_connection_to_current_thread();
            bound.ping().await.unwrap();
            bound.ping().await.unwrap();
            connected_clients(&mut admin_there).await
        })
    })
    .join()
    .unwrap();
    assert_eq!(
        seen_while_bound, 3,
        "the bound thread connected once, on its own"
    );

    // The bound thread's runtime is gone, and its connection with it.
    eventually(
        "the bound connection to close",
        Duration::from_secs(5),
        || {
            let mut admin = admin.clone();
            async move { connected_clients(&mut admin).await == 2 }
        },
    )
    .await;
    m.ping().await.unwrap();
    let unbound = tokio::spawn({
        let m = m.clone();
        async move { m.ping().await }
    });
    unbound.await.unwrap().unwrap();
    assert_eq!(
        connected_clients(&mut admin).await,
        2,
        "unbound threads share one connection"
    );
}

/// After a restart, the first request on a connection finds it dropped: it fails (the server
/// may have come back with older data, so neither a read's answer nor a replayed write is safe)
/// and counts the drop; the next request runs on the reconnected connection. A server that is
/// down is an outage: refused, sent once.
#[tokio::test]
async fn a_dropped_connection_fails_the_request_and_is_counted() {
    let mut server = ValkeyServer::start().await;
    let metrics = Metrics::new();
    let m = mirror_counted(&server, "", metrics.clone());
    m.ping().await.unwrap();
    server.restart().await;
    assert!(
        m.ping().await.is_err(),
        "not resent on a dropped connection"
    );
    assert_eq!(metrics.valkey_round_trips("ping"), 2, "one each");
    assert_eq!(m.connection_drops(), 1);
    m.ping().await.expect("the next request reconnects");

    server.restart().await;
    assert!(m.set_capacity(id(1), count(1, 1)).await.is_err());
    assert_eq!(metrics.valkey_round_trips("set_capacity"), 1);
    assert_eq!(m.connection_drops(), 2);
    m.set_capacity(id(1), count(1, 1))
        .await
        .expect("the next write reconnects");

    server.kill().await;
    let _ = m.ping().await; // finds the connection dropped
    let before = metrics.valkey_round_trips("ping");
    assert!(m.ping().await.is_err());
    assert_eq!(
        metrics.valkey_round_trips("ping") - before,
        1,
        "a refused connection is not resent"
    );
}

async fn connected_clients(admin: &mut redis::aio::MultiplexedConnection) -> u32 {
    let info: String = redis::cmd("INFO")
        .arg("clients")
        .query_async(admin)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("connected_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_login_limited_to_the_prefix_falls_back_to_lua_for_bulk_reads() {
    let server = ValkeyServer::start().await;
    let mut admin = server.connection().await;
    // SORT … GET needs read access to every key; this login may only touch its prefix.
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "halo", "on", ">secret", "~halo:*", "&*", "+@all"])
        .query_async(&mut admin)
        .await
        .unwrap();
    let settings = ValkeySettings {
        url: format!("redis://halo:secret@127.0.0.1:{}/", server.port()),
        key_prefix: "halo:".to_owned(),
        timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let (_client, conn) = halo_valkey::connect(&settings).unwrap();
    let m = ValkeyMirror::new(conn, Keys::new("halo:"), settings.timeout, Metrics::new());
    seed(&m, OffsetDateTime::now_utc()).await;
    for attempt in ["first (refused SORT, then Lua)", "second (Lua)"] {
        let none = BTreeSet::new();
        let offered = m.offer_candidates(10, &none, OffsetDateTime::now_utc(), rules());
        assert_eq!(
            offered.await.expect(attempt),
            [id(4), id(3), id(1)],
            "{attempt}"
        );
        let mut candidates = m.candidate_states().await.expect(attempt);
        candidates.sort_by_key(|(id, _)| *id);
        let ids: Vec<MitraId> = candidates.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, vec![id(1), id(3), id(4)], "{attempt}");
        let heartbeats = m.online_heartbeats().await.expect(attempt);
        assert_eq!(heartbeats.len(), 5, "{attempt}");
    }
}
