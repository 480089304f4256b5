//! The adapter against a real `valkey-server`: what the seed leaves behind, and the two ways of
//! reading the per-mitra records (SORT patterns, or the Lua scripts when the key prefix holds a
//! `*`) giving the same answers.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test setup may panic

use halo_domain::{Beacon, MirrorImage, MitraId, MitraTruth};
use halo_metrics::Metrics;
use halo_ports::{
    BeaconClaim, CapacityCount, HeartbeatOutcome, MirrorCoordination, MirrorError, MirrorHotPath,
    MirrorMaintenance, SeedWrite,
};
use halo_testkit::{eventually, ValkeyServer};
use halo_valkey::{Keys, ValkeyMirror, ValkeySettings};
use redis::AsyncCommands;

mod cluster;
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

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

fn count(open: u32, seq: u64) -> CapacityCount {
    CapacityCount { open, seq }
}

fn id(n: u128) -> MitraId {
    MitraId::new(Uuid::from_u128(n))
}

/// Mitras 1..=6 online except 5, 2 and 6 deactivated (6 also online: the image allows it),
/// 3 with open sessions.
fn truth() -> Vec<MitraTruth> {
    (1..=6)
        .map(|n| MitraTruth {
            last_heartbeat: None,
            capacity_seq: 0,
            id: id(n),
            active: n != 2 && n != 6,
            online: n != 5,
            open_sessions: if n == 3 { 2 } else { 0 },
        })
        .collect()
}

async fn seed(m: &ValkeyMirror, now: OffsetDateTime) {
    let mut image = MirrorImage::expected_from(&truth());
    // A deactivated mitra that is still in the online set (drift): never a candidate.
    image.online.insert(id(6));
    let token = m.write_token().await.unwrap();
    m.replace_all(&image, token, now).await.unwrap();
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
        answers.push((candidates, heartbeats));
    }
    let (candidates, heartbeats) = &answers[0];
    assert_eq!(&answers[1], &answers[0]);
    let ids: Vec<MitraId> = candidates.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![id(1), id(3), id(4)]);
    let seeded = halo_valkey_time(now);
    assert_eq!(candidates[0].1.last_heartbeat, Some(seeded));
    assert_eq!(candidates[1].1.open_sessions, 2);
    assert_eq!(candidates[2].1.last_heartbeat, None);
    assert_eq!(candidates[2].1.open_sessions, 0);
    let ids: Vec<MitraId> = heartbeats.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![id(1), id(2), id(3), id(4), id(6)]);
    assert_eq!(heartbeats[0].1, Some(seeded));
    assert_eq!(heartbeats[3].1, None);
}

/// Every outcome of a ping, and what it leaves in Valkey: the common case is one plain `SET …
/// XX`; only a mitra without a heartbeat key (deactivated, offline, or its key lost) takes a
/// second round trip (the guarded script).
#[tokio::test]
async fn heartbeats_refresh_online_active_mitras_and_never_create_a_key() {
    let server = ValkeyServer::start().await;
    let metrics = Metrics::new();
    let m = mirror_counted(&server, "", metrics.clone());
    let seeded = OffsetDateTime::now_utc() - time::Duration::minutes(5);
    seed(&m, seeded).await;
    let conn = server.connection().await;
    let has_key = |n: u128| {
        let mut conn = conn.clone();
        async move {
            let exists: bool = conn
                .exists(format!("mitra:heartbeat:{}", id(n)))
                .await
                .unwrap();
            exists
        }
    };
    let later = OffsetDateTime::now_utc();

    // 1: online and active.
    let outcome = m.heartbeat(id(1), later).await.unwrap();
    assert_eq!(outcome, HeartbeatOutcome::Recorded);
    assert_eq!(
        m.mitra_state(id(1)).await.unwrap().last_heartbeat,
        Some(halo_valkey_time(later))
    );
    assert_eq!(metrics.valkey_round_trips("heartbeat"), 1);
    assert_eq!(metrics.valkey_round_trips("heartbeat_guarded"), 0);

    // 2: deactivated while online (drift the seed keeps): seeded without a key, refused.
    assert!(
        !has_key(2).await,
        "no heartbeat key for a deactivated mitra"
    );
    assert_eq!(
        m.heartbeat(id(2), later).await.unwrap(),
        HeartbeatOutcome::Deactivated
    );
    assert!(!has_key(2).await);

    // 5: offline: nothing recorded, no key created.
    assert_eq!(
        m.heartbeat(id(5), later).await.unwrap(),
        HeartbeatOutcome::Offline
    );
    assert!(
        !has_key(5).await,
        "an offline mitra's ping must not create a key"
    );

    // 3: online, but its key was lost (evicted, flushed mid-seed): the guarded path records it.
    let _: () = conn
        .clone()
        .del(format!("mitra:heartbeat:{}", id(3)))
        .await
        .unwrap();
    assert_eq!(
        m.heartbeat(id(3), later).await.unwrap(),
        HeartbeatOutcome::Recorded
    );
    assert!(has_key(3).await);

    // 4: deactivated while online: the deactivation drops the key, the next ping is refused.
    m.set_deactivated(id(4), true).await.unwrap();
    assert!(!has_key(4).await);
    assert_eq!(
        m.heartbeat(id(4), later).await.unwrap(),
        HeartbeatOutcome::Deactivated
    );
    // A toggle to online that raced the deactivation: online again, still no key.
    m.mark_online(id(4), later, count(0, 1)).await.unwrap();
    assert!(
        !has_key(4).await,
        "mark_online must not give a deactivated mitra a key"
    );
    assert_eq!(
        m.heartbeat(id(4), later).await.unwrap(),
        HeartbeatOutcome::Deactivated
    );
    // Reactivated and toggled online: back to the one-command path.
    m.set_deactivated(id(4), false).await.unwrap();
    m.mark_online(id(4), later, count(0, 1)).await.unwrap();
    assert_eq!(
        m.heartbeat(id(4), later).await.unwrap(),
        HeartbeatOutcome::Recorded
    );

    assert_eq!(metrics.valkey_round_trips("heartbeat"), 7);
    assert_eq!(
        metrics.valkey_round_trips("heartbeat_guarded"),
        5,
        "deactivated 2, offline 5, key-less 3, deactivated 4 twice"
    );
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

/// What a timestamp reads back as: the mirror keeps microseconds.
fn halo_valkey_time(at: OffsetDateTime) -> OffsetDateTime {
    at.replace_nanosecond(at.nanosecond() / 1_000 * 1_000)
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
        let mut candidates = m.candidate_states().await.expect(attempt);
        candidates.sort_by_key(|(id, _)| *id);
        let ids: Vec<MitraId> = candidates.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, vec![id(1), id(3), id(4)], "{attempt}");
        let heartbeats = m.online_heartbeats().await.expect(attempt);
        assert_eq!(heartbeats.len(), 5, "{attempt}");
    }
}

/// Two recounts racing: whichever write lands last, the count taken later stays.
#[tokio::test]
async fn capacity_counts_land_in_order() {
    let server = ValkeyServer::start().await;
    let m = mirror(&server, "");
    seed(&m, OffsetDateTime::now_utc()).await;
    let key = format!("mitra:capacity:{}", id(1));
    let mut conn = server.connection().await;
    m.set_capacity(id(1), count(0, 7)).await.unwrap();
    m.set_capacity(id(1), count(1, 6)).await.unwrap();
    let held: String = conn.get(&key).await.unwrap();
    assert_eq!(held, "0", "the older count (6) landed last and was refused");
    m.mark_online(id(1), OffsetDateTime::now_utc(), count(2, 5))
        .await
        .unwrap();
    let held: String = conn.get(&key).await.unwrap();
    assert_eq!(
        held, "0",
        "a toggle's older count does not overwrite either"
    );
    m.set_capacity(id(1), count(3, 8)).await.unwrap();
    let held: String = conn.get(&key).await.unwrap();
    assert_eq!(held, "3");
}

/// A recompute slower than its lock's TTL: the next owner's lock survives the slow one's store.
#[tokio::test]
async fn a_beacon_store_releases_only_its_own_lock() {
    let server = ValkeyServer::start().await;
    let m = mirror(&server, "");
    seed(&m, OffsetDateTime::now_utc()).await;
    let BeaconClaim::Compute(slow) = m.claim_beacon(Duration::from_secs(60)).await.unwrap() else {
        panic!("an empty snapshot is ours to compute");
    };
    let mut conn = server.connection().await;
    // The slow owner's lock expired; another caller holds it now.
    let () = conn
        .set("availability:snapshot:lock", "next-owner")
        .await
        .unwrap();
    m.store_beacon(
        Beacon::from_count(1),
        OffsetDateTime::now_utc(),
        Duration::from_secs(10),
        &slow,
    )
    .await
    .unwrap();
    let lock: Option<String> = conn.get("availability:snapshot:lock").await.unwrap();
    assert_eq!(lock.as_deref(), Some("next-owner"));
    let claim = m.claim_beacon(Duration::from_secs(1)).await.unwrap();
    assert_eq!(claim, BeaconClaim::Cached(Beacon::from_count(1)));
}

/// The sweep's fence drops only mitras whose heartbeat is still missing or before the cutoff.
#[tokio::test]
async fn the_fence_spares_a_mitra_that_pinged_since() {
    let server = ValkeyServer::start().await;
    let m = mirror(&server, "");
    let now = OffsetDateTime::now_utc();
    seed(&m, now).await;
    let cutoff = now - time::Duration::seconds(30);
    m.heartbeat(id(1), now).await.unwrap();
    let mut conn = server.connection().await;
    let () = conn
        .set(
            format!("mitra:heartbeat:{}", id(3)),
            "2020-01-01T00:00:00.000000Z",
        )
        .await
        .unwrap();
    let () = conn
        .del(format!("mitra:heartbeat:{}", id(4)))
        .await
        .unwrap();
    let fenced = m.fence_stale(&[id(1), id(3), id(4)], cutoff).await.unwrap();
    assert_eq!(fenced, vec![id(3), id(4)]);
    let online: Vec<String> = conn.smembers("mitras:online").await.unwrap();
    assert!(online.contains(&id(1).to_string()));
    assert!(!online.contains(&id(3).to_string()));
    let gone: Option<String> = conn
        .get(format!("mitra:heartbeat:{}", id(3)))
        .await
        .unwrap();
    assert_eq!(gone, None);
    // Put back with a fresh heartbeat from Postgres: online again, the newer value kept.
    let token = m.write_token().await.unwrap();
    m.restore_online(&[(id(3), now)], token).await.unwrap();
    assert_eq!(
        m.mitra_state(id(3)).await.unwrap().last_heartbeat,
        Some(halo_valkey_time(now))
    );
    assert!(m.mitra_state(id(3)).await.unwrap().online);
}

/// Every read about availability reports an unseeded mirror in the same round trip.
#[tokio::test]
async fn reads_of_an_unseeded_mirror_say_so() {
    let server = ValkeyServer::start().await;
    let metrics = Metrics::new();
    let m = mirror_counted(&server, "", metrics.clone());
    let unseeded = |r: Result<(), MirrorError>| matches!(r, Err(MirrorError::Unseeded));
    let before = metrics.valkey_round_trips_total();
    assert!(unseeded(m.is_deactivated(id(1)).await.map(drop)));
    assert!(unseeded(m.mitra_states(&[id(1)]).await.map(drop)));
    assert!(unseeded(m.candidate_states().await.map(drop)));
    assert!(unseeded(m.online_heartbeats().await.map(drop)));
    assert!(unseeded(m.online_count().await.map(drop)));
    assert!(unseeded(
        m.claim_beacon(Duration::from_secs(1)).await.map(drop)
    ));
    assert_eq!(metrics.valkey_round_trips_total() - before, 6, "one each");
    // A heartbeat finds no key, and its guarded script finds no generation marker.
    assert!(unseeded(
        m.heartbeat(id(1), OffsetDateTime::now_utc())
            .await
            .map(drop)
    ));
    seed(&m, OffsetDateTime::now_utc()).await;
    assert!(!m.is_deactivated(id(1)).await.unwrap());
}

/// Two seeds read the same write token (no write journaled between them, as during an
/// outage): the one whose truth was read later wins whichever swaps last.
#[tokio::test]
async fn seeds_are_ordered_by_when_their_truth_was_read() {
    let server = ValkeyServer::start().await;
    let m = mirror(&server, "");
    let token = m.write_token().await.unwrap();
    let now = OffsetDateTime::now_utc();
    let image = |deactivated: bool, read_at: OffsetDateTime| {
        let mut rows = truth();
        rows[0].active = !deactivated;
        let mut image = MirrorImage::expected_from(&rows);
        image.truth_read_at = Some(read_at);
        image
    };
    let newer = image(true, now);
    let older = image(false, now - time::Duration::seconds(1));
    assert_eq!(
        m.replace_all(&newer, token, now).await.unwrap(),
        SeedWrite::Applied
    );
    assert_eq!(
        m.replace_all(&older, token, now).await.unwrap(),
        SeedWrite::Superseded
    );
    assert!(m.is_deactivated(id(1)).await.unwrap());
}

/// A recount landing during a seed is ordered by its number and does not make the seed keep
/// the mitra's (maybe flushed) set memberships.
#[tokio::test]
async fn a_recount_during_a_seed_keeps_only_its_count() {
    let server = ValkeyServer::start().await;
    let m = mirror(&server, "");
    let token = m.write_token().await.unwrap();
    m.set_capacity(id(1), count(2, 9)).await.unwrap();
    let mut rows = truth();
    rows[0].capacity_seq = 8;
    rows[0].open_sessions = 1;
    m.replace_all(
        &MirrorImage::expected_from(&rows),
        token,
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    let state = m.mitra_state(id(1)).await.unwrap();
    assert!(state.online, "membership from the image");
    assert_eq!(state.open_sessions, 2, "the newer count (9 > 8) stays");
}

/// The sweep's restore does not undo an offline toggle that landed after it read the token.
#[tokio::test]
async fn a_restore_skips_a_mitra_written_since_the_token() {
    let server = ValkeyServer::start().await;
    let m = mirror(&server, "");
    let now = OffsetDateTime::now_utc();
    seed(&m, now).await;
    let token = m.write_token().await.unwrap();
    m.mark_offline(&[id(1)]).await.unwrap();
    m.restore_online(&[(id(1), now), (id(3), now)], token)
        .await
        .unwrap();
    assert!(!m.mitra_state(id(1)).await.unwrap().online);
    assert!(m.mitra_state(id(3)).await.unwrap().online);
}
