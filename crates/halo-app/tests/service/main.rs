//! Both services as built by the binaries, on real stores: start-up (concurrent migrations,
//! Valkey down), probes, and graceful shutdown.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test code")]

use halo_app::{Application, RunningApplication, Service};
use halo_config::Config;
use halo_testkit::{admin_url, eventually, test_database, ValkeyServer};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use tokio_postgres::NoTls;

fn config(database_url: &str, valkey_url: &str) -> Config {
    let vars: HashMap<&str, String> = [
        ("DATABASE_URL", database_url.to_owned()),
        ("VALKEY_URL", valkey_url.to_owned()),
        (
            "AUTH_JWT_SECRET",
            "test-secret-test-secret-test-secret-0001".to_owned(),
        ),
        ("PUBLIC_PORT", "0".to_owned()),
        ("INTERNAL_PORT", "0".to_owned()),
        ("METRICS_PORT", "0".to_owned()),
        ("APP_ENV", "test".to_owned()),
        ("MIRROR_WATCH_INTERVAL_MS", "100".to_owned()),
    ]
    .into_iter()
    .collect();
    Config::from_lookup(|name| vars.get(name).cloned()).expect("test config")
}

async fn start(config: &Config, service: Service) -> RunningApplication {
    Application::build(config, service)
        .await
        .expect("service starts")
        .spawn()
}

async fn get_json(port: u16, path: &str) -> (u16, Value) {
    let response = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json body"))
}

/// An empty database (no schema at all), dropped at the end of the test.
struct EmptyDatabase {
    name: String,
    url: String,
}

impl EmptyDatabase {
    async fn create() -> Self {
        let admin = admin_url();
        let (client, conn) = tokio_postgres::connect(&admin, NoTls).await.expect("admin");
        tokio::spawn(conn);
        let name = format!("halo_empty_{}", uuid::Uuid::new_v4().simple());
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create");
        let url = format!(
            "{}/{name}",
            admin.rsplit_once('/').expect("url has a path").0
        );
        Self { name, url }
    }

    async fn drop_now(self) {
        let (client, conn) = tokio_postgres::connect(&admin_url(), NoTls)
            .await
            .expect("admin");
        tokio::spawn(conn);
        let _ = client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await;
    }
}

#[tokio::test]
async fn two_instances_starting_at_once_on_an_empty_database_both_come_up() {
    let db = EmptyDatabase::create().await;
    let valkey = ValkeyServer::start().await;
    let cfg = config(&db.url, &valkey.url());
    let (a, b) = tokio::join!(
        Application::build(&cfg, Service::Public),
        Application::build(&cfg, Service::Internal)
    );
    let (a, b) = (
        a.expect("public-api up").spawn(),
        b.expect("internal-api up").spawn(),
    );
    for port in [a.port, b.port] {
        let (status, body) = get_json(port, "/healthz").await;
        assert_eq!(status, 200);
        assert_eq!(body["status"], "ok");
    }
    let (client, conn) = tokio_postgres::connect(&db.url, NoTls).await.unwrap();
    tokio::spawn(conn);
    let applied: i64 = client
        .query_one("SELECT count(*) FROM refinery_schema_history", &[])
        .await
        .unwrap()
        .get(0);
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations"))
        .unwrap()
        .count();
    assert_eq!(
        applied as usize, migrations,
        "each migration applied exactly once"
    );
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    db.drop_now().await;
}

#[tokio::test]
async fn readyz_reports_both_stores_and_valkey_down_is_degraded_not_unready() {
    let db = test_database().await;
    let mut valkey = ValkeyServer::start().await;
    let app = start(&config(db.url(), &valkey.url()), Service::Public).await;
    let (status, body) = get_json(app.port, "/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ready");
    assert_eq!(body["postgres"], "up");
    assert_eq!(body["valkey"], "up");

    valkey.kill().await;
    let (status, body) = get_json(app.port, "/readyz").await;
    assert_eq!(status, 200, "a valkey outage keeps the service ready");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["valkey"], "down");

    valkey.restart().await;
    eventually("readyz back to ready", Duration::from_secs(5), || async {
        get_json(app.port, "/readyz").await.1["status"] == "ready"
    })
    .await;
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", app.metrics_port))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains("halo_http_requests_total{method=\"GET\",route=\"/readyz\",status=\"200\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("halo_mirror_seeds_total{reason=\"startup\"} 1"),
        "{metrics}"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_service_starts_with_valkey_down_and_seeds_once_it_appears() {
    let db = test_database().await;
    let mut valkey = ValkeyServer::start().await;
    valkey.kill().await;
    let app = start(&config(db.url(), &valkey.url()), Service::Internal).await;
    assert_eq!(get_json(app.port, "/readyz").await.1["status"], "degraded");
    valkey.restart().await;
    eventually(
        "mirror seeded after valkey appears",
        Duration::from_secs(5),
        || async { app.availability.mirror_trusted() },
    )
    .await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_routes_answer_a_json_404_and_stop_is_graceful() {
    let db = test_database().await;
    let valkey = ValkeyServer::start().await;
    let app = start(&config(db.url(), &valkey.url()), Service::Public).await;
    let port = app.port;
    let (status, body) = get_json(port, "/nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "NOT_FOUND");
    tokio::time::timeout(Duration::from_secs(10), app.stop())
        .await
        .expect("graceful stop completes")
        .unwrap();
    assert!(
        reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .is_err(),
        "port closed after stop"
    );
}
