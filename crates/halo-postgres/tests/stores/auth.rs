//! `PgAuth`: OTP codes (consumed once, attempts counted under races), accounts, and refresh
//! sessions (rotated once, refused when revoked or expired, revoked only by their owner).

use crate::fixture::{fixture, now, phone, Fixture};
use halo_domain::Role;
use halo_ports::{AuthStore, OtpCheck, Rotation, SessionRef, TruthError};
use std::sync::Arc;
use time::Duration;
use uuid::Uuid;

const MAX: u32 = 3;

/// Moves every pending code's attempt window into the past (it lasts 15 minutes).
async fn expire_otp_window(f: &Fixture) {
    f.pg.execute(
        "UPDATE otp_codes SET created_at = now() - interval '16 minutes'",
        &[],
    )
    .await
    .unwrap();
}

fn later() -> time::OffsetDateTime {
    now() + Duration::minutes(5)
}

#[tokio::test]
async fn a_valid_code_is_consumed() {
    let f = fixture().await;
    let phone = phone();
    f.auth
        .save_otp(&phone, Role::Customer, "h1", later())
        .await
        .unwrap();
    let check = |hash: &'static str| {
        let (auth, phone) = (&f.auth, phone.clone());
        async move {
            auth.check_otp(&phone, Role::Customer, hash, MAX, now())
                .await
                .unwrap()
        }
    };
    assert_eq!(check("h1").await, OtpCheck::Valid);
    assert_eq!(check("h1").await, OtpCheck::Missing, "a code works once");
    assert_eq!(
        f.count("SELECT count(*) FROM otp_codes", &[]).await,
        0,
        "consumed = deleted"
    );
}

#[tokio::test]
async fn a_missing_code_is_missing_per_phone_and_role() {
    let f = fixture().await;
    let phone = phone();
    let check = |role| f.auth.check_otp(&phone, role, "h", MAX, now());
    assert_eq!(check(Role::Customer).await.unwrap(), OtpCheck::Missing);
    f.auth
        .save_otp(&phone, Role::Customer, "h", later())
        .await
        .unwrap();
    assert_eq!(check(Role::Mitra).await.unwrap(), OtpCheck::Missing);
    assert_eq!(
        f.auth
            .check_otp(&crate::fixture::phone(), Role::Customer, "h", MAX, now())
            .await
            .unwrap(),
        OtpCheck::Missing
    );
    assert_eq!(check(Role::Customer).await.unwrap(), OtpCheck::Valid);
}

#[tokio::test]
async fn wrong_codes_count_until_even_the_right_one_is_refused() {
    let f = fixture().await;
    let phone = phone();
    f.auth
        .save_otp(&phone, Role::Mitra, "right", later())
        .await
        .unwrap();
    let check = |hash: &'static str| f.auth.check_otp(&phone, Role::Mitra, hash, MAX, now());
    for _ in 0..MAX {
        assert_eq!(check("wrong").await.unwrap(), OtpCheck::Wrong);
    }
    assert_eq!(check("right").await.unwrap(), OtpCheck::TooManyAttempts);
    assert_eq!(check("wrong").await.unwrap(), OtpCheck::TooManyAttempts);
    let attempts: i32 =
        f.pg.query_one("SELECT attempts FROM otp_codes", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(attempts, 3, "kept, and refusals do not count");

    // A new code within the window keeps the count: re-requesting does not buy more guesses.
    f.auth
        .save_otp(&phone, Role::Mitra, "again", later())
        .await
        .unwrap();
    assert_eq!(check("again").await.unwrap(), OtpCheck::TooManyAttempts);

    // Once the window has passed, a new code starts afresh.
    expire_otp_window(&f).await;
    f.auth
        .save_otp(&phone, Role::Mitra, "fresh", later())
        .await
        .unwrap();
    assert_eq!(check("right").await.unwrap(), OtpCheck::Wrong);
    assert_eq!(check("fresh").await.unwrap(), OtpCheck::Valid);
}

#[tokio::test]
async fn an_expired_code_is_refused_and_kept() {
    let f = fixture().await;
    let phone = phone();
    let at = now();
    f.auth
        .save_otp(&phone, Role::Customer, "h", at)
        .await
        .unwrap();
    let check = |hash: &'static str| f.auth.check_otp(&phone, Role::Customer, hash, MAX, at);
    assert_eq!(
        check("h").await.unwrap(),
        OtpCheck::Expired,
        "expires_at <= now"
    );
    assert_eq!(check("x").await.unwrap(), OtpCheck::Expired);
    let attempts: i32 =
        f.pg.query_one("SELECT attempts FROM otp_codes", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(attempts, 0);
    assert_eq!(
        f.auth
            .check_otp(&phone, Role::Customer, "h", MAX, at - Duration::seconds(1))
            .await
            .unwrap(),
        OtpCheck::Valid,
        "still valid a second earlier"
    );
}

#[tokio::test]
async fn racing_checks_consume_a_code_once_and_count_every_attempt() {
    let f = Arc::new(fixture().await);
    let phone = phone();
    f.auth
        .save_otp(&phone, Role::Customer, "right", later())
        .await
        .unwrap();
    let race = |hash: &'static str, max: u32| {
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let (f, phone) = (Arc::clone(&f), phone.clone());
                tokio::spawn(async move {
                    f.auth
                        .check_otp(&phone, Role::Customer, hash, max, now())
                        .await
                        .unwrap()
                })
            })
            .collect();
        async move {
            let mut outcomes = Vec::new();
            for task in tasks {
                outcomes.push(task.await.unwrap());
            }
            outcomes
        }
    };
    let seen = |outcomes: &[OtpCheck], which| outcomes.iter().filter(|o| **o == which).count();

    let wrongs = race("wrong", 4).await;
    assert_eq!(seen(&wrongs, OtpCheck::Wrong), 4, "{wrongs:?}");
    assert_eq!(seen(&wrongs, OtpCheck::TooManyAttempts), 6, "{wrongs:?}");

    // A later window: a new code starts afresh.
    expire_otp_window(&f).await;
    f.auth
        .save_otp(&phone, Role::Customer, "right", later())
        .await
        .unwrap();
    let rights = race("right", MAX).await;
    assert_eq!(seen(&rights, OtpCheck::Valid), 1, "{rights:?}");
    assert_eq!(seen(&rights, OtpCheck::Missing), 9, "{rights:?}");
}

#[tokio::test]
async fn a_customer_is_created_once() {
    let f = fixture().await;
    let phone = phone();
    let first = f.auth.customer_by_phone_or_create(&phone).await.unwrap();
    let second = f.auth.customer_by_phone_or_create(&phone).await.unwrap();
    assert_eq!(first, second);
    assert!(first.active);
    assert_eq!(first.display_name, None);
    assert_eq!(f.count("SELECT count(*) FROM customers", &[]).await, 1);
}

#[tokio::test]
async fn mitras_are_found_with_their_activity() {
    let f = fixture().await;
    assert_eq!(f.auth.mitra_by_phone(&phone()).await.unwrap(), None);
    let id = f.mitra().await;
    let stored: String =
        f.pg.query_one("SELECT phone FROM mitras WHERE id = $1", &[&id.uuid()])
            .await
            .unwrap()
            .get(0);
    let phone = halo_domain::Phone::parse(&stored).unwrap();
    let found = f.auth.mitra_by_phone(&phone).await.unwrap().unwrap();
    assert_eq!(found.id, id.uuid());
    assert!(found.active);
    assert_eq!(found.display_name, Some(format!("Mitra {stored}")));

    f.pg.execute("UPDATE mitras SET is_active = false", &[])
        .await
        .unwrap();
    assert!(!f.auth.mitra_by_phone(&phone).await.unwrap().unwrap().active);
}

#[tokio::test]
async fn operators_are_found_by_email() {
    let f = fixture().await;
    let id: Uuid = f
        .pg
        .query_one(
            "INSERT INTO operators (email, password_hash) VALUES ('op@halo.test', 'argon') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        f.auth.operator_by_email("op@halo.test").await.unwrap(),
        Some((id, "argon".to_owned()))
    );
    assert_eq!(
        f.auth.operator_by_email("no@halo.test").await.unwrap(),
        None
    );
}

#[tokio::test]
async fn a_refresh_token_rotates_once() {
    let f = fixture().await;
    let user = f.mitra().await.uuid();
    let sid = f
        .auth
        .create_session(user, Role::Mitra, "t1", later())
        .await
        .unwrap();
    let expected = SessionRef {
        sid,
        user_id: user,
        role: Role::Mitra,
    };
    let rotate =
        |old: &'static str, role, new: &'static str| f.auth.rotate_session(old, role, new, later());
    assert_eq!(
        rotate("t1", Role::Customer, "x").await.unwrap(),
        Rotation::Refused,
        "other role"
    );
    assert_eq!(
        rotate("t1", Role::Mitra, "t2").await.unwrap(),
        Rotation::Rotated(expected)
    );
    assert_eq!(
        rotate("t2", Role::Mitra, "t3").await.unwrap(),
        Rotation::Rotated(expected)
    );
    assert_eq!(
        rotate("nope", Role::Mitra, "t4").await.unwrap(),
        Rotation::Refused
    );
}

/// A token that was already rotated comes back (it leaked): the whole session is revoked, so
/// the current token stops working too.
#[tokio::test]
async fn a_reused_refresh_token_revokes_the_session() {
    let f = fixture().await;
    let user = Uuid::new_v4();
    let sid = f
        .auth
        .create_session(user, Role::Customer, "r1", later())
        .await
        .unwrap();
    let session = SessionRef {
        sid,
        user_id: user,
        role: Role::Customer,
    };
    let rotate = |old: &'static str, new: &'static str| {
        f.auth.rotate_session(old, Role::Customer, new, later())
    };
    assert_eq!(
        rotate("r1", "r2").await.unwrap(),
        Rotation::Rotated(session)
    );
    assert_eq!(rotate("r1", "r3").await.unwrap(), Rotation::Reused(session));
    assert_eq!(
        rotate("r2", "r4").await.unwrap(),
        Rotation::Refused,
        "revoked"
    );
    assert_eq!(rotate("r1", "r5").await.unwrap(), Rotation::Refused, "once");
}

#[tokio::test]
async fn racing_rotations_of_one_token_succeed_once() {
    let f = Arc::new(fixture().await);
    f.auth
        .create_session(Uuid::new_v4(), Role::Customer, "t", later())
        .await
        .unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let f = Arc::clone(&f);
            tokio::spawn(async move {
                f.auth
                    .rotate_session("t", Role::Customer, &format!("t{i}"), later())
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut rotated = 0;
    for task in tasks {
        rotated += usize::from(matches!(task.await.unwrap(), Rotation::Rotated(_)));
    }
    assert_eq!(rotated, 1);
}

#[tokio::test]
async fn revoked_and_expired_sessions_are_refused() {
    let f = fixture().await;
    let user = Uuid::new_v4();
    let sid = f
        .auth
        .create_session(user, Role::Customer, "live", later())
        .await
        .unwrap();
    assert!(f.auth.revoke_session(sid, user).await.unwrap());
    assert!(
        !f.auth.revoke_session(sid, user).await.unwrap(),
        "not live any more"
    );
    assert_eq!(
        f.auth
            .rotate_session("live", Role::Customer, "n", later())
            .await
            .unwrap(),
        Rotation::Refused
    );

    f.auth
        .create_session(user, Role::Customer, "old", now() - Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(
        f.auth
            .rotate_session("old", Role::Customer, "n", later())
            .await
            .unwrap(),
        Rotation::Refused
    );
}

#[tokio::test]
async fn only_the_owner_revokes_a_session() {
    let f = fixture().await;
    let user = Uuid::new_v4();
    let sid = f
        .auth
        .create_session(user, Role::Customer, "t", later())
        .await
        .unwrap();
    assert!(!f.auth.revoke_session(sid, Uuid::new_v4()).await.unwrap());
    assert!(!f.auth.revoke_session(Uuid::new_v4(), user).await.unwrap());
    assert!(f
        .auth
        .rotate_session("t", Role::Customer, "t2", later())
        .await
        .unwrap()
        .eq(&Rotation::Rotated(SessionRef {
            sid,
            user_id: user,
            role: Role::Customer
        })));
    assert!(f.auth.revoke_session(sid, user).await.unwrap());
}

#[tokio::test]
async fn a_cc_code_is_a_query_error_not_an_outage() {
    let f = fixture().await;
    let refused = f.auth.save_otp(&phone(), Role::Cc, "h", later()).await;
    assert!(matches!(refused, Err(TruthError::Query(_))), "{refused:?}");
}

#[tokio::test]
async fn a_deactivated_mitras_session_no_longer_refreshes() {
    let f = fixture().await;
    let mitra = f.mitra().await.uuid();
    f.auth
        .create_session(mitra, Role::Mitra, "m1", later())
        .await
        .unwrap();
    f.pg.execute(
        "UPDATE mitras SET is_active = false WHERE id = $1",
        &[&mitra],
    )
    .await
    .unwrap();
    assert_eq!(
        f.auth
            .rotate_session("m1", Role::Mitra, "m2", later())
            .await
            .unwrap(),
        Rotation::Refused
    );
}
