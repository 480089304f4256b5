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

/// A staleness that one late ping would cross is refused, naming both settings.
#[tokio::test]
async fn stale_after_must_leave_room_for_a_missed_ping() {
    let stack = Stack::start().await;
    stack.set_config("heartbeat_interval_seconds", 10).await;
    let refused = stack
        .cc(
            Method::PATCH,
            "/internal/config",
            Some(json!({ "stale_after_seconds": 19 })),
        )
        .await;
    assert_eq!((refused.status, refused.code()), (422, "VALIDATION_FAILED"));
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("stale_after_seconds") && message.contains("heartbeat_interval_seconds"),
        "{message}"
    );
    assert_eq!(
        stack.set_config("stale_after_seconds", 20).await["stale_after_seconds"],
        20
    );
}

/// Two operators changing different settings at the same moment: both changes are kept, and
/// each is in the history with who made it and the old and new value.
#[tokio::test]
async fn concurrent_config_changes_are_both_kept_and_audited() {
    let stack = Stack::start().await;
    for round in 0..5u32 {
        let (a, b) = tokio::join!(
            stack.cc(
                Method::PATCH,
                "/internal/config",
                Some(json!({ "max_customers_per_mitra": 4 + round })),
            ),
            stack.cc(
                Method::PATCH,
                "/internal/config",
                Some(json!({ "blast_timeout_seconds": 70 + round })),
            ),
        );
        a.expect(200);
        b.expect(200);
        let stored = stack
            .cc(Method::GET, "/internal/config", None)
            .await
            .expect(200);
        assert_eq!(stored["max_customers_per_mitra"], 4 + round);
        assert_eq!(stored["blast_timeout_seconds"], 70 + round);
    }
    let history = stack
        .cc(Method::GET, "/internal/config/history?limit=2", None)
        .await
        .expect(200);
    let changes = history["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2);
    for change in changes {
        assert!(change["changed_by"].is_string(), "{change}");
        assert_eq!(
            change["new_value"].as_i64().unwrap() - change["old_value"].as_i64().unwrap(),
            1
        );
    }
    let bad = stack
        .cc(Method::GET, "/internal/config/history?limit=0", None)
        .await;
    assert_eq!((bad.status, bad.code()), (422, "VALIDATION_FAILED"));
}
