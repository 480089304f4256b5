//! Safe on the open internet (issue 11): what a leaked token or a curious caller can learn or do.

use halo_acceptance::Stack;
use reqwest::Method;
use serde_json::json;

async fn refresh(stack: &Stack, token: &str) -> halo_acceptance::Reply {
    stack
        .app(
            Method::POST,
            "/api/client/auth/refresh",
            "",
            Some(json!({ "refresh_token": token })),
        )
        .await
}

/// A refresh token that was already rotated comes back: it leaked, so the whole session is
/// revoked and the current token stops working too.
#[tokio::test]
async fn a_reused_refresh_token_revokes_the_session() {
    let stack = Stack::start().await;
    let login = stack
        .otp_login("/api/client/auth", "+628555000001")
        .await
        .expect(200);
    let first = login["refresh_token"].as_str().unwrap().to_owned();
    let rotated = refresh(&stack, &first).await.expect(200);
    let current = rotated["refresh_token"].as_str().unwrap().to_owned();
    let reused = refresh(&stack, &first).await;
    assert_eq!((reused.status, reused.code()), (401, "SESSION_REVOKED"));
    let after = refresh(&stack, &current).await;
    assert_eq!((after.status, after.code()), (401, "SESSION_REVOKED"));
    assert!(stack
        .public()
        .events("auth.refresh_reuse")
        .iter()
        .any(|e| e["role"] == "customer"));
}

/// OTP verify judges the code before anything about the account: an unknown mitra phone, a
/// deactivated mitra and a wrong code all answer alike.
#[tokio::test]
async fn otp_verify_does_not_tell_which_phones_are_mitras() {
    let stack = Stack::start().await;
    let mitra = stack.mitra().await;
    stack.set_active(&mitra, false).await.expect(200);
    let answers = [
        stack.otp_login("/api/mitra/auth", "+628555000002").await,
        stack.otp_login("/api/mitra/auth", &mitra.phone).await,
    ];
    for reply in answers {
        assert_eq!((reply.status, reply.code()), (401, "INVALID_OTP"));
    }
}
