//! Section A: the seed rebuilds every mirror key from Postgres, atomically.

use crate::fixture::{bulk_online_mitras, cap_key, hb_key, sorted, stack};
use halo_core::{MirrorWatch, SeedReason};
use halo_ports::{CapacityCount, MirrorHotPath, MirrorMaintenance, SeedWrite};
use redis::AsyncCommands;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[tokio::test]
async fn a_seed_counts_and_keys_match_postgres() {
    let s = stack().await;
    let (online, busy, deactivated, offline_busy) = (
        s.mitra().await,
        s.mitra().await,
        s.mitra().await,
        s.mitra().await,
    );
    // The truth is written straight to Postgres, as if the mirror had been lost.
    s.pg.execute(
        "UPDATE mitra_online_status SET is_online = true WHERE mitra_id = ANY($1)",
        &[&vec![online.uuid(), busy.uuid()]],
    )
    .await
    .unwrap();
    s.pg.execute(
        "UPDATE mitras SET is_active = false WHERE id = $1",
        &[&deactivated.uuid()],
    )
    .await
    .unwrap();
    s.session(busy, "active").await;
    s.session(busy, "pending_payment").await;
    s.session(busy, "ended").await;
    s.session(offline_busy, "active").await;

    let before = OffsetDateTime::now_utc();
    let report = s.av.seed_from_postgres(SeedReason::Operator).await.unwrap();

    let truth =
        s.pg.query_one(
            "SELECT (SELECT count(*) FROM mitra_online_status WHERE is_online) AS online,
                    (SELECT count(*) FROM mitras WHERE NOT is_active) AS deactivated,
                    (SELECT count(DISTINCT mitra_id) FROM chat_sessions WHERE mitra_id IS NOT NULL
                       AND status IN ('active', 'pending_payment')) AS with_sessions",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(report.online as i64, truth.get::<_, i64>("online"));
    assert_eq!(
        report.deactivated as i64,
        truth.get::<_, i64>("deactivated")
    );
    assert_eq!(
        report.with_sessions as i64,
        truth.get::<_, i64>("with_sessions")
    );
    assert_eq!(
        (report.online, report.deactivated, report.with_sessions),
        (2, 1, 2)
    );

    assert_eq!(s.smembers("mitras:online").await, sorted([online, busy]));
    assert_eq!(
        s.smembers("mitras:deactivated").await,
        sorted([deactivated])
    );
    for id in [online, busy] {
        let raw = s
            .get(&hb_key(id))
            .await
            .expect("heartbeat seeded for online mitra");
        let at = OffsetDateTime::parse(&raw, &Rfc3339).expect("RFC 3339 heartbeat");
        assert!(at >= before - time::Duration::seconds(1) && at <= OffsetDateTime::now_utc());
    }
    assert_eq!(s.get(&hb_key(offline_busy)).await, None);
    assert_eq!(s.get(&cap_key(online)).await.as_deref(), Some("0"));
    assert_eq!(s.get(&cap_key(busy)).await.as_deref(), Some("2"));
    assert_eq!(s.get(&cap_key(offline_busy)).await.as_deref(), Some("1"));
    assert_eq!(s.metrics.seeds("operator"), 1);
    assert!(s.drift_is_empty().await);
}

#[tokio::test]
async fn a_flushdb_is_noticed_and_reseeded() {
    let s = stack().await;
    let id = s.online_mitra().await;
    s.av.seed_from_postgres(SeedReason::Startup).await.unwrap();
    let mut watch = MirrorWatch::default();
    assert_eq!(
        watch.tick(&s.av).await,
        None,
        "a healthy mirror is left alone"
    );

    let () = redis::cmd("FLUSHDB")
        .query_async(&mut s.vk().await)
        .await
        .unwrap();
    assert_eq!(watch.tick(&s.av).await, Some(SeedReason::Flushed));
    assert_eq!(s.smembers("mitras:online").await, sorted([id]));
    assert!(s.get(&hb_key(id)).await.is_some());
    assert!(s.drift_is_empty().await);
}

#[tokio::test]
async fn a_reseed_keeps_a_heartbeat_newer_than_postgres() {
    let s = stack().await;
    let id = s.online_mitra().await;
    let future = "2999-01-01T00:00:00.000000Z";
    s.set(&hb_key(id), future).await;
    s.av.seed_from_postgres(SeedReason::Operator).await.unwrap();
    assert_eq!(s.get(&hb_key(id)).await.as_deref(), Some(future));
}

/// Valkey back with its old data after an outage whose pings went to Postgres: the seed must
/// not leave the older heartbeat (the next auto-offline tick would take a live mitra offline).
#[tokio::test]
async fn a_reseed_takes_the_newer_postgres_heartbeat_over_an_old_valkey_one() {
    let s = stack().await;
    let id = s.online_mitra().await;
    let old = "2026-01-01T00:00:00.000000Z";
    s.set(&hb_key(id), old).await;
    let pinged = OffsetDateTime::now_utc();
    s.pg.execute(
        "UPDATE mitra_online_status SET last_heartbeat_at = $2 WHERE mitra_id = $1",
        &[&id.uuid(), &pinged],
    )
    .await
    .unwrap();
    s.av.seed_from_postgres(SeedReason::Reconnect)
        .await
        .unwrap();
    let seeded = OffsetDateTime::parse(&s.get(&hb_key(id)).await.unwrap(), &Rfc3339).unwrap();
    assert_eq!(seeded.unix_timestamp(), pinged.unix_timestamp());
    assert!(seeded > OffsetDateTime::parse(old, &Rfc3339).unwrap());
}

/// A mirror write that lands between the seed's token read and its swap is newer than the
/// seed's image: the swap keeps that mitra's live keys and applies the rest (never refused,
/// so writes cannot starve a seed).
#[tokio::test]
async fn a_seed_keeps_the_keys_of_a_mitra_written_after_its_token() {
    let s = stack().await;
    let (written, other) = (s.mitra().await, s.online_mitra().await);
    let mirror = crate::fixture::mirror(&s.valkey.url(), &s.metrics);
    let token = mirror.write_token().await.unwrap();
    let stale_image = halo_domain::MirrorImage::default();
    mirror
        .mark_online(
            written,
            OffsetDateTime::now_utc(),
            CapacityCount {
                open: 0,
                seq: 1,
                idle_rank: halo_domain::IdleRank::new(OffsetDateTime::now_utc(), 0.0),
            },
        )
        .await
        .unwrap();
    let outcome = mirror
        .replace_all(&stale_image, token, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(outcome, SeedWrite::Applied);
    assert_eq!(
        s.smembers("mitras:online").await,
        sorted([written]),
        "{other} follows the image"
    );
    assert!(s.get(&hb_key(written)).await.is_some());
    assert!(s.get(&hb_key(other)).await.is_none());
    let staged: Vec<String> = s.vk().await.keys("mirror:staging:*").await.unwrap();
    assert!(staged.is_empty(), "staging keys cleaned up: {staged:?}");
}

/// Two seeds racing (two instances), a deactivation landing between their truth reads: the
/// one that read first must not overwrite the later one's image.
#[tokio::test]
async fn an_older_seed_never_overwrites_a_newer_one() {
    let s = stack().await;
    let id = s.online_mitra().await;
    let mirror = crate::fixture::mirror(&s.valkey.url(), &s.metrics);
    let older_token = mirror.write_token().await.unwrap();
    let older_truth = halo_ports::AvailabilityTruth::mirror_truth(s.truth.as_ref())
        .await
        .unwrap();
    s.av.update_mitra_status(id, false).await.unwrap();
    s.av.seed_from_postgres(SeedReason::Reconnect)
        .await
        .unwrap();
    let older = mirror
        .replace_all(&older_truth.image(), older_token, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(older, SeedWrite::Superseded);
    assert_eq!(s.smembers("mitras:deactivated").await, sorted([id]));
    assert!(s.smembers("mitras:online").await.is_empty());
    assert!(s.drift_is_empty().await);
}

#[tokio::test]
async fn a_seed_of_many_mitras_swaps_atomically() {
    let s = stack().await;
    bulk_online_mitras(&s.pg, "+63", 3000).await;
    let report = s.av.seed_from_postgres(SeedReason::Startup).await.unwrap();
    assert_eq!(report.online, 3000);
    let count: u64 = s.vk().await.scard("mitras:online").await.unwrap();
    assert_eq!(count, 3000);
    assert!(s.drift_is_empty().await);
}
