//! Section E — deactivation propagates: Postgres, the deactivated set, revoked refresh
//! sessions, refused heartbeats; reactivation undoes it.

use halo_acceptance::{Mitra, Stack};
use reqwest::Method;
use serde_json::json;

async fn deactivated(stack: &Stack) -> Mitra {
    let mitra = stack.online_mitra().await;
    stack.set_active(&mitra, false).await.expect(200);
    mitra
}

async fn status(stack: &Stack, mitra: &Mitra) -> u16 {
    stack
        .app(Method::GET, "/api/mitra/status", &mitra.token, None)
        .await
        .status
}

#[tokio::test]
async fn e_login_gives_an_access_token() {
    let stack = Stack::start().await;
    let mitra = stack.mitra().await;
    let me = stack
        .app(Method::GET, "/api/shared/whoami", &mitra.token, None)
        .await
        .expect(200);
    assert_eq!(me["role"], "mitra");
    assert_eq!(me["user_id"], mitra.id.to_string());
}

#[tokio::test]
async fn e_token_works_on_protected_routes() {
    let stack = Stack::start().await;
    let mitra = stack.online_mitra().await;
    let me = stack
        .app(Method::GET, "/api/mitra/status", &mitra.token, None)
        .await
        .expect(200);
    assert_eq!(me["is_online"], true);
}

#[tokio::test]
async fn e_operator_deactivation_answers_inactive() {
    let stack = Stack::start().await;
    let mitra = stack.online_mitra().await;
    let view = stack.set_active(&mitra, false).await.expect(200);
    assert_eq!(view["is_active"], false);
    assert_eq!(
        view["is_online"], false,
        "deactivation sets the mitra offline"
    );
}

#[tokio::test]
async fn e_deactivation_revokes_every_refresh_session() {
    let stack = Stack::start().await;
    let mitra = stack.mitra().await;
    stack.login_mitra(&mitra.phone).await; // a second device
    stack.set_active(&mitra, false).await.expect(200);
    let active: bool = stack
        .pg
        .query_one("SELECT is_active FROM mitras WHERE id = $1", &[&mitra.id])
        .await
        .unwrap()
        .get(0);
    assert!(!active);
    let sessions = stack
        .pg_count(
            "SELECT count(*) FROM auth_sessions WHERE user_id = $1",
            mitra.id,
        )
        .await;
    let revoked = stack
        .pg_count(
            "SELECT count(*) FROM auth_sessions WHERE user_id = $1 AND revoked_at IS NOT NULL",
            mitra.id,
        )
        .await;
    assert_eq!((sessions, revoked), (2, 2));
}

#[tokio::test]
async fn e_deactivation_adds_to_deactivated_set() {
    let stack = Stack::start().await;
    let mitra = deactivated(&stack).await;
    assert!(stack.vk_is_member("mitras:deactivated", mitra.id).await);
}

#[tokio::test]
async fn e_access_token_valid_until_expiry_on_non_checking_routes() {
    let stack = Stack::start().await;
    let mitra = deactivated(&stack).await;
    assert_eq!(status(&stack, &mitra).await, 200, "reads do not re-check");
    let online = stack.toggle(&mitra, true).await;
    assert_eq!(
        (online.status, online.code()),
        (403, "ACCOUNT_INACTIVE"),
        "writes do"
    );
}

#[tokio::test]
async fn e_heartbeat_refused_at_once() {
    let stack = Stack::start().await;
    let mitra = deactivated(&stack).await;
    let reply = stack.heartbeat(&mitra).await;
    assert_eq!((reply.status, reply.code()), (403, "ACCOUNT_INACTIVE"));
}

#[tokio::test]
async fn e_refresh_fails_after_deactivation() {
    let stack = Stack::start().await;
    let mitra = deactivated(&stack).await;
    let reply = stack
        .app(
            Method::POST,
            "/api/mitra/auth/refresh",
            "",
            Some(json!({ "refresh_token": mitra.refresh })),
        )
        .await;
    assert_eq!((reply.status, reply.code()), (401, "SESSION_REVOKED"));
}

#[tokio::test]
async fn e_reactivation_clears_flag_and_set() {
    let stack = Stack::start().await;
    let mitra = deactivated(&stack).await;
    let view = stack.set_active(&mitra, true).await.expect(200);
    assert_eq!(view["is_active"], true);
    let active: bool = stack
        .pg
        .query_one("SELECT is_active FROM mitras WHERE id = $1", &[&mitra.id])
        .await
        .unwrap()
        .get(0);
    assert!(active);
    assert!(!stack.vk_is_member("mitras:deactivated", mitra.id).await);
}

#[tokio::test]
async fn e_reactivated_mitra_logs_in_and_heartbeats() {
    let stack = Stack::start().await;
    let old = deactivated(&stack).await;
    // No code is issued to a deactivated mitra, and the refusal says no more than a wrong
    // code would (no account discovery; the 403 comes only after a valid code).
    let refused = stack.otp_login("/api/mitra/auth", &old.phone).await;
    assert_eq!((refused.status, refused.code()), (401, "INVALID_OTP"));
    stack.set_active(&old, true).await.expect(200);
    let mitra = stack.login_mitra(&old.phone).await;
    stack.toggle(&mitra, true).await.expect(200);
    let ack = stack.heartbeat(&mitra).await.expect(200);
    assert_eq!(ack["is_online"], true);
}
