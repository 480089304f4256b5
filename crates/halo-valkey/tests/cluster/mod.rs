//! The adapter on a real Valkey Cluster (three primaries, three replicas): every operation the
//! product uses works with the key prefix's hash tag putting the mirror in one slot, the
//! sharded config channel delivers, and a failover of the mirror's shard is noticed (counted as
//! a dropped connection, so the watcher reseeds) and followed.

use halo_domain::{Beacon, MirrorImage};
use halo_fakes::contract::{count, id, rules, seed, truth};
use halo_metrics::Metrics;
use halo_ports::{
    BeaconClaim, HeartbeatOutcome, MirrorCoordination, MirrorHotPath, MirrorMaintenance,
    RateCounter,
};
use halo_testkit::{eventually, ValkeyCluster};
use halo_valkey::{InvalidationEvent, Keys, ValkeyMirror, ValkeySettings};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

fn cluster_mirror(
    cluster: &ValkeyCluster,
    prefix: &str,
) -> (halo_valkey::Subscriber, ValkeyMirror) {
    let settings = ValkeySettings {
        url: cluster.urls(),
        key_prefix: prefix.to_owned(),
        timeout: Duration::from_secs(5),
        cluster: true,
        ..Default::default()
    };
    let (subscriber, conn) = halo_valkey::connect(&settings).unwrap();
    let mirror = ValkeyMirror::new(conn, Keys::new(prefix), settings.timeout, Metrics::new());
    (subscriber, mirror)
}

#[tokio::test]
async fn every_mirror_operation_works_in_one_slot() {
    let cluster = ValkeyCluster::start().await;
    let now = OffsetDateTime::now_utc();
    let mut answers = Vec::new();
    // `*` in the prefix: the bulk reads take the Lua scripts instead of SORT … GET.
    for prefix in ["{t1}:", "{t*2}:"] {
        let (_, m) = cluster_mirror(&cluster, prefix);
        assert!(!m.is_seeded().await.unwrap());
        seed(&m, now).await;
        assert!(m.is_seeded().await.unwrap());
        let mut candidates = m.candidate_states().await.unwrap();
        candidates.sort_by_key(|(id, _)| *id);
        let ids: Vec<_> = candidates.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, vec![id(1), id(3), id(4)], "{prefix}");
        let mut heartbeats = m.online_heartbeats().await.unwrap();
        heartbeats.sort_by_key(|(id, _)| *id);
        // The offer walk builds per-mitra keys from the prefix too: legal in the one slot.
        let none = std::collections::BTreeSet::new();
        let offered = m.offer_candidates(10, &none, now, rules()).await.unwrap();
        assert_eq!(
            offered,
            [id(4), id(3), id(1)],
            "{prefix}: longest idle first"
        );
        answers.push((candidates, heartbeats));

        // SCAN reaches the slot's node: the image read back is the one seeded.
        let mut expected = MirrorImage::expected_from(&truth());
        expected.online.insert(id(6));
        let image = m.read_image().await.unwrap();
        assert_eq!(image.online, expected.online, "{prefix}");
        assert_eq!(image.deactivated, expected.deactivated, "{prefix}");
        assert_eq!(image.heartbeat, expected.heartbeat, "{prefix}");
        assert_eq!(image.capacity, expected.capacity, "{prefix}");

        let later = OffsetDateTime::now_utc();
        assert_eq!(
            m.heartbeat(id(1), later).await.unwrap(),
            HeartbeatOutcome::Recorded
        );
        assert_eq!(
            m.heartbeat(id(5), later).await.unwrap(),
            HeartbeatOutcome::Offline
        );
        m.mark_online(id(5), later, count(1, 1)).await.unwrap();
        m.set_capacity(id(5), count(2, 2)).await.unwrap();
        let state = m.mitra_state(id(5)).await.unwrap();
        assert!(state.online && state.active);
        assert_eq!(state.open_sessions, 2);
        m.set_deactivated(id(5), true).await.unwrap();
        assert!(m.is_deactivated(id(5)).await.unwrap());
        m.mark_offline(&[id(5)]).await.unwrap();
        assert_eq!(m.online_count().await.unwrap(), 5);

        match m.claim_beacon(Duration::from_secs(2)).await.unwrap() {
            BeaconClaim::Compute(lock) => {
                m.store_beacon(Beacon::from_count(3), now, Duration::from_secs(5), &lock)
                    .await
                    .unwrap();
            }
            other => panic!("an empty snapshot must be computed, got {other:?}"),
        }
        assert!(matches!(
            m.claim_beacon(Duration::from_secs(2)).await.unwrap(),
            BeaconClaim::Cached(beacon) if beacon.count == 3
        ));
        assert!(m.try_lease("sweep", Duration::from_secs(5)).await.unwrap());
        assert!(!m.try_lease("sweep", Duration::from_secs(5)).await.unwrap());
        let (first, _) = m.hit("otp:x", Duration::from_secs(60)).await.unwrap();
        let (second, _) = m.hit("otp:x", Duration::from_secs(60)).await.unwrap();
        assert_eq!((first, second), (1, 2));
    }
    assert_eq!(answers[0], answers[1], "SORT and Lua reads agree");
}

#[tokio::test]
async fn the_sharded_config_channel_delivers_and_survives_a_failover() {
    let mut cluster = ValkeyCluster::start().await;
    let prefix = "{cfg}:";
    let (subscriber, m) = cluster_mirror(&cluster, prefix);
    seed(&m, OffsetDateTime::now_utc()).await;
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let _listener = halo_valkey::spawn_invalidation_listener(
        subscriber,
        Keys::new(prefix).config_channel(),
        Duration::from_secs(1),
        shutdown,
        move |event| seen.lock().unwrap().push(event),
    );
    let count_of = |kind: InvalidationEvent| {
        let events = events.clone();
        move || {
            let n = events
                .lock()
                .unwrap()
                .iter()
                .filter(|e| **e == kind)
                .count();
            async move { n }
        }
    };
    let subscribed = count_of(InvalidationEvent::Subscribed);
    let invalidated = count_of(InvalidationEvent::Invalidated);
    eventually("subscribed", Duration::from_secs(10), || {
        let subscribed = subscribed.clone();
        async move { subscribed().await >= 1 }
    })
    .await;
    m.publish_config_invalidate().await.unwrap();
    eventually("invalidation delivered", Duration::from_secs(10), || {
        let invalidated = invalidated.clone();
        async move { invalidated().await >= 1 }
    })
    .await;

    // The mirror's shard fails over: its primary dies, a replica takes over with what it had.
    assert!(m.is_seeded().await.unwrap(), "the probe learns the primary");
    let drops_before = m.connection_drops();
    let primary = cluster.primary_of(&Keys::new(prefix).generation()).await;
    let replica = cluster.replica_of(primary).await;
    cluster.node_mut(primary).kill().await;
    cluster.take_over(replica).await;
    eventually(
        "the new primary answers the probe",
        Duration::from_secs(20),
        || {
            let m = m.clone();
            async move { m.is_seeded().await.unwrap_or(false) }
        },
    )
    .await;
    assert!(
        m.connection_drops() > drops_before,
        "a changed primary must count as a dropped connection (the watcher reseeds)"
    );
    let before = invalidated().await;
    eventually(
        "delivered again after the failover",
        Duration::from_secs(20),
        || {
            let m = m.clone();
            let invalidated = invalidated.clone();
            async move {
                let _ = m.publish_config_invalidate().await;
                invalidated().await > before
            }
        },
    )
    .await;
}

/// `rediss://` through stunnel: the private CA verifies, a wrong CA is refused (an outage to the
/// core: `Unavailable`, never a plain-text fallback).
#[tokio::test]
async fn tls_with_a_private_ca_verifies_the_server() {
    use halo_testkit::{TestCerts, TlsTunnel, ValkeyServer};
    let server = ValkeyServer::start().await;
    let certs = TestCerts::make("IP:127.0.0.1").await;
    let tunnel = TlsTunnel::start(server.port(), &certs).await;
    let tls_mirror = |ca: Option<std::path::PathBuf>| {
        let settings = ValkeySettings {
            url: tunnel.rediss_url(),
            key_prefix: "tls:".into(),
            timeout: Duration::from_secs(5),
            ca_cert: ca,
            ..Default::default()
        };
        let (_, conn) = halo_valkey::connect(&settings).unwrap();
        ValkeyMirror::new(conn, Keys::new("tls:"), settings.timeout, Metrics::new())
    };
    let m = tls_mirror(Some(certs.ca()));
    seed(&m, OffsetDateTime::now_utc()).await;
    assert!(m.is_seeded().await.unwrap());
    assert_eq!(m.online_count().await.unwrap(), 5);

    let wrong = tls_mirror(Some(certs.other_ca()));
    let refused = wrong.is_seeded().await;
    assert!(
        matches!(refused, Err(halo_ports::MirrorError::Unavailable(_))),
        "a certificate from another CA must be refused, got {refused:?}"
    );
    // Without a CA the system roots are used, which do not know ours either.
    let no_ca = tls_mirror(None);
    assert!(no_ca.is_seeded().await.is_err());

    let settings = ValkeySettings {
        url: server.url(),
        ca_cert: Some(certs.ca()),
        ..Default::default()
    };
    assert!(
        matches!(
            halo_valkey::connect(&settings),
            Err(halo_valkey::ConnectError::CaWithoutTls)
        ),
        "a CA with a redis:// URL is a configuration mistake"
    );
}
