//! Sections B, D, E: write-through toggles, capacity by count, deactivation propagation.

use crate::fixture::{cap_key, hb_key, sorted, stack};
use halo_core::AvailabilityError;
use halo_ports::OnlineReason;
use redis::AsyncCommands;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[tokio::test]
async fn b_toggles_write_postgres_then_mirror_with_audit_rows() {
    let s = stack().await;
    let id = s.mitra().await;
    s.av.set_online(id).await.unwrap();
    assert!(s.pg_online(id).await);
    assert!(s
        .vk()
        .await
        .sismember::<_, _, bool>("mitras:online", id.to_string())
        .await
        .unwrap());
    let hb = s
        .get(&hb_key(id))
        .await
        .expect("heartbeat stamped on going online");
    let at = OffsetDateTime::parse(&hb, &Rfc3339).unwrap();
    assert!(OffsetDateTime::now_utc() - at < time::Duration::seconds(5));

    s.av.set_offline(id, OnlineReason::Manual).await.unwrap();
    assert!(!s.pg_online(id).await);
    assert!(!s
        .vk()
        .await
        .sismember::<_, _, bool>("mitras:online", id.to_string())
        .await
        .unwrap());
    assert_eq!(s.get(&hb_key(id)).await, None);

    let rows =
        s.pg.query(
            "SELECT status, reason FROM mitra_online_logs WHERE mitra_id = $1 ORDER BY id",
            &[&id.uuid()],
        )
        .await
        .unwrap();
    let audit: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        audit,
        vec![
            ("online".into(), "manual".into()),
            ("offline".into(), "manual".into())
        ]
    );
    // A repeated toggle is not a transition: no second audit row.
    s.av.set_offline(id, OnlineReason::Manual).await.unwrap();
    let count: i64 =
        s.pg.query_one(
            "SELECT count(*) FROM mitra_online_logs WHERE mitra_id = $1",
            &[&id.uuid()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 2);
}

#[tokio::test]
async fn b_a_deactivated_mitra_cannot_go_online() {
    let s = stack().await;
    let id = s.mitra().await;
    s.av.update_mitra_status(id, false).await.unwrap();
    assert!(matches!(
        s.av.set_online(id).await,
        Err(AvailabilityError::Deactivated)
    ));
    assert!(!s.pg_online(id).await);
}

#[tokio::test]
async fn b_unknown_mitra_is_not_found() {
    let s = stack().await;
    let ghost = halo_domain::MitraId::new(uuid::Uuid::new_v4());
    assert!(matches!(
        s.av.set_offline(ghost, OnlineReason::Manual).await,
        Err(AvailabilityError::MitraNotFound)
    ));
    assert!(matches!(
        s.av.update_mitra_status(ghost, false).await,
        Err(AvailabilityError::MitraNotFound)
    ));
}

#[tokio::test]
async fn d_capacity_is_recounted_after_each_transition() {
    let s = stack().await;
    let id = s.online_mitra().await;
    assert_eq!(s.get(&cap_key(id)).await.as_deref(), Some("0"));
    let first = s.session(id, "active").await;
    assert_eq!(s.av.recompute_capacity_for_mitra(id).await.unwrap(), 1);
    assert_eq!(s.get(&cap_key(id)).await.as_deref(), Some("1"));
    let second = s.session(id, "pending_payment").await;
    assert_eq!(s.av.recompute_capacity_for_mitra(id).await.unwrap(), 2);
    assert_eq!(s.get(&cap_key(id)).await.as_deref(), Some("2"));
    for (session, expected) in [(first, "1"), (second, "0")] {
        s.pg.execute(
            "UPDATE chat_sessions SET status = 'ended' WHERE id = $1",
            &[&session],
        )
        .await
        .unwrap();
        s.av.recompute_capacity_for_mitra(id).await.unwrap();
        assert_eq!(s.get(&cap_key(id)).await.as_deref(), Some(expected));
    }
}

#[tokio::test]
async fn d_reroute_moves_capacity_between_mitras() {
    let s = stack().await;
    let (a, b) = (s.online_mitra().await, s.online_mitra().await);
    let session = s.session(a, "active").await;
    s.av.recompute_capacity_for_mitra(a).await.unwrap();
    s.pg.execute(
        "UPDATE chat_sessions SET mitra_id = $2 WHERE id = $1",
        &[&session, &b.uuid()],
    )
    .await
    .unwrap();
    s.av.recompute_capacity_for_mitra(a).await.unwrap();
    s.av.recompute_capacity_for_mitra(b).await.unwrap();
    assert_eq!(s.get(&cap_key(a)).await.as_deref(), Some("0"));
    assert_eq!(s.get(&cap_key(b)).await.as_deref(), Some("1"));
}

#[tokio::test]
async fn e_deactivation_revokes_sessions_sets_offline_and_blocks_heartbeats() {
    let s = stack().await;
    let id = s.online_mitra().await;
    s.pg.execute(
        "INSERT INTO auth_sessions (user_id, role, refresh_token_hash, expires_at)
         VALUES ($1, 'mitra', 'h1', now() + interval '1 day'), ($1, 'mitra', 'h2', now() + interval '1 day')",
        &[&id.uuid()],
    )
    .await
    .unwrap();
    assert!(s.av.heartbeat(id).await.unwrap().online);

    s.admin().await.set_active(id, false).await.unwrap();
    let active: bool =
        s.pg.query_one("SELECT is_active FROM mitras WHERE id = $1", &[&id.uuid()])
            .await
            .unwrap()
            .get(0);
    assert!(!active);
    let live: i64 =
        s.pg.query_one(
            "SELECT count(*) FROM auth_sessions WHERE user_id = $1 AND revoked_at IS NULL",
            &[&id.uuid()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(live, 0, "every refresh session revoked");
    assert_eq!(s.smembers("mitras:deactivated").await, sorted([id]));
    assert!(!s.pg_online(id).await);
    assert!(s.smembers("mitras:online").await.is_empty());
    assert!(matches!(
        s.av.heartbeat(id).await,
        Err(AvailabilityError::Deactivated)
    ));
    assert!(!s.av.find_available_mitras().await.unwrap().contains(&id));

    s.av.update_mitra_status(id, true).await.unwrap();
    assert!(s.smembers("mitras:deactivated").await.is_empty());
    let ack = s.av.heartbeat(id).await.unwrap();
    assert!(!ack.online, "reactivation does not set the mitra online");
    s.av.set_online(id).await.unwrap();
    assert!(s.av.heartbeat(id).await.unwrap().online);
}

/// Each recount of a mitra takes the next number in its order, under the row lock.
#[tokio::test]
async fn d_recounts_are_numbered_in_order() {
    let s = stack().await;
    let id = s.online_mitra().await;
    let first = halo_ports::AvailabilityTruth::count_open_sessions(s.truth.as_ref(), id)
        .await
        .unwrap();
    s.session(id, "active").await;
    let second = halo_ports::AvailabilityTruth::count_open_sessions(s.truth.as_ref(), id)
        .await
        .unwrap();
    assert!(second.seq > first.seq);
    assert_eq!((first.open, second.open), (0, 1));
}
