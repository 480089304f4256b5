//! One product deployment per test: a fresh database on the shared test cluster (optionally
//! behind a [`PgProxy`]), an own `valkey-server`, one or more `public-api` processes and one
//! `internal-api`, an operator created with the CLI, and helpers that act as the apps and the
//! control centre and read the stores as the checklist does.

use crate::binaries::binaries;
use crate::http::{Http, Reply};
use crate::instance::{Instance, Kind};
use crate::proxy::{authority, PgProxy};
use halo_testkit::{eventually, test_database, TestDatabase, ValkeyServer};
use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;
use uuid::Uuid;

pub const DEV_CODE: &str = "000000";
const SECRET: &str = "acceptance-secret-acceptance-secret-0001";
const OPERATOR_EMAIL: &str = "ops@acceptance.test";
const OPERATOR_PASSWORD: &str = "acceptance operator password";

/// What a test changes about the deployment: extra environment, how many public instances,
/// whether Postgres is reached through a cuttable proxy, which database.
#[derive(Debug, Default, Clone)]
pub struct StackOptions {
    env: Vec<(String, String)>,
    publics: usize,
    proxy: bool,
    database_url: Option<String>,
}

impl StackOptions {
    /// Sets an environment variable of every service process.
    pub fn env(mut self, name: &str, value: impl ToString) -> Self {
        self.env.push((name.to_owned(), value.to_string()));
        self
    }

    /// Runs `n` public-api instances (default 1).
    pub fn publics(mut self, n: usize) -> Self {
        self.publics = n;
        self
    }

    /// Puts the services behind a [`PgProxy`] the test can cut (or switch to another server).
    pub fn pg_proxy(mut self) -> Self {
        self.proxy = true;
        self
    }

    /// Uses this database (e.g. on a [`halo_testkit::PgServer`] of the test's own) instead of
    /// a fresh one on the shared cluster; the services migrate it at start-up.
    pub fn database(mut self, url: &str) -> Self {
        self.database_url = Some(url.to_owned());
        self
    }
}

/// A mitra account, logged in on the app.
#[derive(Debug, Clone)]
pub struct Mitra {
    pub id: Uuid,
    pub phone: String,
    pub token: String,
    pub refresh: String,
}

/// A customer, logged in on the app.
#[derive(Debug, Clone)]
pub struct Customer {
    pub id: Uuid,
    pub token: String,
}

pub struct Stack {
    /// The fresh database on the shared cluster; `None` when the test gave its own
    /// ([`StackOptions::database`]).
    pub db: Option<TestDatabase>,
    /// The database the services use, as reached directly (not through the proxy).
    pub database_url: String,
    pub valkey: ValkeyServer,
    /// A direct connection to the test database, for the checklist's SQL.
    pub pg: tokio_postgres::Client,
    pub publics: Vec<Instance>,
    pub internal: Instance,
    pub proxy: Option<PgProxy>,
    pub http: Http,
    env: Vec<(String, String)>,
    log_dir: PathBuf,
    cc_token: String,
}

impl Stack {
    /// One public-api and one internal-api with the default cadences.
    pub async fn start() -> Stack {
        Self::with(StackOptions::default()).await
    }

    pub async fn with(options: StackOptions) -> Stack {
        let valkey = ValkeyServer::start().await;
        let url = valkey.url();
        Self::with_valkey(options, valkey, &url).await
    }

    /// A stack whose services reach Valkey at `services_url` (TLS through a tunnel, a proxy, a
    /// cluster's seed list) rather than at `valkey` directly; `valkey` stays the server the
    /// `vk_*` helpers read.
    pub async fn with_valkey(
        options: StackOptions,
        valkey: ValkeyServer,
        services_url: &str,
    ) -> Stack {
        // Build (or find) the binaries off the async threads; a no-op after the first test.
        tokio::task::spawn_blocking(binaries)
            .await
            .expect("binaries");
        let (db, direct_url) = match options.database_url {
            Some(url) => (None, url),
            None => {
                let db = test_database().await;
                let url = db.url().to_owned();
                (Some(db), url)
            }
        };
        let proxy = if options.proxy {
            Some(PgProxy::start(&authority(&direct_url)).await)
        } else {
            None
        };
        let database_url = proxy
            .as_ref()
            .map_or_else(|| direct_url.clone(), |p| p.url_for(&direct_url));
        let mut env = service_env(&database_url, services_url);
        env.extend(options.env);
        let log_dir = std::env::temp_dir()
            .join("halo-acceptance")
            .join(Uuid::new_v4().simple().to_string());
        std::fs::create_dir_all(&log_dir).expect("log dir");

        let mut publics = Vec::new();
        for _ in 0..options.publics.max(1) {
            publics.push(Instance::start(Kind::Public, &env, &log_dir).await);
        }
        let internal = Instance::start(Kind::Internal, &env, &log_dir).await;
        create_operator(&env).await;
        let pg = halo_testkit::connect(&direct_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {direct_url}: {e}"));
        let mut stack = Stack {
            db,
            database_url: direct_url,
            valkey,
            pg,
            publics,
            internal,
            proxy,
            http: Http::default(),
            env,
            log_dir,
            cc_token: String::new(),
        };
        stack.cc_token = stack.operator_login().await;
        stack
    }

    /// The environment every service process of this stack gets.
    pub fn env_vars(&self) -> &[(String, String)] {
        &self.env
    }

    /// The first public-api instance.
    pub fn public(&self) -> &Instance {
        &self.publics[0]
    }

    /// Starts another process of `kind` on the same stores and environment.
    pub async fn spawn(&self, kind: Kind) -> Instance {
        Instance::start(kind, &self.env, &self.log_dir).await
    }

    /// Starts another process of `kind` with `extra` environment on top of the stack's.
    pub async fn spawn_with(&self, kind: Kind, extra: &[(&str, &str)]) -> Instance {
        let mut env = self.env.clone();
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        Instance::start(kind, &env, &self.log_dir).await
    }

    /// Stops public instance `i` gracefully and starts a fresh process in its place.
    pub async fn restart_public(&mut self, i: usize) {
        self.publics[i].stop().await;
        self.publics[i] = self.spawn(Kind::Public).await;
    }

    // ---- HTTP as the apps and the control centre -------------------------------------------

    /// A request to the first public-api.
    pub async fn app(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Reply {
        self.app_on(0, method, path, token, body).await
    }

    /// A request to public-api instance `i`.
    pub async fn app_on(
        &self,
        i: usize,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Reply {
        let token = (!token.is_empty()).then_some(token);
        let url = self.publics[i].url(path);
        self.http.call(method, &url, token, body.as_ref()).await
    }

    /// An app's event stream (`app`: "mitra" or "client") on public-api instance `i`.
    pub async fn events_on(
        &self,
        i: usize,
        app: &str,
        token: &str,
        last_event_id: Option<&str>,
    ) -> Result<crate::EventStream, Reply> {
        let url = self.publics[i].url(&format!("/api/{app}/events"));
        crate::sse::open(&url, token, last_event_id).await
    }

    /// An operator request to the internal-api.
    pub async fn cc(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let url = self.internal.url(path);
        self.http
            .call(method, &url, Some(&self.cc_token), body.as_ref())
            .await
    }

    async fn operator_login(&self) -> String {
        let body = json!({ "email": OPERATOR_EMAIL, "password": OPERATOR_PASSWORD });
        let url = self.internal.url("/internal/auth/login");
        let reply = self.http.call(Method::POST, &url, None, Some(&body)).await;
        token(&reply.expect(200), "access_token")
    }

    /// The control centre creates a mitra; the mitra logs in with the OTP dev code.
    pub async fn mitra(&self) -> Mitra {
        let phone = random_phone();
        let body = json!({ "phone": phone, "display_name": "Acceptance Mitra" });
        self.cc(Method::POST, "/internal/mitras", Some(body))
            .await
            .expect(201);
        self.login_mitra(&phone).await
    }

    /// Logs a mitra in (OTP request, then verify with the dev code).
    pub async fn login_mitra(&self, phone: &str) -> Mitra {
        let login = self.otp_login("/api/mitra/auth", phone).await.expect(200);
        Mitra {
            id: user_id(&login),
            phone: phone.to_owned(),
            token: token(&login, "access_token"),
            refresh: token(&login, "refresh_token"),
        }
    }

    /// The OTP login flow of an app; returns the verify reply.
    pub async fn otp_login(&self, prefix: &str, phone: &str) -> Reply {
        let phone_body = json!({ "phone": phone });
        self.app(
            Method::POST,
            &format!("{prefix}/otp/request"),
            "",
            Some(phone_body),
        )
        .await
        .expect(200);
        let verify = json!({ "phone": phone, "code": DEV_CODE });
        self.app(
            Method::POST,
            &format!("{prefix}/otp/verify"),
            "",
            Some(verify),
        )
        .await
    }

    /// A mitra that toggled itself online.
    pub async fn online_mitra(&self) -> Mitra {
        let mitra = self.mitra().await;
        self.toggle(&mitra, true).await.expect(200);
        mitra
    }

    /// A customer created by its first login.
    pub async fn customer(&self) -> Customer {
        let login = self
            .otp_login("/api/client/auth", &random_phone())
            .await
            .expect(200);
        Customer {
            id: user_id(&login),
            token: token(&login, "access_token"),
        }
    }

    pub async fn toggle(&self, mitra: &Mitra, online: bool) -> Reply {
        let path = if online { "online" } else { "offline" };
        self.app(
            Method::POST,
            &format!("/api/mitra/status/{path}"),
            &mitra.token,
            None,
        )
        .await
    }

    pub async fn heartbeat(&self, mitra: &Mitra) -> Reply {
        self.heartbeat_on(0, mitra).await
    }

    pub async fn heartbeat_on(&self, i: usize, mitra: &Mitra) -> Reply {
        self.app_on(
            i,
            Method::POST,
            "/api/mitra/status/heartbeat",
            &mitra.token,
            None,
        )
        .await
    }

    /// A customer's blast (`POST /api/client/chat/requests`).
    pub async fn blast(&self, customer: &Customer) -> Reply {
        let body = json!({ "minutes": 15 });
        self.app(
            Method::POST,
            "/api/client/chat/requests",
            &customer.token,
            Some(body),
        )
        .await
    }

    /// A customer's targeted request ("chat again") to `mitra` for 15 minutes.
    pub async fn request_mitra(&self, customer: &Customer, mitra: &Mitra) -> Reply {
        let body = json!({ "minutes": 15, "mitra_id": mitra.id });
        self.app(
            Method::POST,
            "/api/client/chat/requests",
            &customer.token,
            Some(body),
        )
        .await
    }

    /// The customer pays session `session` (`POST …/pay`).
    pub async fn pay(&self, customer: &Customer, session: &str) -> Reply {
        let path = format!("/api/client/chat/sessions/{session}/pay");
        self.app(Method::POST, &path, &customer.token, None).await
    }

    /// The beacon the customer app polls.
    pub async fn beacon(&self, i: usize) -> Value {
        self.app_on(i, Method::GET, "/public/bestie-availability", "", None)
            .await
            .expect(200)
    }

    /// A new customer blasts and `mitra` accepts: an active session; returns its id.
    pub async fn start_chat(&self, mitra: &Mitra) -> Uuid {
        let customer = self.customer().await;
        let blast = self.blast(&customer).await.expect(201);
        let session = blast["session_id"].as_str().expect("session_id").to_owned();
        let accepted = self.accept(mitra, &session).await.expect(200);
        assert_eq!(accepted["status"], "active");
        session.parse().expect("session uuid")
    }

    pub async fn accept(&self, mitra: &Mitra, session: &str) -> Reply {
        self.app(
            Method::POST,
            &format!("/api/mitra/chat/requests/{session}/accept"),
            &mitra.token,
            None,
        )
        .await
    }

    /// The mitra ends the session.
    pub async fn end_chat(&self, mitra: &Mitra, session: Uuid) -> Value {
        self.app(
            Method::POST,
            &format!("/api/mitra/chat/sessions/{session}/end"),
            &mitra.token,
            None,
        )
        .await
        .expect(200)
    }

    /// The operator deactivates (`false`) or reactivates (`true`) a mitra.
    pub async fn set_active(&self, mitra: &Mitra, active: bool) -> Reply {
        self.cc(
            Method::PATCH,
            &format!("/internal/mitras/{}", mitra.id),
            Some(json!({ "is_active": active })),
        )
        .await
    }

    /// `PATCH /internal/config`.
    pub async fn set_config(&self, key: &str, value: u32) -> Value {
        self.cc(
            Method::PATCH,
            "/internal/config",
            Some(json!({ key: value })),
        )
        .await
        .expect(200)
    }

    /// `GET /internal/mirror/drift`.
    pub async fn drift(&self) -> Value {
        self.cc(Method::GET, "/internal/mirror/drift", None)
            .await
            .expect(200)
    }

    /// Waits until the drift report is empty (the mirror healed). A 503 (Valkey just cut or
    /// restarted under the control centre's own connection) counts as not yet.
    pub async fn wait_in_sync(&self, what: &str, timeout: Duration) {
        eventually(what, timeout, || async {
            let reply = self.cc(Method::GET, "/internal/mirror/drift", None).await;
            reply.status == 200 && reply.body["in_sync"] == true
        })
        .await;
    }

    // ---- Valkey, read directly ---------------------------------------------------------------

    pub async fn vk(&self) -> MultiplexedConnection {
        self.valkey.connection().await
    }

    pub async fn vk_get(&self, key: &str) -> Option<String> {
        self.vk().await.get(key).await.expect("GET")
    }

    pub async fn vk_set(&self, key: &str, value: &str) {
        let () = self.vk().await.set(key, value).await.expect("SET");
    }

    pub async fn vk_del(&self, key: &str) {
        let _: i64 = self.vk().await.del(key).await.expect("DEL");
    }

    pub async fn vk_members(&self, key: &str) -> BTreeSet<String> {
        self.vk().await.smembers(key).await.expect("SMEMBERS")
    }

    pub async fn vk_is_member(&self, key: &str, id: Uuid) -> bool {
        self.vk()
            .await
            .sismember(key, id.to_string())
            .await
            .expect("SISMEMBER")
    }

    /// `DEL availability:snapshot`: the next poll recomputes.
    pub async fn bust_snapshot(&self) {
        self.vk_del("availability:snapshot").await;
    }

    pub async fn flushdb(&self) {
        let () = redis::cmd("FLUSHDB")
            .query_async(&mut self.vk().await)
            .await
            .expect("FLUSHDB");
    }

    pub async fn heartbeat_key(&self, id: Uuid) -> Option<String> {
        self.vk_get(&format!("mitra:heartbeat:{id}")).await
    }

    pub async fn capacity_key(&self, id: Uuid) -> Option<String> {
        self.vk_get(&format!("mitra:capacity:{id}")).await
    }

    // ---- Postgres, read directly -------------------------------------------------------------

    /// `chat_sessions.status` of a session.
    pub async fn session_status(&self, session: Uuid) -> String {
        self.pg
            .query_one(
                "SELECT status FROM chat_sessions WHERE id = $1",
                &[&session],
            )
            .await
            .expect("session status")
            .get(0)
    }

    /// Ids (as text) returned by `sql`, a query of one uuid column.
    pub async fn pg_ids(&self, sql: &str) -> BTreeSet<String> {
        self.pg
            .query(sql, &[])
            .await
            .expect(sql)
            .iter()
            .map(|row| row.get::<_, Uuid>(0).to_string())
            .collect()
    }

    pub async fn pg_is_online(&self, id: Uuid) -> bool {
        self.pg
            .query_one(
                "SELECT is_online FROM mitra_online_status WHERE mitra_id = $1",
                &[&id],
            )
            .await
            .expect("online status")
            .get(0)
    }

    /// `SELECT count(*)` of a query with one uuid parameter.
    pub async fn pg_count(&self, sql: &str, id: Uuid) -> i64 {
        self.pg.query_one(sql, &[&id]).await.expect(sql).get(0)
    }

    pub async fn open_sessions(&self, id: Uuid) -> i64 {
        self.pg_count(
            "SELECT count(*) FROM chat_sessions
             WHERE mitra_id = $1 AND status IN ('active','pending_payment')",
            id,
        )
        .await
    }

    /// Calls of statements whose text matches `pattern` (ILIKE) on this test database, from
    /// `pg_stat_statements`: the checklist's "watch the Postgres query log", counted.
    pub async fn statement_calls(&self, pattern: &str) -> i64 {
        self.pg
            .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .await
            .expect("pg_stat_statements (is it in shared_preload_libraries?)");
        self.pg
            .query_one(
                "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND query ILIKE $1",
                &[&pattern],
            )
            .await
            .expect("pg_stat_statements")
            .get(0)
    }
}

impl Drop for Stack {
    /// Logs are kept when the test failed, and their place printed.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("service logs kept in {}", self.log_dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.log_dir);
        }
    }
}

/// The environment every service process of a stack gets (before the test's own additions).
pub fn service_env(database_url: &str, valkey_url: &str) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", database_url),
        ("VALKEY_URL", valkey_url),
        ("AUTH_JWT_SECRET", SECRET),
        ("APP_ENV", "test"),
        ("OTP_DEV_CODE", DEV_CODE),
        ("BIND_ADDR", "127.0.0.1"),
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "info"),
        // Notice flushes and restarts within a tenth of a second.
        ("MIRROR_WATCH_INTERVAL_MS", "100"),
        // Many stacks share one cluster; a Postgres outage should fail requests fast.
        ("PG_POOL_SIZE", "4"),
        ("PG_TIMEOUT_MS", "2000"),
        // Every app of a test logs in from 127.0.0.1: per-address limits are tested on their own.
        ("RATE_LIMIT_OTP_REQUEST_PER_ADDRESS", "1000000/1"),
        ("RATE_LIMIT_OTP_VERIFY_PER_ADDRESS", "1000000/1"),
        ("RATE_LIMIT_OPERATOR_LOGIN_PER_ADDRESS", "1000000/1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// `internal-api create-operator`, as an operator would run it.
async fn create_operator(env: &[(String, String)]) {
    let output = tokio::process::Command::new(&binaries().internal_api)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(["create-operator", "--email", OPERATOR_EMAIL])
        .args(["--password", OPERATOR_PASSWORD])
        .output()
        .await
        .expect("run internal-api create-operator");
    assert!(
        output.status.success(),
        "create-operator failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn random_phone() -> String {
    format!("+62{:011}", Uuid::new_v4().as_u128() % 100_000_000_000)
}

fn token(body: &Value, field: &str) -> String {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {body}"))
        .to_owned()
}

fn user_id(login: &Value) -> Uuid {
    login["user"]["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no user.id in {login}"))
}
