//! Phone OTP for the apps, email + password for operators, refresh rotation and logout.

use crate::harness::{code, token, uuid, Api, Stack, DEV_CODE, OPERATOR_EMAIL};
use serde_json::json;

async fn request_code(stack: &Stack, app: &str, phone: &str) {
    let (status, _) = stack
        .post(
            Api::Public,
            &format!("/api/{app}/auth/otp/request"),
            None,
            json!({ "phone": phone }),
        )
        .await;
    assert_eq!(status, 200);
}

async fn verify(stack: &Stack, app: &str, phone: &str, code: &str) -> (u16, serde_json::Value) {
    stack
        .post(
            Api::Public,
            &format!("/api/{app}/auth/otp/verify"),
            None,
            json!({ "phone": phone, "code": code }),
        )
        .await
}

#[tokio::test]
async fn providers_customers_created_on_first_login_and_codes_checked() {
    let stack = Stack::start().await;
    let (status, providers) = stack
        .get(Api::Public, "/api/shared/auth-providers", None)
        .await;
    assert_eq!(
        (status, providers),
        (200, json!({ "providers": ["phone_otp"] }))
    );

    let first = stack.customer("+628200000001").await;
    let again = stack.customer("+628200000001").await;
    assert_eq!(
        first.id, again.id,
        "the second login finds the same customer"
    );

    request_code(&stack, "client", "+628200000002").await;
    let (status, reply) = verify(&stack, "client", "+628200000002", "999999").await;
    assert_eq!((status, code(&reply)), (401, "INVALID_OTP"));

    let (status, reply) = verify(&stack, "client", "+628200000003", DEV_CODE).await;
    assert_eq!(
        (status, code(&reply)),
        (401, "INVALID_OTP"),
        "no code was requested"
    );

    let (status, reply) = stack
        .post(
            Api::Public,
            "/api/client/auth/otp/request",
            None,
            json!({ "phone": "12ab" }),
        )
        .await;
    assert_eq!((status, code(&reply)), (422, "VALIDATION_FAILED"));
    stack.stop().await;
}

#[tokio::test]
async fn otp_attempts_are_limited_and_codes_expire() {
    let stack = Stack::start().await;
    request_code(&stack, "client", "+628200000010").await;
    for _ in 0..5 {
        let (status, _) = verify(&stack, "client", "+628200000010", "111111").await;
        assert_eq!(status, 401);
    }
    let (status, reply) = verify(&stack, "client", "+628200000010", DEV_CODE).await;
    assert_eq!((status, code(&reply)), (429, "OTP_ATTEMPTS_EXCEEDED"));

    request_code(&stack, "client", "+628200000011").await;
    stack
        .sql("UPDATE otp_codes SET expires_at = now() - interval '1 second'")
        .await;
    let (status, reply) = verify(&stack, "client", "+628200000011", DEV_CODE).await;
    assert_eq!((status, code(&reply)), (401, "OTP_EXPIRED"));
    stack.stop().await;
}

#[tokio::test]
async fn a_mitra_must_exist_and_be_active_to_log_in() {
    let stack = Stack::start().await;
    request_code(&stack, "mitra", "+628200000020").await;
    let (status, reply) = verify(&stack, "mitra", "+628200000020", DEV_CODE).await;
    assert_eq!(
        (status, code(&reply)),
        (401, "INVALID_OTP"),
        "unknown mitra: no code was issued, and nothing tells the phone is not a mitra's"
    );

    let operator = stack.operator().await;
    let id = stack.create_mitra(&operator, "+628200000021").await;
    let mitra = stack.login("mitra", "+628200000021").await;
    assert_eq!(mitra.id, id);
    // A code issued while active, the account deactivated before it is used.
    request_code(&stack, "mitra", "+628200000021").await;
    stack
        .ok(
            Api::Internal,
            reqwest::Method::PATCH,
            &format!("/internal/mitras/{id}"),
            Some(&operator),
            Some(json!({ "is_active": false })),
        )
        .await;
    let (status, reply) = verify(&stack, "mitra", "+628200000021", DEV_CODE).await;
    assert_eq!(
        (status, code(&reply)),
        (403, "ACCOUNT_INACTIVE"),
        "deactivated mitra, told only after a valid code"
    );
    request_code(&stack, "mitra", "+628200000021").await;
    let (status, reply) = verify(&stack, "mitra", "+628200000021", DEV_CODE).await;
    assert_eq!(
        (status, code(&reply)),
        (401, "INVALID_OTP"),
        "no code is issued to a deactivated mitra"
    );
    let (status, reply) = stack
        .post(
            Api::Public,
            "/api/mitra/auth/refresh",
            None,
            json!({ "refresh_token": mitra.refresh }),
        )
        .await;
    assert_eq!(
        (status, code(&reply)),
        (401, "SESSION_REVOKED"),
        "deactivation revokes sessions"
    );
    stack.stop().await;
}

#[tokio::test]
async fn refresh_rotates_the_pair_and_logout_revokes_it() {
    let stack = Stack::start().await;
    let customer = stack.customer("+628200000030").await;
    let refresh = |token: String| {
        let stack = &stack;
        async move {
            stack
                .post(
                    Api::Public,
                    "/api/client/auth/refresh",
                    None,
                    json!({ "refresh_token": token }),
                )
                .await
        }
    };
    let (status, rotated) = refresh(customer.refresh.clone()).await;
    assert_eq!(status, 200, "{rotated}");
    let (status, reply) = refresh(customer.refresh.clone()).await;
    assert_eq!(
        (status, code(&reply)),
        (401, "SESSION_REVOKED"),
        "old refresh token is spent"
    );

    let (status, reply) = stack
        .post(
            Api::Public,
            "/api/mitra/auth/refresh",
            None,
            json!({ "refresh_token": token(&rotated, "refresh_token") }),
        )
        .await;
    assert_eq!(
        (status, code(&reply)),
        (401, "SESSION_REVOKED"),
        "other app's prefix"
    );

    let access = token(&rotated, "access_token");
    let (status, me) = stack
        .get(Api::Public, "/api/shared/whoami", Some(&access))
        .await;
    assert_eq!((status, uuid(&me["user_id"])), (200, customer.id));

    let (status, _) = stack
        .post(
            Api::Public,
            "/api/client/auth/logout",
            Some(&access),
            json!(null),
        )
        .await;
    assert_eq!(status, 200);
    let (status, reply) = refresh(token(&rotated, "refresh_token")).await;
    assert_eq!(
        (status, code(&reply)),
        (401, "SESSION_REVOKED"),
        "logged out"
    );
    stack.stop().await;
}

#[tokio::test]
async fn operators_log_in_with_email_and_password() {
    let stack = Stack::start().await;
    let (status, reply) = stack
        .post(
            Api::Internal,
            "/internal/auth/login",
            None,
            json!({ "email": OPERATOR_EMAIL, "password": "wrong password!" }),
        )
        .await;
    assert_eq!((status, code(&reply)), (401, "INVALID_CREDENTIALS"));
    let (status, reply) = stack
        .post(
            Api::Internal,
            "/internal/auth/login",
            None,
            json!({ "email": "nobody@example.test", "password": "whatever whatever" }),
        )
        .await;
    assert_eq!((status, code(&reply)), (401, "INVALID_CREDENTIALS"));
    let operator = stack.operator().await;
    let (status, me) = stack
        .get(Api::Public, "/api/shared/whoami", Some(&operator))
        .await;
    assert_eq!((status, me["role"].as_str()), (200, Some("cc")));
    stack.stop().await;
}
