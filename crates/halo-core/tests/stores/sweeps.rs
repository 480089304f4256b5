//! Sections G, H, I: the auto-offline sweep, the heartbeat mirror, reconciliation, leases.

use crate::fixture::{cap_key, hb_key, instance, sorted, stack};
use halo_core::{spawn_background, Cadences, SweepOutcome};
use halo_testkit::eventually;
use redis::AsyncCommands;
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[tokio::test]
async fn g_auto_offline_sets_stale_and_missing_heartbeats_offline() {
    let s = stack().await;
    let (fresh, missing, stale) = (
        s.online_mitra().await,
        s.online_mitra().await,
        s.online_mitra().await,
    );
    let () = s.vk().await.del(hb_key(missing)).await.unwrap();
    s.set(&hb_key(stale), "2020-01-01T00:00:00Z").await;
    s.age_pg_heartbeat(missing).await;
    s.age_pg_heartbeat(stale).await;

    assert_eq!(
        s.av.auto_offline_tick(None).await,
        SweepOutcome::Done { changed: 2 }
    );
    assert!(s.pg_online(fresh).await);
    for id in [missing, stale] {
        assert!(!s.pg_online(id).await);
        let reason: String =
            s.pg.query_one(
                "SELECT reason FROM mitra_online_logs WHERE mitra_id = $1 AND status = 'offline'",
                &[&id.uuid()],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(reason, "auto_offline");
        assert_eq!(s.get(&hb_key(id)).await, None);
    }
    assert_eq!(s.smembers("mitras:online").await, sorted([fresh]));
    assert!(s.drift_is_empty().await);
}

#[tokio::test]
async fn g_sweep_skips_on_valkey_error_without_touching_postgres() {
    let mut s = stack().await;
    let id = s.online_mitra().await;
    s.pg.execute(
        "UPDATE mitra_online_status SET last_heartbeat_at = '2020-01-01' WHERE mitra_id = $1",
        &[&id.uuid()],
    )
    .await
    .unwrap();
    s.valkey.kill().await;
    assert_eq!(s.av.auto_offline_tick(None).await, SweepOutcome::Skipped);
    assert_eq!(
        s.av.auto_offline_tick(Some(Duration::from_secs(1))).await,
        SweepOutcome::Skipped
    );
    assert_eq!(
        s.metrics.pg_queries("set_offline_many"),
        0,
        "no mass-offline from postgres"
    );
    assert!(s.pg_online(id).await);
    assert_eq!(s.metrics.sweep_runs("auto_offline", "skipped"), 2);
}

#[tokio::test]
async fn h_heartbeat_mirror_copies_all_heartbeats_in_one_statement() {
    let s = stack().await;
    let ids = [
        s.online_mitra().await,
        s.online_mitra().await,
        s.online_mitra().await,
    ];
    for id in ids {
        s.av.heartbeat(id).await.unwrap();
    }
    let before = s.metrics.pg_queries("record_heartbeats");
    assert_eq!(
        s.av.heartbeat_mirror_tick(None).await,
        SweepOutcome::Done { changed: 3 }
    );
    assert_eq!(
        s.metrics.pg_queries("record_heartbeats") - before,
        1,
        "one UNNEST statement"
    );
    for id in ids {
        let valkey = OffsetDateTime::parse(&s.get(&hb_key(id)).await.unwrap(), &Rfc3339).unwrap();
        let pg: OffsetDateTime =
            s.pg.query_one(
                "SELECT last_heartbeat_at FROM mitra_online_status WHERE mitra_id = $1",
                &[&id.uuid()],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(pg, valkey);
    }
    // Idempotent: a second run (another instance) changes nothing and does not fail.
    assert_eq!(
        s.av.heartbeat_mirror_tick(None).await,
        SweepOutcome::Done { changed: 0 }
    );
}

#[tokio::test]
async fn h_heartbeat_mirror_skips_on_valkey_error() {
    let mut s = stack().await;
    let id = s.online_mitra().await;
    let before: Option<OffsetDateTime> =
        s.pg.query_one(
            "SELECT last_heartbeat_at FROM mitra_online_status WHERE mitra_id = $1",
            &[&id.uuid()],
        )
        .await
        .unwrap()
        .get(0);
    s.valkey.kill().await;
    assert_eq!(
        s.av.heartbeat_mirror_tick(None).await,
        SweepOutcome::Skipped
    );
    assert_eq!(s.metrics.pg_queries("record_heartbeats"), 0);
    let after: Option<OffsetDateTime> =
        s.pg.query_one(
            "SELECT last_heartbeat_at FROM mitra_online_status WHERE mitra_id = $1",
            &[&id.uuid()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(before, after);
}

#[tokio::test]
async fn i_reconciliation_heals_a_corrupted_mirror() {
    let s = stack().await;
    let (kept, removed) = (s.online_mitra().await, s.online_mitra().await);
    let mut vk = s.vk().await;
    let () = vk
        .sadd("mitras:online", "00000000-0000-0000-0000-000000000999")
        .await
        .unwrap();
    let () = vk.srem("mitras:online", removed.to_string()).await.unwrap();
    let () = vk.set(cap_key(kept), 99).await.unwrap();
    let drift = s.av.drift_report().await.unwrap();
    assert_eq!(drift.missing.len(), 1, "{drift:?}");
    assert_eq!(drift.extra.len(), 1, "{drift:?}");
    assert_eq!(drift.different.len(), 1, "{drift:?}");

    assert!(matches!(
        s.av.reconciliation_tick(None).await,
        SweepOutcome::Done { .. }
    ));
    assert_eq!(s.smembers("mitras:online").await, sorted([kept, removed]));
    assert_eq!(s.get(&cap_key(kept)).await.as_deref(), Some("0"));
    assert!(s.drift_is_empty().await);
    assert_eq!(s.metrics.seeds("reconciliation"), 1);
}

#[tokio::test]
async fn k_a_lease_lets_one_instance_sweep_per_cadence() {
    let s = stack().await;
    let (other, _) = instance(&s.db, &s.valkey.url()).await;
    let lease = Some(Duration::from_secs(5));
    let (a, b) = tokio::join!(
        s.av.auto_offline_tick(lease),
        other.auto_offline_tick(lease)
    );
    let outcomes = [a, b];
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, SweepOutcome::Done { .. }))
            .count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == SweepOutcome::LeaseHeld)
            .count(),
        1,
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn i_background_loops_run_on_their_cadence_and_zero_disables_reconciliation() {
    let s = stack().await;
    let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
    let cadences = Cadences {
        auto_offline: Duration::from_millis(200),
        heartbeat_mirror: Duration::from_millis(200),
        reconciliation: None,
        mirror_watch: Duration::from_millis(200),
        settings_refresh: Duration::from_secs(30),
        chat_timers: Duration::from_secs(600),
    };
    let tasks = spawn_background(s.av.clone(), s.chat().await, &cadences, &shutdown);
    let id = s.online_mitra().await;
    let () = s.vk().await.del(hb_key(id)).await.unwrap();
    s.age_pg_heartbeat(id).await;
    eventually(
        "auto-offline loop sets the stale mitra offline",
        Duration::from_secs(5),
        || async { !s.pg_online(id).await },
    )
    .await;
    eventually(
        "heartbeat mirror loop ran",
        Duration::from_secs(5),
        || async { s.metrics.sweep_runs("heartbeat_mirror", "done") > 0 },
    )
    .await;
    assert_eq!(
        s.metrics.seeds("reconciliation"),
        0,
        "reconciliation disabled"
    );
    shutdown_tx.send(true).unwrap();
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("loops stop on shutdown")
            .unwrap();
    }
}

/// The mirror shows a stale heartbeat but Postgres holds a fresh one (pings answered from
/// Postgres while the mirror was behind): the mitra stays online and the mirror learns it.
#[tokio::test]
async fn g_a_fresh_postgres_heartbeat_keeps_the_mitra_online() {
    let s = stack().await;
    let id = s.online_mitra().await;
    s.set(&hb_key(id), "2020-01-01T00:00:00.000000Z").await;
    assert_eq!(
        s.av.auto_offline_tick(None).await,
        SweepOutcome::Done { changed: 0 }
    );
    assert!(s.pg_online(id).await);
    assert_eq!(s.smembers("mitras:online").await, sorted([id]));
    let healed = OffsetDateTime::parse(&s.get(&hb_key(id)).await.unwrap(), &Rfc3339).unwrap();
    assert!(OffsetDateTime::now_utc() - healed < time::Duration::minutes(1));
    assert_eq!(
        s.metrics.pg_queries("set_offline_many"),
        0,
        "nothing left to take offline"
    );
}

/// A mirror that is not trusted (flushed, or back with data of unknown age) is not swept.
#[tokio::test]
async fn g_no_sweep_of_an_untrusted_mirror() {
    let s = stack().await;
    let id = s.online_mitra().await;
    s.age_pg_heartbeat(id).await;
    s.set(&hb_key(id), "2020-01-01T00:00:00.000000Z").await;
    let () = s.vk().await.del("mirror:generation").await.unwrap();
    assert_eq!(s.av.auto_offline_tick(None).await, SweepOutcome::Skipped);
    assert_eq!(s.av.mirror_state(), halo_core::MirrorState::Unseeded);
    assert_eq!(s.av.auto_offline_tick(None).await, SweepOutcome::Skipped);
    assert!(s.pg_online(id).await);
    assert_eq!(s.metrics.pg_queries("set_offline_many"), 0);
}

/// Back from an outage, pings that reached only the lost mirror are gone: no auto-offline
/// until live mitras have had `stale_after` to ping the reseeded mirror.
#[tokio::test]
async fn g_no_sweep_right_after_a_recovery() {
    let mut s = stack().await;
    let id = s.online_mitra().await;
    s.valkey.kill().await;
    assert!(
        s.av.heartbeat(id).await.unwrap().online,
        "finds Valkey down"
    );
    s.valkey.restart().await;
    let mut watch = halo_core::MirrorWatch::default();
    assert!(watch.tick(&s.av).await.is_some(), "the recovery seed");
    s.age_pg_heartbeat(id).await;
    s.set(&hb_key(id), "2020-01-01T00:00:00.000000Z").await;
    assert_eq!(s.av.auto_offline_tick(None).await, SweepOutcome::Skipped);
    assert!(s.pg_online(id).await);
}
