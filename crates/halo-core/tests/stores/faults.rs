//! Sections J and K: Valkey killed, restarted empty, flushed, hung; two instances at once.

use crate::fixture::{cap_key, instance, sorted, stack};
use halo_core::{spawn_background, AvailabilityError, Cadences, MirrorWatch, SeedReason};
use halo_ports::{CapacityCount, MirrorHotPath, OnlineReason};
use halo_testkit::eventually;
use halo_valkey::InvalidationEvent;
use std::time::Duration;

#[tokio::test]
async fn j_valkey_killed_reads_fall_back_with_the_same_answers_and_writes_land() {
    let mut s = stack().await;
    let fresh = s.online_mitra().await;
    let full = s.online_mitra().await;
    for _ in 0..3 {
        s.session(full, "active").await;
    }
    s.av.recompute_capacity_for_mitra(full).await.unwrap();
    let deactivated = s.online_mitra().await;
    s.av.update_mitra_status(deactivated, false).await.unwrap();
    let offline = s.mitra().await;

    let answers = |av: std::sync::Arc<halo_core::Availability>| async move {
        let mut available = av.find_available_mitras().await.unwrap();
        available.sort();
        (
            available,
            av.is_mitra_reachable(fresh).await.unwrap(),
            av.is_mitra_reachable(full).await.unwrap(),
            av.is_mitra_reachable(offline).await.unwrap(),
            av.dashboard_online_count().await.unwrap(),
            av.count_available().await.unwrap(),
        )
    };
    let before = answers(s.av.clone()).await;
    assert_eq!(before.0, vec![fresh]);

    s.valkey.kill().await;
    let after = answers(s.av.clone()).await;
    assert_eq!(
        before, after,
        "the postgres fallback gives the same answers"
    );
    assert!(s.metrics.valkey_fallbacks("find_available_mitras") > 0);

    // Heartbeats: active mitra accepted, deactivated still refused (postgres guard).
    assert!(s.av.heartbeat(fresh).await.unwrap().online);
    assert!(matches!(
        s.av.heartbeat(deactivated).await,
        Err(AvailabilityError::Deactivated)
    ));

    // Writes land in Postgres; the mirror failure is absorbed and counted.
    let newcomer = s.mitra().await;
    s.av.set_online(newcomer).await.unwrap();
    assert!(s.pg_online(newcomer).await);
    assert!(s.metrics.mirror_write_failures("mark_online") > 0);

    // Restarted empty: the watcher notices the reconnect and reseeds.
    let mut watch = MirrorWatch::default();
    assert_eq!(watch.tick(&s.av).await, None);
    s.valkey.restart().await;
    reseeded_as_reconnect(&mut watch, &s.av, "valkey reconnect not noticed").await;
    assert!(s.drift_is_empty().await);
    assert!(s
        .smembers("mitras:online")
        .await
        .contains(&newcomer.to_string()));
    assert!(s.av.mirror_trusted());
}

/// A restart that comes back with older data keeps its generation marker, and the instance's
/// calls resend on the reconnected connection instead of failing: the dropped connection
/// itself must make the watcher reseed. `CLIENT KILL` drops the connections, data intact.
#[tokio::test]
async fn j_dropped_connections_with_data_intact_are_reseeded_as_a_reconnect() {
    let s = stack().await;
    let id = s.online_mitra().await;
    let mut watch = MirrorWatch::default();
    watch.tick(&s.av).await; // seeds if nothing did yet
    let mut admin = s.valkey.connection().await;
    let _: () = redis::cmd("SREM")
        .arg("mitras:online")
        .arg(id.to_string())
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(
        watch.tick(&s.av).await,
        None,
        "the marker alone shows nothing wrong"
    );
    let _: () = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"])
        .query_async(&mut admin)
        .await
        .unwrap();
    reseeded_as_reconnect(&mut watch, &s.av, "dropped connection not noticed").await;
    assert!(s.drift_is_empty().await);
    assert!(s.smembers("mitras:online").await.contains(&id.to_string()));
}

#[tokio::test]
async fn j_flushdb_without_reconnect_is_reseeded_within_two_seconds() {
    let s = stack().await;
    let id = s.online_mitra().await;
    s.av.seed_from_postgres(SeedReason::Startup).await.unwrap();
    let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
    let cadences = Cadences {
        auto_offline: Duration::from_secs(600),
        heartbeat_mirror: Duration::from_secs(600),
        reconciliation: None,
        mirror_watch: Duration::from_secs(1),
        settings_refresh: Duration::from_secs(600),
        chat_timers: Duration::from_secs(600),
    };
    let _tasks = spawn_background(s.av.clone(), s.chat().await, &cadences, &shutdown);
    let () = redis::cmd("FLUSHDB")
        .query_async(&mut s.vk().await)
        .await
        .unwrap();
    eventually(
        "mirror reseeded after FLUSHDB",
        Duration::from_secs(2),
        || async { s.smembers("mitras:online").await == sorted([id]) },
    )
    .await;
    assert!(s.drift_is_empty().await);
    assert_eq!(s.metrics.seeds("flushed"), 1);
    shutdown_tx.send(true).unwrap();
}

#[tokio::test]
async fn j_hung_valkey_fails_fast_into_the_postgres_path() {
    let s = stack().await;
    let id = s.online_mitra().await;
    s.valkey.pause();
    let outcome = tokio::time::timeout(Duration::from_secs(5), async {
        (s.av.heartbeat(id).await, s.av.is_mitra_reachable(id).await)
    })
    .await;
    s.valkey.resume();
    let (heartbeat, reachable) = outcome.expect("calls do not hang on a stopped valkey");
    assert!(heartbeat.unwrap().online);
    assert!(reachable.unwrap());
    assert!(s.metrics.valkey_fallbacks("heartbeat") >= 1);
}

#[tokio::test]
async fn j_a_failed_mirror_write_sends_reads_to_postgres_until_reseeded() {
    let mut s = stack().await;
    let id = s.online_mitra().await;
    s.valkey.kill().await;
    s.av.set_offline(id, OnlineReason::Manual).await.unwrap();
    s.valkey.restart().await;
    // Restarted with stale data would still list the mitra; the instance knows better.
    let mirror = crate::fixture::mirror(&s.valkey.url(), &s.metrics);
    mirror
        .mark_online(
            id,
            time::OffsetDateTime::now_utc(),
            CapacityCount {
                open: 0,
                seq: 1,
                idle_rank: halo_domain::IdleRank::new(time::OffsetDateTime::now_utc(), 0.0),
            },
        )
        .await
        .unwrap();
    assert!(!s.av.mirror_trusted());
    assert!(s.av.find_available_mitras().await.unwrap().is_empty());
    assert!(!s.av.heartbeat(id).await.unwrap().online);
    let mut watch = MirrorWatch::default();
    // Restarted empty, so the watcher reports the flush; either way it reseeds.
    assert!(watch.tick(&s.av).await.is_some());
    assert!(s.av.mirror_trusted());
    assert!(s.smembers("mitras:online").await.is_empty());
}

#[tokio::test]
async fn k_two_instances_seeding_and_toggling_end_consistent() {
    let s = stack().await;
    let (b, _) = instance(&s.db, &s.valkey.url()).await;
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(s.mitra().await);
    }
    let seeds = {
        let (a, b) = (s.av.clone(), b.clone());
        tokio::spawn(async move {
            for _ in 0..10 {
                let _ = tokio::join!(
                    a.seed_from_postgres(SeedReason::Startup),
                    b.seed_from_postgres(SeedReason::Startup)
                );
            }
        })
    };
    let mut toggles = Vec::new();
    for (i, id) in ids.iter().copied().enumerate() {
        let (a, b) = (s.av.clone(), b.clone());
        toggles.push(tokio::spawn(async move {
            // Both instances set the same mitra online at once (atomic SADD)...
            let (x, y) = tokio::join!(a.set_online(id), b.set_online(id));
            x.unwrap();
            y.unwrap();
            // ...and every third one goes offline again from one of them.
            if i % 3 == 0 {
                b.set_offline(id, OnlineReason::Manual).await.unwrap();
            }
        }));
    }
    for t in toggles {
        t.await.unwrap();
    }
    seeds.await.unwrap();
    let expected: Vec<_> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(_, id)| *id)
        .collect();
    assert_eq!(s.smembers("mitras:online").await, sorted(expected));
    for id in &ids {
        assert_eq!(s.get(&cap_key(*id)).await.as_deref().unwrap_or("0"), "0");
    }
    assert!(s.drift_is_empty().await);
}

#[tokio::test]
async fn k_config_invalidation_reaches_another_instance_and_survives_a_valkey_restart() {
    let mut s = stack().await;
    let (b, _) = instance(&s.db, &s.valkey.url()).await;
    let settings = halo_valkey::ValkeySettings {
        url: s.valkey.url(),
        key_prefix: String::new(),
        timeout: crate::fixture::VALKEY_TIMEOUT,
        ..Default::default()
    };
    let (client, _) = halo_valkey::connect(&settings).unwrap();
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let (_shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
    let target = b.clone();
    let _listener = halo_valkey::spawn_invalidation_listener(
        client,
        "config:invalidate".into(),
        crate::fixture::VALKEY_TIMEOUT,
        shutdown,
        move |event| {
            let target = target.clone();
            let events_tx = events_tx.clone();
            tokio::spawn(async move {
                target.on_config_invalidated().await;
                let _ = events_tx.send(event);
            });
        },
    );
    subscribed(&mut events).await;
    let publisher = crate::fixture::mirror(&s.valkey.url(), &halo_metrics::Metrics::new());

    for (round, value) in [(0, 5_i64), (1, 7)] {
        if round == 1 {
            s.valkey.restart().await;
            subscribed(&mut events).await;
        }
        s.pg.execute(
            "UPDATE app_config SET value = to_jsonb($1::bigint) WHERE key = 'max_customers_per_mitra'",
            &[&value],
        )
        .await
        .unwrap();
        eventually("publish reaches valkey", Duration::from_secs(5), || async {
            halo_ports::MirrorCoordination::publish_config_invalidate(publisher.as_ref())
                .await
                .is_ok()
        })
        .await;
        eventually(
            "the other instance reloads its settings",
            Duration::from_secs(1),
            || async { i64::from(b.settings().get().max_customers_per_mitra()) == value },
        )
        .await;
    }
}

/// Waits (5 s at most) for the listener to report a (re)subscription.
async fn subscribed(events: &mut tokio::sync::mpsc::UnboundedReceiver<InvalidationEvent>) {
    let wait = async {
        while let Some(event) = events.recv().await {
            if event == InvalidationEvent::Subscribed {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .expect("listener (re)subscribed");
}

/// Ticks the watcher until it reseeds as a reconnect (at most 5 s).
async fn reseeded_as_reconnect(watch: &mut MirrorWatch, av: &halo_core::Availability, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while watch.tick(av).await != Some(SeedReason::Reconnect) {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// At the start of an outage Postgres holds heartbeats up to one heartbeat-mirror cycle old:
/// with that cycle allowed for, a mitra that was pinging Valkey is still offered a blast; one
/// whose Postgres heartbeat is older than staleness plus a cycle is not.
#[tokio::test]
async fn j_the_postgres_fallback_allows_for_the_heartbeat_mirror_cycle() {
    let mut s = stack().await;
    let lagged =
        crate::fixture::instance_with_lag(&s.db, &s.valkey.url(), Duration::from_secs(60)).await;
    let (copied, gone) = (s.online_mitra().await, s.online_mitra().await);
    // Default staleness 90 s: copied 100 s ago (pinging since, in Valkey), gone 200 s ago.
    for (id, age) in [(copied, 100), (gone, 200)] {
        s.pg.execute(
            "UPDATE mitra_online_status SET last_heartbeat_at = now() - make_interval(secs => $2)
              WHERE mitra_id = $1",
            &[&id.uuid(), &f64::from(age)],
        )
        .await
        .unwrap();
    }
    s.valkey.kill().await;
    assert_eq!(lagged.find_available_mitras().await.unwrap(), vec![copied]);
    assert!(lagged.is_mitra_reachable(copied).await.unwrap());
    assert!(!lagged.is_mitra_reachable(gone).await.unwrap());
    let status = lagged.mitra_status(copied).await.unwrap();
    let shown = time::OffsetDateTime::now_utc() - status.last_heartbeat.unwrap();
    assert!(
        shown >= time::Duration::seconds(99),
        "the status shows Postgres as it is"
    );
    assert!(
        s.av.find_available_mitras().await.unwrap().is_empty(),
        "no allowance, no blast"
    );
}

/// A write skipped while Valkey is down does not count as a new outage: the recovery seed
/// that began before it still ends the outage (the write leaves the mirror behind instead).
#[tokio::test]
async fn j_a_write_skipped_during_the_recovery_seed_does_not_keep_the_mirror_down() {
    let mut s = stack().await;
    let id = s.online_mitra().await;
    s.valkey.kill().await;
    s.av.heartbeat(id).await.unwrap();
    assert_eq!(s.av.mirror_state(), halo_core::MirrorState::Down);
    let ticket = s.av.health().seed_starting();
    s.av.recompute_capacity_for_mitra(id).await.unwrap(); // skipped: down
    s.av.health().seed_applied(ticket);
    assert_eq!(s.av.mirror_state(), halo_core::MirrorState::Behind);
}
