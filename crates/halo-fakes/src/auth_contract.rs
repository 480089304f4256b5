//! The refresh-session part of the `AuthStore` contract, the part `InMemoryAuth` models:
//! rotation, reuse, expiry, a deactivated mitra, revocation per session and per user (SPEC
//! §3.6). `auth_contract!` makes one `#[tokio::test]` per case, run on `InMemoryAuth` (this
//! crate's tests) and on `PgAuth` on a real Postgres (halo-postgres' tests).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step panics the test

use async_trait::async_trait;
use halo_domain::Role;
use halo_ports::{AuthStore, Rotation, SessionRef};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// The accounts a session belongs to, made behind the port's back.
#[async_trait]
pub trait AuthBackdoor: Send + Sync {
    /// A new, active mitra account; its id.
    async fn mitra(&self) -> Uuid;
    /// Sets the mitra's `is_active` to false.
    async fn deactivate(&self, mitra: Uuid);
}

/// One `#[tokio::test]` per contract case, each on a store and backdoor from `$setup` (an async
/// fn returning `(Arc<store>, backdoor)`).
#[macro_export]
macro_rules! auth_contract {
    ($setup:path) => {
        $crate::contract_tests!(auth_contract, $setup, |store| &*store;
            a_session_rotates_once_and_a_replaced_token_revokes_it,
            a_session_rotates_only_for_its_role_while_unexpired,
            a_deactivated_mitras_session_does_not_rotate,
            revoking_a_users_sessions_ends_each_live_one_and_only_its,
            a_session_is_revoked_only_by_its_owner,
        );
    };
}

/// A deadline an hour after the store's clock.
async fn in_an_hour<A: AuthStore>(a: &A) -> OffsetDateTime {
    a.database_now().await.unwrap() + Duration::hours(1)
}

/// A mitra's session with refresh hash `hash`.
pub async fn session<A: AuthStore>(a: &A, mitra: Uuid, hash: &str) -> Uuid {
    let expires = in_an_hour(a).await;
    a.create_session(mitra, Role::Mitra, hash, expires)
        .await
        .unwrap()
}

/// `rotate_session` of a mitra's token to `new`.
pub async fn rotate<A: AuthStore>(a: &A, old: &str, new: &str) -> Rotation {
    let expires = in_an_hour(a).await;
    a.rotate_session(old, Role::Mitra, new, expires)
        .await
        .unwrap()
}

/// A token works once; presenting the one it replaced again revokes the session (the token
/// leaked), so the newer token is refused too.
pub async fn a_session_rotates_once_and_a_replaced_token_revokes_it<
    A: AuthStore,
    B: AuthBackdoor,
>(
    a: &A,
    b: &B,
) {
    let user_id = b.mitra().await;
    let sid = session(a, user_id, "h1").await;
    let reference = SessionRef {
        sid,
        user_id,
        role: Role::Mitra,
    };
    assert_eq!(rotate(a, "h1", "h2").await, Rotation::Rotated(reference));
    assert_eq!(rotate(a, "h1", "h3").await, Rotation::Reused(reference));
    assert_eq!(rotate(a, "h2", "h4").await, Rotation::Refused, "revoked");
    assert_eq!(
        rotate(a, "h1", "h5").await,
        Rotation::Refused,
        "already revoked"
    );
    assert_eq!(rotate(a, "unknown", "h6").await, Rotation::Refused);
}

/// A token rotates only for the role its session was opened for, and not once expired.
pub async fn a_session_rotates_only_for_its_role_while_unexpired<A: AuthStore, B: AuthBackdoor>(
    a: &A,
    b: &B,
) {
    let mitra = b.mitra().await;
    session(a, mitra, "mitra-token").await;
    let expires = in_an_hour(a).await;
    let as_customer = a.rotate_session("mitra-token", Role::Customer, "x", expires);
    assert_eq!(as_customer.await.unwrap(), Rotation::Refused);
    let past = a.database_now().await.unwrap() - Duration::minutes(1);
    a.create_session(mitra, Role::Mitra, "expired", past)
        .await
        .unwrap();
    assert_eq!(rotate(a, "expired", "y").await, Rotation::Refused);
    assert!(matches!(
        rotate(a, "mitra-token", "z").await,
        Rotation::Rotated(_)
    ));
}

/// A deactivated mitra's session does not rotate even before it is revoked: deactivation sets
/// the flag first (SPEC §3.6), so a revocation that fails after it leaves no usable session.
pub async fn a_deactivated_mitras_session_does_not_rotate<A: AuthStore, B: AuthBackdoor>(
    a: &A,
    b: &B,
) {
    let mitra = b.mitra().await;
    session(a, mitra, "h1").await;
    b.deactivate(mitra).await;
    assert_eq!(rotate(a, "h1", "h2").await, Rotation::Refused);
}

/// Revoking a user's sessions ends every live one (counted), leaves other users' alone, and
/// counts nothing a second time.
pub async fn revoking_a_users_sessions_ends_each_live_one_and_only_its<
    A: AuthStore,
    B: AuthBackdoor,
>(
    a: &A,
    b: &B,
) {
    let (mitra, other) = (b.mitra().await, b.mitra().await);
    session(a, mitra, "a1").await;
    session(a, mitra, "a2").await;
    let kept = session(a, other, "b1").await;
    assert_eq!(a.revoke_user_sessions(mitra).await.unwrap(), 2);
    assert_eq!(a.revoke_user_sessions(mitra).await.unwrap(), 0);
    assert_eq!(rotate(a, "a1", "a3").await, Rotation::Refused);
    assert_eq!(rotate(a, "a2", "a4").await, Rotation::Refused);
    let rotated = rotate(a, "b1", "b2").await;
    assert!(
        matches!(rotated, Rotation::Rotated(s) if s.sid == kept),
        "{rotated:?}"
    );
}

/// One session is revoked by its owner only, once.
pub async fn a_session_is_revoked_only_by_its_owner<A: AuthStore, B: AuthBackdoor>(a: &A, b: &B) {
    let (mitra, other) = (b.mitra().await, b.mitra().await);
    let sid = session(a, mitra, "h1").await;
    assert!(
        !a.revoke_session(sid, other).await.unwrap(),
        "not its owner"
    );
    assert!(
        !a.revoke_session(Uuid::new_v4(), mitra).await.unwrap(),
        "unknown"
    );
    assert!(a.revoke_session(sid, mitra).await.unwrap());
    assert!(
        !a.revoke_session(sid, mitra).await.unwrap(),
        "already revoked"
    );
    assert_eq!(rotate(a, "h1", "h2").await, Rotation::Refused);
}
