//! One product stack per test: a fresh database, an own `valkey-server`, a public-api and an
//! internal-api in-process, and an HTTP client that speaks to them as the apps and the
//! control centre do.

use halo_app::{create_operator, Application, RunningApplication, Service};
use halo_config::Config;
use halo_testkit::{test_database, TestDatabase, ValkeyServer};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashMap;
use uuid::Uuid;

pub const SECRET: &str = "test-secret-test-secret-test-secret-0001";
pub const DEV_CODE: &str = "000000";
pub const OPERATOR_EMAIL: &str = "ops@example.test";
pub const OPERATOR_PASSWORD: &str = "correct horse battery";

pub struct Stack {
    pub db: TestDatabase,
    pub valkey: ValkeyServer,
    pub config: Config,
    pub public: RunningApplication,
    pub internal: RunningApplication,
    http: reqwest::Client,
}

/// A logged-in app user.
#[derive(Clone)]
pub struct Login {
    pub id: Uuid,
    pub access: String,
    pub refresh: String,
}

/// Which service a request goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    Public,
    Internal,
}

pub fn config(database_url: &str, valkey_url: &str) -> Config {
    let vars: HashMap<&str, String> = [
        ("DATABASE_URL", database_url.to_owned()),
        ("VALKEY_URL", valkey_url.to_owned()),
        ("AUTH_JWT_SECRET", SECRET.to_owned()),
        ("PUBLIC_PORT", "0".to_owned()),
        ("INTERNAL_PORT", "0".to_owned()),
        ("METRICS_PORT", "0".to_owned()),
        ("APP_ENV", "test".to_owned()),
        ("OTP_DEV_CODE", DEV_CODE.to_owned()),
        ("CC_ORIGIN", "http://cc.example.test".to_owned()),
        ("MIRROR_WATCH_INTERVAL_MS", "100".to_owned()),
        // Every test logs in from 127.0.0.1: per-address limits would count them all together.
        ("RATE_LIMIT_OTP_REQUEST_PER_ADDRESS", "1000000/1".to_owned()),
        ("RATE_LIMIT_OTP_VERIFY_PER_ADDRESS", "1000000/1".to_owned()),
        (
            "RATE_LIMIT_OPERATOR_LOGIN_PER_ADDRESS",
            "1000000/1".to_owned(),
        ),
    ]
    .into_iter()
    .collect();
    Config::from_lookup(|name| vars.get(name).cloned()).expect("test config")
}

pub async fn start_service(config: &Config, service: Service) -> RunningApplication {
    Application::build(config, service)
        .await
        .expect("service starts")
        .spawn()
}

impl Stack {
    pub async fn start() -> Self {
        let db = test_database().await;
        let valkey = ValkeyServer::start().await;
        let config = config(db.url(), &valkey.url());
        let public = start_service(&config, Service::Public).await;
        let internal = start_service(&config, Service::Internal).await;
        create_operator(&config, OPERATOR_EMAIL, OPERATOR_PASSWORD)
            .await
            .expect("operator");
        Self {
            db,
            valkey,
            config,
            public,
            internal,
            http: reqwest::Client::new(),
        }
    }

    /// Another public-api instance on the same stores (stopped by the caller).
    pub async fn second_public(&self) -> RunningApplication {
        start_service(&self.config, Service::Public).await
    }

    pub fn url(&self, api: Api, path: &str) -> String {
        let port = match api {
            Api::Public => self.public.port,
            Api::Internal => self.internal.port,
        };
        format!("http://127.0.0.1:{port}{path}")
    }

    /// Any request; the body is parsed as JSON when there is one (`Value::Null` otherwise).
    pub async fn send(
        &self,
        api: Api,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.send_to(&self.url(api, path), method, token, body)
            .await
    }

    pub async fn send_to(
        &self,
        url: &str,
        method: Method,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body read");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON body: {text}"))
        };
        (status, body)
    }

    pub async fn get(&self, api: Api, path: &str, token: Option<&str>) -> (u16, Value) {
        self.send(api, Method::GET, path, token, None).await
    }

    pub async fn post(
        &self,
        api: Api,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (u16, Value) {
        self.send(api, Method::POST, path, token, Some(body)).await
    }

    /// A 2xx JSON body, or a panic naming the call and what came back.
    pub async fn ok(
        &self,
        api: Api,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let (status, reply) = self.send(api, method.clone(), path, token, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path} answered {status}: {reply}"
        );
        reply
    }

    /// A 2xx JSON body of a GET.
    pub async fn get_ok(&self, api: Api, path: &str, token: Option<&str>) -> Value {
        self.ok(api, Method::GET, path, token, None).await
    }

    pub async fn operator(&self) -> String {
        let reply = self
            .ok(
                Api::Internal,
                Method::POST,
                "/internal/auth/login",
                None,
                Some(json!({ "email": OPERATOR_EMAIL, "password": OPERATOR_PASSWORD })),
            )
            .await;
        token(&reply, "access_token")
    }

    /// Creates a mitra through the control centre and returns its id.
    pub async fn create_mitra(&self, operator: &str, phone: &str) -> Uuid {
        let reply = self
            .ok(
                Api::Internal,
                Method::POST,
                "/internal/mitras",
                Some(operator),
                Some(json!({ "phone": phone, "display_name": format!("Mitra {phone}") })),
            )
            .await;
        uuid(&reply["id"])
    }

    /// OTP login on the public API; `app` is "mitra" or "client".
    pub async fn login(&self, app: &str, phone: &str) -> Login {
        let prefix = format!("/api/{app}/auth");
        self.ok(
            Api::Public,
            Method::POST,
            &format!("{prefix}/otp/request"),
            None,
            Some(json!({ "phone": phone })),
        )
        .await;
        let reply = self
            .ok(
                Api::Public,
                Method::POST,
                &format!("{prefix}/otp/verify"),
                None,
                Some(json!({ "phone": phone, "code": DEV_CODE })),
            )
            .await;
        Login {
            id: uuid(&reply["user"]["id"]),
            access: token(&reply, "access_token"),
            refresh: token(&reply, "refresh_token"),
        }
    }

    /// A mitra created by the operator, logged in and online.
    pub async fn online_mitra(&self, operator: &str, phone: &str) -> Login {
        self.create_mitra(operator, phone).await;
        let mitra = self.login("mitra", phone).await;
        self.ok(
            Api::Public,
            Method::POST,
            "/api/mitra/status/online",
            Some(&mitra.access),
            None,
        )
        .await;
        mitra
    }

    pub async fn customer(&self, phone: &str) -> Login {
        self.login("client", phone).await
    }

    /// A 2xx heartbeat acknowledgement.
    pub async fn heartbeat(&self, mitra: &Login) -> Value {
        self.ok(
            Api::Public,
            Method::POST,
            "/api/mitra/status/heartbeat",
            Some(&mitra.access),
            None,
        )
        .await
    }

    /// The mitra's `active_sessions` as `GET /api/mitra/status` reports it.
    pub async fn capacity(&self, mitra: &Login) -> u64 {
        let status = self
            .get_ok(Api::Public, "/api/mitra/status", Some(&mitra.access))
            .await;
        status["active_sessions"].as_u64().expect("active_sessions")
    }

    /// A blast by `customer`; returns the session id.
    pub async fn blast(&self, customer: &Login) -> Uuid {
        let reply = self
            .ok(
                Api::Public,
                Method::POST,
                "/api/client/chat/requests",
                Some(&customer.access),
                Some(json!({ "minutes": 10 })),
            )
            .await;
        uuid(&reply["session_id"])
    }

    pub async fn accept(&self, mitra: &Login, session: Uuid) -> (u16, Value) {
        self.post(
            Api::Public,
            &format!("/api/mitra/chat/requests/{session}/accept"),
            Some(&mitra.access),
            Value::Null,
        )
        .await
    }

    /// Sets one `app_config` value through the control centre.
    pub async fn set_config(&self, operator: &str, key: &str, value: i64) {
        self.ok(
            Api::Internal,
            Method::PATCH,
            "/internal/config",
            Some(operator),
            Some(json!({ key: value })),
        )
        .await;
    }

    pub async fn sql(&self, statement: &str) {
        self.db
            .client()
            .await
            .batch_execute(statement)
            .await
            .expect("sql");
    }

    pub async fn stop(self) {
        self.public.stop().await.expect("public stops");
        self.internal.stop().await.expect("internal stops");
    }
}

pub fn token(reply: &Value, field: &str) -> String {
    reply[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {reply}"))
        .to_owned()
}

pub fn uuid(value: &Value) -> Uuid {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a uuid, got {value}"))
}

/// The error code of an error body.
pub fn code(reply: &Value) -> &str {
    reply["error"]["code"].as_str().unwrap_or("<no code>")
}
