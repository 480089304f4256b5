//! Safe on the open internet (SPEC §9): what a leaked token or a curious caller can learn or do.

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

/// Flaky mobile networks: a call that succeeded but whose answer was lost is sent again. The
/// retry answers as the first did (200, same session), never a conflict.
#[tokio::test]
async fn retries_of_calls_that_succeeded_answer_as_the_first() {
    let stack = Stack::start().await;
    let mitra = stack.online_mitra().await;
    let post = |path: String, token: String| {
        let stack = &stack;
        async move { stack.app(Method::POST, &path, &token, None).await }
    };
    for _ in 0..2 {
        post("/api/mitra/status/online".into(), mitra.token.clone())
            .await
            .expect(200);
    }

    // The winner's accept, twice.
    let session = stack.start_chat(&mitra).await;
    let again = stack.accept(&mitra, &session.to_string()).await.expect(200);
    assert_eq!(again["id"].as_str(), Some(session.to_string().as_str()));
    assert_eq!(again["status"], "active");

    // End, twice.
    let end = format!("/api/mitra/chat/sessions/{session}/end");
    let first = post(end.clone(), mitra.token.clone()).await.expect(200);
    let second = post(end, mitra.token.clone()).await.expect(200);
    assert_eq!(first, second);

    // Pay, twice: one charge, the same active session.
    let customer = stack.customer().await;
    let request = stack.request_mitra(&customer, &mitra).await.expect(201);
    let session_id = request["session_id"].as_str().unwrap();
    let first = stack.pay(&customer, session_id).await.expect(200);
    let second = stack.pay(&customer, session_id).await.expect(200);
    assert_eq!(first, second);

    // Reject, twice.
    let other = stack.online_mitra().await;
    let blast = stack.blast(&stack.customer().await).await.expect(201);
    let reject = format!(
        "/api/mitra/chat/requests/{}/reject",
        blast["session_id"].as_str().unwrap()
    );
    for _ in 0..2 {
        post(reject.clone(), other.token.clone()).await.expect(200);
    }
}

/// One public instance's clock runs an hour ahead: its timer sweep judges deadlines by the
/// database's clock, so it ends no paid session early.
#[tokio::test]
async fn an_instance_whose_clock_runs_ahead_ends_nothing_early() {
    let stack = Stack::start().await;
    let mitra = stack.online_mitra().await;
    let session = stack.start_chat(&mitra).await;
    let ahead = stack
        .spawn_with(
            halo_acceptance::Kind::Public,
            &[("HALO_TEST_CLOCK_OFFSET_SECONDS", "3600")],
        )
        .await;
    halo_acceptance::eventually(
        "three timer ticks of the skewed instance",
        crate::common::DEADLINE,
        || async { ahead.metrics().await.pg("database_now") >= 3 },
    )
    .await;
    assert_eq!(stack.session_status(session).await, "active");
}

/// One customer cannot squat capacity: while one request is open (searching or awaiting
/// payment) a second is refused with its own code and the id of the open one; once the open
/// one is settled, the next is accepted.
#[tokio::test]
async fn one_open_request_per_customer() {
    let stack = Stack::start().await;
    let (mitra, other) = (stack.online_mitra().await, stack.online_mitra().await);
    let customer = stack.customer().await;
    let request = |body: serde_json::Value| {
        let stack = &stack;
        let token = customer.token.clone();
        async move {
            stack
                .app(
                    Method::POST,
                    "/api/client/chat/requests",
                    &token,
                    Some(body),
                )
                .await
        }
    };
    let held = request(json!({ "minutes": 15, "mitra_id": mitra.id }))
        .await
        .expect(201);
    for second in [
        json!({ "minutes": 15, "mitra_id": other.id }),
        json!({ "minutes": 15 }),
    ] {
        let refused = request(second).await;
        assert_eq!(
            (refused.status, refused.code()),
            (409, "OPEN_REQUEST_EXISTS")
        );
        assert_eq!(refused.body["error"]["open_session_id"], held["session_id"]);
    }
    assert_eq!(stack.open_sessions(other.id).await, 0, "no slot squatted");
    let session = held["session_id"].as_str().unwrap();
    stack.pay(&customer, session).await.expect(200);
    request(json!({ "minutes": 15 })).await.expect(201);
}

/// Postgres fails at the worst moment: after the charge, when the session should start (a
/// trigger raises). The customer is refunded at once and the payment recorded as refunded; the
/// retry once it is fixed charges again (a new attempt), and a retry after that charges nothing.
#[tokio::test]
async fn a_charge_whose_session_cannot_start_is_refunded() {
    let stack = Stack::start().await;
    let mitra = stack.online_mitra().await;
    let customer = stack.customer().await;
    let request = stack.request_mitra(&customer, &mitra).await.expect(201);
    let session: uuid::Uuid = request["session_id"].as_str().unwrap().parse().unwrap();
    stack
        .pg
        .batch_execute(
            "CREATE FUNCTION refuse_start() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION 'injected: the session cannot start'; END $$;
             CREATE TRIGGER refuse_start BEFORE UPDATE ON chat_sessions FOR EACH ROW
               WHEN (OLD.status = 'pending_payment' AND NEW.status = 'active')
               EXECUTE FUNCTION refuse_start();",
        )
        .await
        .unwrap();
    let session_id = session.to_string();
    let failed = stack.pay(&customer, &session_id).await;
    assert_eq!(failed.status, 500, "{failed:?}");
    assert_eq!(payment(&stack, session).await, ("refunded".to_owned(), 1));
    let events = stack.public().metrics().await;
    let event = |m: &halo_acceptance::MetricsText, e: &str| {
        m.sum("halo_payment_events_total", &[("event", e)]) as u64
    };
    assert_eq!(
        (event(&events, "charged"), event(&events, "refunded")),
        (1, 1)
    );

    stack
        .pg
        .batch_execute("DROP TRIGGER refuse_start ON chat_sessions")
        .await
        .unwrap();
    let paid = stack.pay(&customer, &session_id).await.expect(200);
    assert_eq!(paid["status"], "active");
    assert_eq!(payment(&stack, session).await, ("captured".to_owned(), 2));
    stack.pay(&customer, &session_id).await.expect(200);
    let events = stack.public().metrics().await;
    assert_eq!(
        event(&events, "charged"),
        2,
        "the retry of a success charges nothing"
    );
    assert_eq!(event(&events, "captured"), 1);
}

/// The payment row of `session`: status and attempt.
async fn payment(stack: &Stack, session: uuid::Uuid) -> (String, i32) {
    let row = stack
        .pg
        .query_one(
            "SELECT status, attempt FROM payments WHERE session_id = $1",
            &[&session],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// `POST /api/client/auth/otp/request` for `phone` on public instance `i`, with extra headers.
async fn request_code(
    stack: &Stack,
    i: usize,
    phone: &str,
    headers: &[(&str, &str)],
) -> halo_acceptance::Reply {
    let url = stack.publics[i].url("/api/client/auth/otp/request");
    stack
        .http
        .call_with(
            Method::POST,
            &url,
            None,
            Some(&json!({ "phone": phone })),
            headers,
        )
        .await
}

/// A limit is hit (429 `RATE_LIMITED` with `Retry-After`) and resets after its window.
#[tokio::test]
async fn a_limit_is_hit_and_resets() {
    let stack = Stack::with(
        halo_acceptance::StackOptions::default().env("RATE_LIMIT_OTP_REQUEST_PER_PHONE", "3/2"),
    )
    .await;
    for _ in 0..3 {
        request_code(&stack, 0, "+628555000010", &[])
            .await
            .expect(200);
    }
    let limited = request_code(&stack, 0, "+628555000010", &[]).await;
    assert_eq!((limited.status, limited.code()), (429, "RATE_LIMITED"));
    assert!(matches!(limited.retry_after, Some(1..=2)), "{limited:?}");
    request_code(&stack, 0, "+628555000011", &[])
        .await
        .expect(200);
    halo_acceptance::eventually("the window to end", crate::common::DEADLINE, || async {
        request_code(&stack, 0, "+628555000010", &[]).await.status == 200
    })
    .await;
}

/// Two instances count one limit (the counters live in Valkey); with Valkey down each
/// instance still limits on its own (at most N times looser, never unlimited).
#[tokio::test]
async fn a_limit_is_shared_by_instances_and_kept_while_valkey_is_down() {
    let mut stack = Stack::with(
        halo_acceptance::StackOptions::default()
            .publics(2)
            .env("RATE_LIMIT_OTP_REQUEST_PER_PHONE", "2/60"),
    )
    .await;
    request_code(&stack, 0, "+628555000020", &[])
        .await
        .expect(200);
    request_code(&stack, 1, "+628555000020", &[])
        .await
        .expect(200);
    let limited = request_code(&stack, 0, "+628555000020", &[]).await;
    assert_eq!((limited.status, limited.code()), (429, "RATE_LIMITED"));

    stack.valkey.kill().await;
    for _ in 0..2 {
        request_code(&stack, 0, "+628555000021", &[])
            .await
            .expect(200);
    }
    let limited = request_code(&stack, 0, "+628555000021", &[]).await;
    assert_eq!(
        (limited.status, limited.code()),
        (429, "RATE_LIMITED"),
        "local limit"
    );
    assert!(limited.retry_after.is_some());
}

/// The per-address limit counts the TCP peer unless a trusted proxy header is configured:
/// a caller cannot dodge it by writing X-Forwarded-For itself.
#[tokio::test]
async fn only_a_configured_proxy_header_names_the_address() {
    let limit = ("RATE_LIMIT_OTP_REQUEST_PER_ADDRESS", "2/60");
    let spoofing = |n: usize| format!("203.0.113.{n}");
    let plain = Stack::with(halo_acceptance::StackOptions::default().env(limit.0, limit.1)).await;
    let mut answers = Vec::new();
    for n in 0..3 {
        let header = spoofing(n);
        let phone = format!("+62855500003{n}");
        answers.push(
            request_code(&plain, 0, &phone, &[("x-forwarded-for", &header)])
                .await
                .status,
        );
    }
    assert_eq!(answers, [200, 200, 429], "the header is ignored");

    let proxied = Stack::with(
        halo_acceptance::StackOptions::default()
            .env(limit.0, limit.1)
            .env("CLIENT_ADDRESS_HEADER", "X-Forwarded-For"),
    )
    .await;
    for n in 0..3 {
        // The balancer appends the caller's address last; what the caller wrote comes first.
        let header = format!("10.9.9.9, {}", spoofing(n));
        let phone = format!("+62855500004{n}");
        request_code(&proxied, 0, &phone, &[("x-forwarded-for", &header)])
            .await
            .expect(200);
    }
    let repeated = format!("10.9.9.9, {}", spoofing(0));
    for _ in 0..2 {
        request_code(
            &proxied,
            0,
            "+628555000050",
            &[("x-forwarded-for", &repeated)],
        )
        .await;
    }
    let limited = request_code(
        &proxied,
        0,
        "+628555000051",
        &[("x-forwarded-for", &repeated)],
    )
    .await;
    assert_eq!(limited.status, 429, "counted per the balancer's address");
}

/// Codes and sessions are timed by the database's clock too: a code issued by one instance is
/// valid on an instance whose clock runs ten minutes ahead (its own clock would call it
/// expired), and a session it opens refreshes normally.
#[tokio::test]
async fn an_instance_whose_clock_runs_ahead_honours_codes_and_sessions() {
    let stack = Stack::start().await;
    let ahead = stack
        .spawn_with(
            halo_acceptance::Kind::Public,
            &[("HALO_TEST_CLOCK_OFFSET_SECONDS", "600")],
        )
        .await;
    let phone = "+628555000060";
    request_code(&stack, 0, phone, &[]).await.expect(200);
    let verify = json!({ "phone": phone, "code": halo_acceptance::DEV_CODE });
    let login = stack
        .http
        .call(
            Method::POST,
            &ahead.url("/api/client/auth/otp/verify"),
            None,
            Some(&verify),
        )
        .await
        .expect(200);
    let refresh_token = login["refresh_token"].as_str().unwrap();
    refresh(&stack, refresh_token).await.expect(200);
}
