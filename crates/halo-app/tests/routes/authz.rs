//! The authorization matrix: every route × {no token, garbage, forged, expired, customer,
//! mitra, deactivated mitra, operator} → the expected status; and no party can read or change
//! another party's session.

use crate::harness::{code, Api, Login, Stack, SECRET};
use halo_auth::{Principal, TokenKeys};
use halo_domain::Role;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// Who a route admits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Who {
    Anyone,
    AnyLoggedIn,
    Customer,
    /// A mitra, also a deactivated one (reads).
    Mitra,
    /// A mitra whose account is active (state changes).
    ActiveMitra,
    Operator,
}

struct Route {
    api: Api,
    method: Method,
    path: String,
    body: Option<Value>,
    who: Who,
    /// Status for an admitted caller (ids in paths are unknown, so 404 is the usual answer).
    admitted: u16,
}

fn route(api: Api, method: Method, path: &str, who: Who, admitted: u16) -> Route {
    Route {
        api,
        method,
        path: path.to_owned(),
        body: None,
        who,
        admitted,
    }
}

fn with_body(mut route: Route, body: Value) -> Route {
    route.body = Some(body);
    route
}

fn routes() -> Vec<Route> {
    use Api::{Internal, Public};
    use Method as M;
    let id = Uuid::new_v4();
    let minutes = json!({ "minutes": 10 });
    vec![
        route(
            Public,
            M::GET,
            "/api/shared/auth-providers",
            Who::Anyone,
            200,
        ),
        route(
            Public,
            M::GET,
            "/public/bestie-availability",
            Who::Anyone,
            200,
        ),
        route(Public, M::GET, "/api/shared/whoami", Who::AnyLoggedIn, 200),
        route(Public, M::GET, "/healthz", Who::Anyone, 200),
        route(Internal, M::GET, "/healthz", Who::Anyone, 200),
        route(Public, M::GET, "/api/mitra/status", Who::Mitra, 200),
        route(
            Public,
            M::POST,
            "/api/mitra/status/online",
            Who::ActiveMitra,
            200,
        ),
        route(
            Public,
            M::POST,
            "/api/mitra/status/offline",
            Who::ActiveMitra,
            200,
        ),
        route(Public, M::GET, "/api/mitra/chat/requests", Who::Mitra, 200),
        route(
            Public,
            M::POST,
            &format!("/api/mitra/chat/requests/{id}/accept"),
            Who::ActiveMitra,
            404,
        ),
        route(
            Public,
            M::POST,
            &format!("/api/mitra/chat/requests/{id}/reject"),
            Who::ActiveMitra,
            404,
        ),
        route(
            Public,
            M::GET,
            &format!("/api/mitra/chat/sessions/{id}"),
            Who::Mitra,
            404,
        ),
        route(
            Public,
            M::POST,
            &format!("/api/mitra/chat/sessions/{id}/end"),
            Who::ActiveMitra,
            404,
        ),
        with_body(
            route(
                Public,
                M::POST,
                "/api/client/chat/requests",
                Who::Customer,
                409,
            ),
            minutes.clone(),
        ),
        route(
            Public,
            M::GET,
            &format!("/api/client/chat/sessions/{id}"),
            Who::Customer,
            404,
        ),
        route(
            Public,
            M::POST,
            &format!("/api/client/chat/sessions/{id}/pay"),
            Who::Customer,
            404,
        ),
        with_body(
            route(
                Public,
                M::POST,
                &format!("/api/client/chat/sessions/{id}/extend"),
                Who::Customer,
                404,
            ),
            minutes,
        ),
        route(
            Public,
            M::POST,
            &format!("/api/client/chat/sessions/{id}/end"),
            Who::Customer,
            404,
        ),
        route(Internal, M::GET, "/internal/mitras", Who::Operator, 200),
        with_body(
            route(Internal, M::POST, "/internal/mitras", Who::Operator, 201),
            json!({ "phone": "+628399999999", "display_name": "Matrix" }),
        ),
        with_body(
            route(
                Internal,
                M::PATCH,
                &format!("/internal/mitras/{id}"),
                Who::Operator,
                404,
            ),
            json!({ "is_active": true }),
        ),
        route(
            Internal,
            M::POST,
            &format!("/internal/mitras/{id}/offline"),
            Who::Operator,
            404,
        ),
        with_body(
            route(
                Internal,
                M::POST,
                &format!("/internal/chat/sessions/{id}/reroute"),
                Who::Operator,
                404,
            ),
            json!({ "mitra_id": id, "force": true }),
        ),
        route(Internal, M::GET, "/internal/config", Who::Operator, 200),
        with_body(
            route(Internal, M::PATCH, "/internal/config", Who::Operator, 200),
            json!({ "beacon_cache_ttl_seconds": 10 }),
        ),
        route(
            Internal,
            M::GET,
            "/internal/dashboard/stats",
            Who::Operator,
            200,
        ),
        route(
            Internal,
            M::GET,
            "/internal/mirror/drift",
            Who::Operator,
            200,
        ),
        route(
            Internal,
            M::POST,
            "/internal/mirror/reseed",
            Who::Operator,
            200,
        ),
    ]
}

/// The callers of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    NoToken,
    Garbage,
    Forged,
    Expired,
    Customer,
    Mitra,
    DeactivatedMitra,
    Operator,
}

const CALLERS: [Caller; 8] = [
    Caller::NoToken,
    Caller::Garbage,
    Caller::Forged,
    Caller::Expired,
    Caller::Customer,
    Caller::Mitra,
    Caller::DeactivatedMitra,
    Caller::Operator,
];

fn expected(route: &Route, caller: Caller) -> u16 {
    let role = match caller {
        _ if route.who == Who::Anyone => return route.admitted,
        Caller::NoToken | Caller::Garbage | Caller::Forged | Caller::Expired => return 401,
        Caller::Customer => Who::Customer,
        Caller::Mitra | Caller::DeactivatedMitra => Who::Mitra,
        Caller::Operator => Who::Operator,
    };
    let admitted = match route.who {
        Who::AnyLoggedIn => true,
        Who::ActiveMitra => role == Who::Mitra && caller != Caller::DeactivatedMitra,
        Who::Mitra => role == Who::Mitra,
        other => other == role,
    };
    if admitted {
        route.admitted
    } else {
        403
    }
}

fn token_signed(secret: &[u8], user: Uuid, role: Role, issued: OffsetDateTime) -> String {
    let principal = Principal {
        user_id: user,
        role,
        sid: Uuid::new_v4(),
    };
    TokenKeys::new(secret, Duration::from_secs(60))
        .issue(principal, issued)
        .unwrap()
}

struct Tokens {
    customer: Login,
    mitra: Login,
    deactivated: Login,
    operator: String,
    forged: String,
    expired: String,
}

impl Tokens {
    fn of(&self, caller: Caller) -> Option<&str> {
        match caller {
            Caller::NoToken => None,
            Caller::Garbage => Some("not-a-jwt"),
            Caller::Forged => Some(&self.forged),
            Caller::Expired => Some(&self.expired),
            Caller::Customer => Some(&self.customer.access),
            Caller::Mitra => Some(&self.mitra.access),
            Caller::DeactivatedMitra => Some(&self.deactivated.access),
            Caller::Operator => Some(&self.operator),
        }
    }
}

async fn tokens(stack: &Stack) -> Tokens {
    let operator = stack.operator().await;
    stack.create_mitra(&operator, "+628300000001").await;
    let mitra = stack.login("mitra", "+628300000001").await;
    let deactivated_id = stack.create_mitra(&operator, "+628300000002").await;
    let deactivated = stack.login("mitra", "+628300000002").await;
    stack
        .ok(
            Api::Internal,
            Method::PATCH,
            &format!("/internal/mitras/{deactivated_id}"),
            Some(&operator),
            Some(json!({ "is_active": false })),
        )
        .await;
    let now = OffsetDateTime::now_utc();
    Tokens {
        customer: stack.customer("+628300000100").await,
        forged: token_signed(
            b"another-secret-another-secret-000001",
            mitra.id,
            Role::Mitra,
            now,
        ),
        expired: token_signed(
            SECRET.as_bytes(),
            mitra.id,
            Role::Mitra,
            now - time::Duration::hours(2),
        ),
        mitra,
        deactivated,
        operator,
    }
}

#[tokio::test]
async fn every_route_admits_exactly_its_callers() {
    let stack = Stack::start().await;
    let tokens = tokens(&stack).await;
    let mut wrong = Vec::new();
    for route in routes() {
        for caller in CALLERS {
            let (status, reply) = stack
                .send(
                    route.api,
                    route.method.clone(),
                    &route.path,
                    tokens.of(caller),
                    route.body.clone(),
                )
                .await;
            let want = expected(&route, caller);
            if status != want {
                wrong.push(format!(
                    "{} {} as {caller:?}: {status} (want {want}) {reply}",
                    route.method, route.path
                ));
            }
            if status == 401 {
                assert_eq!(
                    code(&reply),
                    "UNAUTHORIZED",
                    "{} {}",
                    route.method,
                    route.path
                );
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "unexpected answers:\n{}",
        wrong.join("\n")
    );
    stack.stop().await;
}

#[tokio::test]
async fn logout_is_for_the_owner_of_the_app_prefix() {
    let stack = Stack::start().await;
    let tokens = tokens(&stack).await;
    for (path, owner) in [
        ("/api/mitra/auth/logout", Caller::Mitra),
        ("/api/client/auth/logout", Caller::Customer),
    ] {
        for caller in CALLERS {
            let (status, _) = stack
                .post(Api::Public, path, tokens.of(caller), json!(null))
                .await;
            let want = match caller {
                Caller::NoToken | Caller::Garbage | Caller::Forged | Caller::Expired => 401,
                c if c == owner || (owner == Caller::Mitra && c == Caller::DeactivatedMitra) => 200,
                _ => 403,
            };
            assert_eq!(status, want, "{path} as {caller:?}");
        }
    }
    stack.stop().await;
}

#[tokio::test]
async fn nobody_reads_or_changes_another_partys_session() {
    let stack = Stack::start().await;
    let operator = stack.operator().await;
    let mitra = stack.online_mitra(&operator, "+628300000010").await;
    let other_mitra = stack.online_mitra(&operator, "+628300000011").await;
    let customer = stack.customer("+628300000110").await;
    let intruder = stack.customer("+628300000111").await;
    let session = stack.blast(&customer).await;
    stack
        .post(
            Api::Public,
            &format!("/api/mitra/chat/requests/{session}/reject"),
            Some(&other_mitra.access),
            json!(null),
        )
        .await;
    let (status, _) = stack.accept(&mitra, session).await;
    assert_eq!(status, 200);

    let minutes = Some(json!({ "minutes": 5 }));
    for (method, path, body) in [
        (
            Method::GET,
            format!("/api/client/chat/sessions/{session}"),
            None,
        ),
        (
            Method::POST,
            format!("/api/client/chat/sessions/{session}/pay"),
            None,
        ),
        (
            Method::POST,
            format!("/api/client/chat/sessions/{session}/extend"),
            minutes,
        ),
        (
            Method::POST,
            format!("/api/client/chat/sessions/{session}/end"),
            None,
        ),
    ] {
        let (status, reply) = stack
            .send(Api::Public, method, &path, Some(&intruder.access), body)
            .await;
        assert_eq!(
            (status, code(&reply)),
            (404, "NOT_FOUND"),
            "{path} by another customer"
        );
    }
    for (method, path) in [
        (Method::GET, format!("/api/mitra/chat/sessions/{session}")),
        (
            Method::POST,
            format!("/api/mitra/chat/sessions/{session}/end"),
        ),
        (
            Method::POST,
            format!("/api/mitra/chat/requests/{session}/accept"),
        ),
    ] {
        let (status, _) = stack
            .send(Api::Public, method, &path, Some(&other_mitra.access), None)
            .await;
        assert!(
            status == 404 || status == 409,
            "{path} by another mitra: {status}"
        );
    }
    let session_now = stack
        .get_ok(
            Api::Public,
            &format!("/api/client/chat/sessions/{session}"),
            Some(&customer.access),
        )
        .await;
    assert_eq!(
        session_now["status"], "active",
        "untouched by the intruders"
    );
    assert_eq!(stack.capacity(&mitra).await, 1);
    stack.stop().await;
}
