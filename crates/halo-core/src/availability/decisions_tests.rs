//! The core's decisions over in-memory stores (halo-fakes): which store answers, what the
//! mirror's health becomes, what is sent while Valkey is down. No Postgres, no Valkey; the
//! behaviour on real stores is proven in `tests/stores`.

use crate::{Availability, AvailabilityError, AvailabilityStores, MirrorState, MirrorWatch};
use crate::{SeedReason, SettingsCache, SweepOutcome};
use halo_domain::{AppSettings, MitraId};
use halo_fakes::{InMemoryMirror, InMemoryTruth, ManualClock};
use halo_metrics::Metrics;
use halo_ports::Clock;
use std::sync::Arc;
use std::time::Duration;

struct Rig {
    clock: Arc<ManualClock>,
    truth: Arc<InMemoryTruth>,
    mirror: Arc<InMemoryMirror>,
    metrics: Metrics,
    av: Availability,
}

/// An instance over fresh in-memory stores, seeded as the services seed before serving.
async fn rig() -> Rig {
    let r = unseeded_rig();
    r.av.seed_from_postgres(SeedReason::Startup)
        .await
        .expect("seed");
    r
}

fn unseeded_rig() -> Rig {
    rig_with_lag(Duration::ZERO)
}

/// An instance whose Postgres fallback allows for a heartbeat-mirror cycle of `lag`.
fn rig_with_lag(lag: Duration) -> Rig {
    // A whole second: the mirror keeps heartbeats to the microsecond, as Valkey does.
    let start = time::OffsetDateTime::now_utc().replace_nanosecond(0);
    let clock = Arc::new(ManualClock::at(
        start.unwrap_or_else(|_| time::OffsetDateTime::now_utc()),
    ));
    let truth = Arc::new(InMemoryTruth::new(clock.clone()));
    let mirror = Arc::new(InMemoryMirror::with_clock(clock.clone()));
    let metrics = Metrics::new();
    let stores = AvailabilityStores {
        truth: truth.clone(),
        settings: truth.clone(),
        mirror: mirror.clone(),
        clock: clock.clone(),
    };
    let av = Availability::new(
        stores,
        SettingsCache::new(AppSettings::default()),
        metrics.clone(),
    )
    .with_postgres_heartbeat_lag(lag);
    Rig {
        clock,
        truth,
        mirror,
        metrics,
        av,
    }
}

impl Rig {
    async fn online_mitra(&self) -> MitraId {
        let id = self.truth.add_mitra();
        self.av.set_online(id).await.expect("online");
        id
    }

    fn stale_after(&self) -> Duration {
        let stale = self.av.settings().get().stale_after();
        Duration::try_from(stale).unwrap_or_default()
    }
}

// ---- which store answers -----------------------------------------------------------------

#[tokio::test]
async fn a_trusted_mirror_answers_the_hot_paths_without_postgres() {
    let r = rig().await;
    let id = r.online_mitra().await;
    let before = r.truth.calls();
    assert!(r.av.heartbeat(id).await.unwrap().online);
    assert!(r.av.is_mitra_available(id).await.unwrap());
    assert_eq!(r.av.find_available_mitras().await.unwrap(), vec![id]);
    assert_eq!(r.av.dashboard_online_count().await.unwrap(), 1);
    assert_eq!(
        r.truth.calls(),
        before,
        "zero Postgres calls on the hot paths"
    );
}

#[tokio::test]
async fn once_valkey_is_down_reads_come_from_postgres_and_nothing_is_sent_to_it() {
    let r = rig().await;
    let id = r.online_mitra().await;
    r.mirror.go_down();
    assert!(
        r.av.heartbeat(id).await.unwrap().online,
        "answered from Postgres"
    );
    assert_eq!(r.av.mirror_state(), MirrorState::Down);
    let sent = r.mirror.total_calls();
    assert!(r.av.heartbeat(id).await.unwrap().online);
    assert!(r.av.is_mitra_reachable(id).await.unwrap());
    assert_eq!(r.av.find_available_mitras().await.unwrap(), vec![id]);
    assert_eq!(r.av.dashboard_online_count().await.unwrap(), 1);
    r.av.set_offline(id, halo_ports::OnlineReason::Manual)
        .await
        .unwrap();
    assert_eq!(
        r.mirror.total_calls(),
        sent,
        "no Valkey call while it is known down"
    );
    assert!(r.metrics.valkey_fallbacks("heartbeat") >= 2);
}

#[tokio::test]
async fn the_heartbeat_fallback_tells_deactivated_offline_unknown_and_online_apart() {
    let r = rig().await;
    let online = r.online_mitra().await;
    let offline = r.truth.add_mitra();
    let deactivated = r.online_mitra().await;
    r.av.update_mitra_status(deactivated, false).await.unwrap();
    r.mirror.go_down();
    r.clock.advance(Duration::from_secs(3));
    let now = r.clock.now();
    assert!(r.av.heartbeat(online).await.unwrap().online);
    assert_eq!(r.truth.state_of(online).unwrap().last_heartbeat, Some(now));
    assert!(!r.av.heartbeat(offline).await.unwrap().online);
    assert_eq!(r.truth.state_of(offline).unwrap().last_heartbeat, None);
    assert!(matches!(
        r.av.heartbeat(deactivated).await,
        Err(AvailabilityError::Deactivated)
    ));
    assert!(matches!(
        r.av.heartbeat(MitraId::new(uuid::Uuid::new_v4())).await,
        Err(AvailabilityError::MitraNotFound)
    ));
}

#[tokio::test]
async fn a_flushed_mirror_is_distrusted_until_a_seed_rebuilds_it() {
    let r = rig().await;
    let id = r.online_mitra().await;
    r.mirror.flush();
    assert_eq!(
        r.av.find_available_mitras().await.unwrap(),
        vec![id],
        "an empty mirror is not an empty fleet"
    );
    assert_eq!(r.av.mirror_state(), MirrorState::Unseeded);
    let before = r.truth.calls();
    r.av.is_mitra_available(id).await.unwrap();
    assert!(
        r.truth.calls() > before,
        "read from Postgres while unseeded"
    );
    r.av.seed_from_postgres(SeedReason::Flushed).await.unwrap();
    assert_eq!(r.av.mirror_state(), MirrorState::Trusted);
    let before = r.truth.calls();
    assert!(r.av.is_mitra_available(id).await.unwrap());
    assert_eq!(r.truth.calls(), before);
}

#[tokio::test]
async fn a_postgres_failure_fails_the_write_and_leaves_the_mirror_untouched() {
    let r = rig().await;
    let id = r.truth.add_mitra();
    r.truth.go_down();
    assert!(matches!(
        r.av.set_online(id).await,
        Err(AvailabilityError::StoreUnavailable(_))
    ));
    assert_eq!(r.mirror.calls("mark_online"), 0);
    assert_eq!(r.av.mirror_state(), MirrorState::Trusted);
}

#[tokio::test]
async fn a_mirror_write_that_fails_is_not_the_callers_error() {
    let r = rig().await;
    let id = r.truth.add_mitra();
    r.mirror.go_down();
    r.av.set_online(id)
        .await
        .expect("Postgres committed: the toggle succeeded");
    assert!(r.truth.state_of(id).unwrap().online);
    assert_eq!(r.av.mirror_state(), MirrorState::Down);
    assert_eq!(r.metrics.mirror_write_failures("mark_online"), 1);
}

#[tokio::test]
async fn a_write_skipped_during_the_recovery_seed_leaves_the_mirror_behind() {
    let r = rig().await;
    let id = r.online_mitra().await;
    r.mirror.go_down();
    r.av.heartbeat(id).await.unwrap();
    let ticket = r.av.health().seed_starting();
    r.av.recompute_capacity_for_mitra(id).await.unwrap(); // not sent: down
    r.av.health().seed_applied(ticket);
    assert_eq!(r.av.mirror_state(), MirrorState::Behind);
}

// ---- the beacon --------------------------------------------------------------------------

#[tokio::test]
async fn the_beacon_is_computed_once_per_ttl_while_trusted() {
    let r = rig().await;
    r.online_mitra().await;
    for _ in 0..5 {
        assert_eq!(r.av.count_available().await.unwrap().count, 1);
    }
    assert_eq!(r.metrics.beacon_recomputes(), 1);
    r.av.bust_beacon().await;
    assert_eq!(r.av.count_available().await.unwrap().count, 1);
    assert_eq!(
        r.metrics.beacon_recomputes(),
        2,
        "a config change drops the snapshot"
    );
}

#[tokio::test]
async fn while_valkey_is_down_the_beacon_comes_from_postgres_once_per_ttl() {
    let r = rig().await;
    r.online_mitra().await;
    r.mirror.go_down();
    r.av.probe().await; // finds it down
    let sent = r.mirror.total_calls();
    for _ in 0..5 {
        assert_eq!(r.av.count_available().await.unwrap().count, 1);
    }
    assert_eq!(r.metrics.beacon_recomputes(), 1);
    assert_eq!(r.mirror.total_calls(), sent);
}

#[tokio::test]
async fn a_config_change_drops_the_local_beacon_too() {
    let r = rig().await;
    r.online_mitra().await;
    r.mirror.go_down();
    r.av.probe().await;
    assert_eq!(r.av.count_available().await.unwrap().count, 1);
    r.av.set_online(r.truth.add_mitra()).await.unwrap();
    assert_eq!(
        r.av.count_available().await.unwrap().count,
        1,
        "cached for the TTL"
    );
    r.av.bust_beacon().await;
    assert_eq!(r.av.count_available().await.unwrap().count, 2);
}

/// Another instance holds the recompute lock: this one waits a moment for its snapshot
/// rather than computing one of its own.
#[tokio::test]
async fn a_caller_that_finds_the_lock_held_waits_for_the_holders_snapshot() {
    use halo_ports::{BeaconLock, MirrorCoordination};
    let r = rig().await;
    r.online_mitra().await;
    r.mirror.put_beacon_lock("another instance");
    let holder = r.mirror.clone();
    let now = r.clock.now();
    let store = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let lock = BeaconLock("another instance".into());
        let beacon = halo_domain::Beacon::from_count(42);
        holder
            .store_beacon(beacon, now, Duration::from_secs(5), &lock)
            .await
    });
    assert_eq!(r.av.count_available().await.unwrap().count, 42);
    assert_eq!(r.metrics.beacon_recomputes(), 0);
    store.await.unwrap().unwrap();
}

/// The lock's holder is slow: this instance's own last beacon still serves for a lock's
/// lifetime past the TTL (here a TTL of one second, shorter than the lock's).
#[tokio::test]
async fn a_slow_lock_holder_is_covered_by_this_instances_last_beacon() {
    let r = rig().await;
    r.online_mitra().await;
    let short = AppSettings::from_pairs([(halo_domain::SettingKey::BeaconCacheTtlSeconds, 1)]);
    r.av.settings().set(short.unwrap());
    assert_eq!(r.av.count_available().await.unwrap().count, 1);
    r.clock.advance(Duration::from_secs(2)); // the shared snapshot expired
    r.mirror.put_beacon_lock("a slow instance");
    let claims = r.mirror.calls("claim_beacon");
    assert_eq!(r.av.count_available().await.unwrap().count, 1);
    assert_eq!(
        r.mirror.calls("claim_beacon"),
        claims + 1,
        "at once, without waiting"
    );
    assert_eq!(
        r.metrics.beacon_recomputes(),
        1,
        "served from the local copy"
    );
}

/// The lock's holder died and this instance has no beacon of its own: after a short wait it
/// computes one from live data (not stored: the lock is not its own).
#[tokio::test]
async fn a_dead_lock_holder_costs_one_local_computation() {
    let r = rig().await;
    r.online_mitra().await;
    r.mirror.put_beacon_lock("a dead instance");
    assert_eq!(r.av.count_available().await.unwrap().count, 1);
    assert_eq!(r.metrics.beacon_recomputes(), 1);
    assert_eq!(r.mirror.calls("store_beacon"), 0);
}

// ---- health transitions and the watcher --------------------------------------------------

#[tokio::test]
async fn the_watcher_reseeds_with_the_reason_the_state_gives() {
    let r = unseeded_rig();
    let mut watch = MirrorWatch::default();
    assert_eq!(watch.tick(&r.av).await, Some(SeedReason::Flushed));
    assert_eq!(watch.tick(&r.av).await, None, "trusted: nothing to do");

    r.mirror.go_down();
    assert_eq!(
        watch.tick(&r.av).await,
        None,
        "no seed while Valkey does not answer"
    );
    assert_eq!(r.av.mirror_state(), MirrorState::Down);
    r.mirror.come_back();
    assert_eq!(watch.tick(&r.av).await, Some(SeedReason::Reconnect));
    assert_eq!(r.av.mirror_state(), MirrorState::Trusted);

    r.mirror.flush();
    assert_eq!(watch.tick(&r.av).await, Some(SeedReason::Flushed));

    r.av.health().write_failed();
    assert_eq!(watch.tick(&r.av).await, Some(SeedReason::WriteFailed));
}

#[tokio::test]
async fn a_seed_needs_both_stores_and_a_failed_one_leaves_the_mirror_distrusted() {
    let r = unseeded_rig();
    r.truth.go_down();
    assert!(matches!(
        r.av.seed_from_postgres(SeedReason::Startup).await,
        Err(crate::SeedError::Truth(_))
    ));
    r.truth.come_back();
    r.mirror.go_down();
    assert!(matches!(
        r.av.seed_from_postgres(SeedReason::Startup).await,
        Err(crate::SeedError::Mirror(_))
    ));
    assert_eq!(r.av.mirror_state(), MirrorState::Down);
    r.mirror.come_back();
    let report = r.av.seed_from_postgres(SeedReason::Startup).await.unwrap();
    assert_eq!(report.online, 0);
    assert_eq!(r.metrics.seeds("startup"), 1);
}

#[tokio::test]
async fn after_a_seed_the_mirror_has_no_drift() {
    let r = rig().await;
    let a = r.online_mitra().await;
    r.online_mitra().await;
    r.truth.set_open_sessions(a, 1);
    r.av.recompute_capacity_for_mitra(a).await.unwrap();
    assert!(r.av.drift_report().await.unwrap().is_empty());
    r.mirror.flush();
    assert!(!r.av.drift_report().await.unwrap().is_empty());
}

// ---- the auto-offline sweep ----------------------------------------------------------------

#[tokio::test]
async fn the_sweep_takes_a_stale_mitra_offline_in_both_stores() {
    let r = rig().await;
    let stale = r.online_mitra().await;
    let fresh = r.online_mitra().await;
    r.clock.advance(r.stale_after() + Duration::from_secs(1));
    r.av.heartbeat(fresh).await.unwrap();
    r.truth.set_heartbeat(stale, None);
    assert_eq!(
        r.av.auto_offline_tick(None).await,
        SweepOutcome::Done { changed: 1 }
    );
    assert_eq!(r.metrics.sweep_runs("auto_offline", "done"), 1);
    assert!(!r.truth.state_of(stale).unwrap().online);
    assert!(r.truth.state_of(fresh).unwrap().online);
    assert_eq!(r.av.find_available_mitras().await.unwrap(), vec![fresh]);
}

#[tokio::test]
async fn the_sweep_keeps_a_mitra_whose_postgres_heartbeat_is_fresh() {
    let r = rig().await;
    for _ in 0..3 {
        // Earlier mirror writes: the write token the sweep reads is not the first one.
        let other = r.online_mitra().await;
        r.av.set_offline(other, halo_ports::OnlineReason::Manual)
            .await
            .unwrap();
    }
    let id = r.online_mitra().await;
    r.clock.advance(r.stale_after() + Duration::from_secs(1));
    // A ping answered from Postgres (the mirror never saw it).
    r.truth.set_heartbeat(id, Some(r.clock.now()));
    assert_eq!(
        r.av.auto_offline_tick(None).await,
        SweepOutcome::Done { changed: 0 }
    );
    assert!(r.truth.state_of(id).unwrap().online);
    assert!(
        r.av.is_mitra_reachable(id).await.unwrap(),
        "the mirror learnt the heartbeat"
    );
}

/// One tick, two stale mitras in the mirror: Postgres knows a fresh heartbeat of one (a ping it
/// answered), which is put back and kept out of the fence; the other is fenced and goes
/// offline in the same tick. (Fencing the fresh one instead would sweep nobody: its restored
/// heartbeat spares it.)
#[tokio::test]
async fn the_sweep_keeps_the_mitra_fresh_in_postgres_and_takes_the_other_offline() {
    let r = rig().await;
    let fresh_in_postgres = r.online_mitra().await;
    let stale = r.online_mitra().await;
    r.clock.advance(r.stale_after() + Duration::from_secs(1));
    r.truth
        .set_heartbeat(fresh_in_postgres, Some(r.clock.now()));
    r.truth.set_heartbeat(stale, None);
    assert_eq!(
        r.av.auto_offline_tick(None).await,
        SweepOutcome::Done { changed: 1 }
    );
    assert!(!r.truth.state_of(stale).unwrap().online);
    assert!(r.truth.state_of(fresh_in_postgres).unwrap().online);
    assert_eq!(
        r.av.find_available_mitras().await.unwrap(),
        vec![fresh_in_postgres],
        "the mirror holds the one Postgres kept, with its heartbeat"
    );
    assert_eq!(r.mirror.calls("fence_stale"), 1);
    let offered = r.av.offer_candidates(5, &Default::default()).await.unwrap();
    assert_eq!(
        offered,
        [fresh_in_postgres],
        "the offer order follows the sweep"
    );
    assert!(
        r.av.drift_report().await.unwrap().is_empty(),
        "the idle order too, at the rank Postgres holds"
    );
}

#[tokio::test]
async fn the_sweep_never_runs_on_a_mirror_it_does_not_trust() {
    let r = rig().await;
    let id = r.online_mitra().await;
    r.clock.advance(r.stale_after() + Duration::from_secs(1));
    r.truth.set_heartbeat(id, None);
    r.mirror.flush();
    r.av.is_mitra_reachable(id).await.unwrap(); // finds it unseeded
    assert_eq!(r.av.auto_offline_tick(None).await, SweepOutcome::Skipped);
    r.mirror.go_down();
    r.av.probe().await;
    assert_eq!(r.av.auto_offline_tick(None).await, SweepOutcome::Skipped);
    assert_eq!(r.av.reconciliation_tick(None).await, SweepOutcome::Skipped);
    assert!(
        r.truth.state_of(id).unwrap().online,
        "nobody swept from Postgres alone"
    );
}

/// (The window's end runs on the monotonic clock, not the instance's: the store tests prove it.)
#[tokio::test]
async fn after_a_recovery_the_sweep_waits_before_taking_anyone_offline() {
    let r = rig().await;
    let id = r.online_mitra().await;
    r.mirror.go_down();
    r.av.probe().await;
    r.mirror.come_back();
    MirrorWatch::default().tick(&r.av).await;
    assert_eq!(r.av.mirror_state(), MirrorState::Trusted);
    r.truth.set_heartbeat(id, None);
    r.mirror.put_heartbeat(id, None);
    r.clock.advance(r.stale_after() + Duration::from_secs(1));
    assert_eq!(r.av.auto_offline_tick(None).await, SweepOutcome::Skipped);
    assert!(r.truth.state_of(id).unwrap().online);
}

#[tokio::test]
async fn the_heartbeat_sweep_copies_mirror_heartbeats_to_postgres() {
    let r = rig().await;
    let id = r.online_mitra().await;
    r.clock.advance(Duration::from_secs(5));
    r.av.heartbeat(id).await.unwrap();
    let now = r.clock.now();
    assert_ne!(r.truth.state_of(id).unwrap().last_heartbeat, Some(now));
    assert_eq!(
        r.av.heartbeat_mirror_tick(None).await,
        SweepOutcome::Done { changed: 1 }
    );
    assert_eq!(r.truth.state_of(id).unwrap().last_heartbeat, Some(now));
}

// ---- settings ----------------------------------------------------------------------------

#[tokio::test]
async fn a_settings_change_is_seen_at_once_and_published_to_the_other_instances() {
    let r = rig().await;
    let next =
        r.av.update_settings(
            vec![(halo_domain::SettingKey::MaxCustomersPerMitra, 5)],
            uuid::Uuid::new_v4(),
        )
        .await
        .unwrap();
    assert_eq!(next.max_customers_per_mitra(), 5);
    assert_eq!(r.av.settings().get().max_customers_per_mitra(), 5);
    assert_eq!(r.mirror.invalidations_published(), 1);
    assert_eq!(r.av.settings_history(10).await.unwrap().len(), 1);
    assert!(matches!(
        r.av.update_settings(
            vec![(halo_domain::SettingKey::MaxCustomersPerMitra, 0)],
            uuid::Uuid::new_v4()
        )
        .await,
        Err(AvailabilityError::InvalidSetting(_))
    ));
}

// ---- the rules each read applies ---------------------------------------------------------

#[tokio::test]
async fn reads_apply_every_rule_from_either_store() {
    let r = rig().await;
    let available = r.online_mitra().await;
    let full = r.online_mitra().await;
    let offline = r.truth.add_mitra();
    let max = r.av.settings().get().max_customers_per_mitra();
    r.truth.set_open_sessions(full, max);
    r.av.recompute_capacity_for_mitra(full).await.unwrap();
    let unknown = MitraId::new(uuid::Uuid::new_v4());
    for store in ["mirror", "postgres"] {
        if store == "postgres" {
            r.mirror.go_down();
            r.av.probe().await;
        }
        assert!(r.av.is_mitra_available(available).await.unwrap(), "{store}");
        assert!(
            !r.av.is_mitra_available(full).await.unwrap(),
            "{store}: at capacity"
        );
        assert!(
            r.av.is_mitra_reachable(full).await.unwrap(),
            "{store}: reachable when full"
        );
        assert!(!r.av.is_mitra_reachable(offline).await.unwrap(), "{store}");
        assert_eq!(
            r.av.find_available_mitras().await.unwrap(),
            vec![available],
            "{store}"
        );
        assert_eq!(r.av.dashboard_online_count().await.unwrap(), 2, "{store}");
        let statuses =
            r.av.mitra_statuses(&[offline, unknown, full])
                .await
                .unwrap();
        assert_eq!(statuses.len(), 3, "{store}");
        assert!(!statuses[0].unwrap().online, "{store}");
        // The mirror knows no directory: an id it never saw reads as offline; Postgres says
        // unknown. (Callers read ids they took from the directory.)
        match store {
            "mirror" => assert!(!statuses[1].unwrap().online),
            _ => assert_eq!(statuses[1], None, "postgres: unknown"),
        }
        assert_eq!(statuses[2].unwrap().open_sessions, max, "{store}");
    }
}

#[tokio::test]
async fn a_stale_mitra_is_neither_reachable_nor_available() {
    let r = rig().await;
    let id = r.online_mitra().await;
    r.clock.advance(r.stale_after() + Duration::from_secs(1));
    assert!(!r.av.is_mitra_reachable(id).await.unwrap());
    assert!(!r.av.is_mitra_available(id).await.unwrap());
    assert_eq!(r.av.count_available().await.unwrap().count, 0);
}

#[tokio::test]
async fn deactivation_refuses_the_mitra_everywhere_and_reactivation_does_not_set_it_online() {
    let r = rig().await;
    let id = r.online_mitra().await;
    r.av.update_mitra_status(id, false).await.unwrap();
    let stored = r.truth.state_of(id).unwrap();
    assert!(
        !stored.active && !stored.online,
        "Postgres: deactivated and offline"
    );
    assert!(matches!(
        r.av.ensure_active(id).await,
        Err(AvailabilityError::Deactivated)
    ));
    assert_eq!(r.av.dashboard_online_count().await.unwrap(), 0);
    r.mirror.go_down();
    assert!(matches!(
        r.av.ensure_active(id).await,
        Err(AvailabilityError::Deactivated)
    ));
    r.mirror.come_back();
    MirrorWatch::default().tick(&r.av).await;

    r.av.update_mitra_status(id, true).await.unwrap();
    r.av.ensure_active(id).await.unwrap();
    assert!(!r.truth.state_of(id).unwrap().online);
    r.av.set_online(id).await.unwrap();
    assert!(r.av.is_mitra_available(id).await.unwrap());
}

#[tokio::test]
async fn the_offline_toggle_reaches_both_stores() {
    let r = rig().await;
    let id = r.online_mitra().await;
    r.av.set_offline(id, halo_ports::OnlineReason::Manual)
        .await
        .unwrap();
    assert!(!r.truth.state_of(id).unwrap().online);
    assert!(!r.av.heartbeat(id).await.unwrap().online);
    assert!(r.av.find_available_mitras().await.unwrap().is_empty());
    assert!(matches!(
        r.av.set_offline(
            MitraId::new(uuid::Uuid::new_v4()),
            halo_ports::OnlineReason::Manual
        )
        .await,
        Err(AvailabilityError::MitraNotFound)
    ));
}

#[tokio::test]
async fn valkey_back_without_its_data_is_a_reconnect_not_a_flush() {
    let r = rig().await;
    let mut watch = MirrorWatch::default();
    r.mirror.go_down();
    assert_eq!(watch.tick(&r.av).await, None);
    r.mirror.come_back();
    r.mirror.flush();
    assert_eq!(watch.tick(&r.av).await, Some(SeedReason::Reconnect));
    assert_eq!(r.metrics.seeds("reconnect"), 1);
}

#[tokio::test]
async fn a_recount_postgres_cannot_answer_leaves_the_mirror_behind() {
    let r = rig().await;
    let id = r.online_mitra().await;
    r.truth.go_down();
    assert!(matches!(
        r.av.recompute_capacity_for_mitra(id).await,
        Err(AvailabilityError::StoreUnavailable(_))
    ));
    assert_eq!(r.av.mirror_state(), MirrorState::Behind);
    assert_eq!(r.metrics.mirror_write_failures("set_capacity"), 1);
}

/// The case the sweeps' trust guard exists for: the mirror answers, but may be behind.
#[tokio::test]
async fn a_mirror_that_is_behind_is_not_swept_from_but_reconciled() {
    let r = rig().await;
    let id = r.online_mitra().await;
    r.clock.advance(r.stale_after() + Duration::from_secs(1));
    r.truth.set_heartbeat(id, None);
    r.av.health().write_failed();
    assert_eq!(r.av.mirror_state(), MirrorState::Behind);
    assert_eq!(r.av.auto_offline_tick(None).await, SweepOutcome::Skipped);
    assert_eq!(
        r.av.heartbeat_mirror_tick(None).await,
        SweepOutcome::Skipped
    );
    assert!(
        r.truth.state_of(id).unwrap().online,
        "nobody swept from a mirror behind"
    );
    assert_eq!(
        r.av.reconciliation_tick(None).await,
        SweepOutcome::Done { changed: 1 }
    );
    assert_eq!(r.av.mirror_state(), MirrorState::Trusted);
}

#[tokio::test]
async fn the_instance_reports_its_trust_and_counts_into_its_metrics() {
    let r = unseeded_rig();
    assert!(!r.av.mirror_trusted());
    r.av.seed_from_postgres(SeedReason::Startup).await.unwrap();
    assert!(r.av.mirror_trusted());
    assert_eq!(r.av.metrics().seeds("startup"), 1);
}

/// Postgres learns the mirror's pings once per heartbeat-mirror cycle: while it answers, an
/// availability decision counts its heartbeat as up to one cycle newer; a status view does not.
#[tokio::test]
async fn decisions_from_postgres_allow_for_one_heartbeat_mirror_cycle() {
    let lag = Duration::from_secs(15);
    let r = rig_with_lag(lag);
    r.av.seed_from_postgres(SeedReason::Startup).await.unwrap();
    let id = r.online_mitra().await;
    r.mirror.go_down();
    r.av.probe().await;
    r.clock.advance(r.stale_after() + Duration::from_secs(5));
    assert!(
        r.av.is_mitra_available(id).await.unwrap(),
        "within stale_after + lag"
    );
    let shown = r.av.mitra_status(id).await.unwrap().last_heartbeat;
    assert_eq!(
        shown,
        r.truth.state_of(id).unwrap().last_heartbeat,
        "shown as stored"
    );
    r.clock.advance(lag);
    assert!(
        !r.av.is_mitra_available(id).await.unwrap(),
        "beyond stale_after + lag"
    );
}

/// Another instance changed the settings (its `config:invalidate` arrived, or the periodic
/// reload ran): this one reads the stored values and drops its beacon snapshot.
#[tokio::test]
async fn an_invalidation_reloads_the_stored_settings_and_drops_the_beacon() {
    use halo_ports::SettingsStore;
    let r = rig().await;
    r.online_mitra().await;
    r.av.count_available().await.unwrap();
    let change = [(halo_domain::SettingKey::MaxCustomersPerMitra, 6)];
    r.truth
        .change_settings(&change, uuid::Uuid::new_v4())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        r.av.stored_settings()
            .await
            .unwrap()
            .max_customers_per_mitra(),
        6
    );
    assert_ne!(
        r.av.settings().get().max_customers_per_mitra(),
        6,
        "not seen yet"
    );
    r.av.on_config_invalidated().await;
    assert_eq!(r.av.settings().get().max_customers_per_mitra(), 6);
    r.av.count_available().await.unwrap();
    assert_eq!(r.metrics.beacon_recomputes(), 2, "the snapshot was dropped");

    let change = [(halo_domain::SettingKey::MaxCustomersPerMitra, 7)];
    r.truth
        .change_settings(&change, uuid::Uuid::new_v4())
        .await
        .unwrap()
        .unwrap();
    r.av.reload_settings().await.unwrap();
    assert_eq!(r.av.settings().get().max_customers_per_mitra(), 7);
    r.truth.go_down();
    assert!(r.av.reload_settings().await.is_err());
    assert_eq!(
        r.av.settings().get().max_customers_per_mitra(),
        7,
        "kept on failure"
    );
}

#[tokio::test]
async fn a_sweep_that_finds_valkey_gone_skips_and_opens_the_breaker() {
    let r = rig().await;
    r.online_mitra().await;
    r.mirror.go_down();
    assert_eq!(r.av.auto_offline_tick(None).await, SweepOutcome::Skipped);
    assert_eq!(r.av.mirror_state(), MirrorState::Down);
    assert_eq!(r.metrics.sweep_runs("auto_offline", "skipped"), 1);
}

// ---- offer rounds: longest idle first (SPEC §12.5) ---------------------------------------

impl Rig {
    /// Mitras set online one after another, a millisecond apart (idle the longest first).
    async fn online_in_turn(&self, n: usize) -> Vec<MitraId> {
        let mut ids = Vec::new();
        for _ in 0..n {
            ids.push(self.online_mitra().await);
            self.clock.advance(Duration::from_millis(1));
        }
        ids
    }

    /// A session of `id` started or ended now, and the recount that follows it.
    async fn session_activity(&self, id: MitraId, open: u32) {
        self.truth.set_session_activity(id, self.clock.now());
        self.truth.set_open_sessions(id, open);
        self.av.recompute_capacity_for_mitra(id).await.unwrap();
    }

    async fn offer(&self, limit: usize, exclude: &[MitraId]) -> Vec<MitraId> {
        let exclude = exclude.iter().copied().collect();
        self.av.offer_candidates(limit, &exclude).await.unwrap()
    }
}

#[tokio::test]
async fn an_offer_round_reaches_the_longest_idle_first_up_to_its_limit() {
    let r = rig().await;
    let ids = r.online_in_turn(5).await;
    let [a, b, c, d, e] = ids[..] else {
        unreachable!("five mitras")
    };
    r.clock.advance(Duration::from_secs(1));
    // b's session ended: idle since now, behind everyone. d took a session and is under
    // capacity: busy, so behind the idle ones too. e is at capacity: not offered at all.
    r.session_activity(b, 0).await;
    r.clock.advance(Duration::from_millis(1));
    r.session_activity(d, 1).await;
    let max = r.av.settings().get().max_customers_per_mitra();
    r.session_activity(e, max).await;
    let before = r.truth.calls();
    assert_eq!(r.offer(10, &[]).await, [a, c, b, d]);
    assert_eq!(r.offer(2, &[]).await, [a, c], "the limit");
    assert_eq!(r.offer(2, &[a]).await, [c, b], "the mitras already offered");
    assert_eq!(r.offer(10, &[a, b, c, d]).await, Vec::<MitraId>::new());
    assert!(r.offer(0, &[]).await.is_empty());
    assert_eq!(r.truth.calls(), before, "zero Postgres calls while trusted");
    assert_eq!(
        r.mirror.calls("offer_candidates"),
        4,
        "one each; none for limit 0"
    );

    // Offline and back: idle since it came back, at the end of the line.
    r.av.set_offline(a, halo_ports::OnlineReason::Manual)
        .await
        .unwrap();
    assert_eq!(r.offer(10, &[]).await, [c, b, d]);
    r.clock.advance(Duration::from_millis(1));
    r.av.set_online(a).await.unwrap();
    assert_eq!(r.offer(10, &[]).await, [c, b, d, a]);
}

#[tokio::test]
async fn while_valkey_is_down_an_offer_round_reads_the_same_order_from_postgres() {
    let r = rig().await;
    // Twelve mitras online at the same instant (their order is the random tie-break), and
    // two whose sessions moved them to the back.
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(r.online_mitra().await);
    }
    r.clock.advance(Duration::from_secs(1));
    r.session_activity(ids[0], 0).await;
    r.clock.advance(Duration::from_millis(1));
    r.session_activity(ids[1], 1).await;
    let from_mirror = r.offer(20, &[]).await;
    assert_eq!(from_mirror.len(), 12);
    assert_eq!(&from_mirror[10..], &ids[..2], "moved to the back, in order");
    let mut ties = from_mirror[..10].to_vec();
    ties.sort();
    assert_ne!(ties, from_mirror[..10], "ties are not broken by id");
    let excluded = [from_mirror[0], from_mirror[5]];
    let mirror_excluding = r.offer(3, &excluded).await;

    r.mirror.go_down();
    r.av.probe().await;
    assert_eq!(r.av.mirror_state(), MirrorState::Down);
    let sent = r.mirror.total_calls();
    let before = r.truth.calls();
    assert_eq!(
        r.offer(20, &[]).await,
        from_mirror,
        "the same order from Postgres"
    );
    assert_eq!(r.offer(3, &excluded).await, mirror_excluding);
    assert_eq!(r.truth.calls() - before, 2, "one statement a round");
    assert_eq!(
        r.mirror.total_calls(),
        sent,
        "no Valkey call while it is down"
    );
    assert!(r.metrics.valkey_fallbacks("offer_candidates") >= 2);

    // Flushed: unseeded, Postgres answers the same until a seed rebuilt the order.
    r.mirror.come_back();
    r.av.seed_from_postgres(SeedReason::Reconnect)
        .await
        .unwrap();
    r.mirror.flush();
    assert_eq!(r.offer(20, &[]).await, from_mirror);
    assert_eq!(r.av.mirror_state(), MirrorState::Unseeded);
    r.av.seed_from_postgres(SeedReason::Flushed).await.unwrap();
    assert_eq!(
        r.offer(20, &[]).await,
        from_mirror,
        "the seed rebuilt the same order"
    );
    assert!(r.av.drift_report().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_offer_fallback_allows_for_one_heartbeat_mirror_cycle() {
    let lag = Duration::from_secs(15);
    let r = rig_with_lag(lag);
    r.av.seed_from_postgres(SeedReason::Startup).await.unwrap();
    let ids = r.online_in_turn(2).await;
    r.mirror.go_down();
    r.av.probe().await;
    r.clock.advance(r.stale_after() + Duration::from_secs(5));
    assert_eq!(r.offer(5, &[]).await, ids, "within stale_after + lag");
    r.clock.advance(lag);
    assert!(r.offer(5, &[]).await.is_empty(), "beyond stale_after + lag");
}
