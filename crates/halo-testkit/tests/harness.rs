//! The harness itself under test: per-test databases (distinct, migrated, dropped, safe to
//! create concurrently) and throwaway Valkey servers (PING, kill, restart, pause/resume).

// clippy's allow-expect-in-tests covers #[test] bodies, not this file's helper functions.
#![allow(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use halo_testkit::{admin_url, eventually, test_database, TestDatabase, ValkeyServer};
use redis::AsyncConnectionConfig;

async fn table_exists(db: &TestDatabase, table: &str) -> bool {
    db.client()
        .await
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .expect("to_regclass")
        .get(0)
}

async fn count(db: &TestDatabase, query: &str) -> i64 {
    db.client()
        .await
        .query_one(query, &[])
        .await
        .expect(query)
        .get(0)
}

async fn database_exists(name: &str) -> bool {
    let (admin, connection) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
        .await
        .expect("admin connection");
    tokio::spawn(connection);
    admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .expect("pg_database")
        .is_some()
}

#[tokio::test]
async fn test_databases_are_distinct_and_migrated() {
    let a = test_database().await;
    let b = test_database().await;
    assert_ne!(a.name(), b.name());
    assert_ne!(a.url(), b.url());
    assert!(
        a.url().ends_with(a.name()),
        "{} should end with {}",
        a.url(),
        a.name()
    );

    for db in [&a, &b] {
        assert!(
            table_exists(db, "public.mitras").await,
            "{} has no mitras",
            db.name()
        );
        assert_eq!(
            count(db, "SELECT count(*) FROM app_config").await,
            6,
            "{}",
            db.name()
        );
        let current: String = db
            .client()
            .await
            .query_one("SELECT current_database()", &[])
            .await
            .expect("current_database")
            .get(0);
        assert_eq!(current, db.name());
    }

    // A write to one is invisible in the other, through the pool the services would use.
    let pool = a.pool().await;
    pool.get()
        .await
        .expect("pool connection")
        .execute(
            "INSERT INTO mitras (phone, display_name) VALUES ('+620000009999', 'Only In A')",
            &[],
        )
        .await
        .expect("insert");
    assert_eq!(count(&a, "SELECT count(*) FROM mitras").await, 1);
    assert_eq!(count(&b, "SELECT count(*) FROM mitras").await, 0);
    // The trigger from the migration came along with the template.
    assert_eq!(
        count(&a, "SELECT count(*) FROM mitra_online_status").await,
        1
    );
}

#[tokio::test]
async fn a_dropped_test_database_disappears() {
    let db = test_database().await;
    let name = db.name().to_owned();
    // Connections still open when the database is dropped must not keep it alive.
    let client = db.client().await;
    let pool = db.pool().await;
    let _pooled = pool.get().await.expect("pool connection");
    assert!(database_exists(&name).await);

    drop(db);

    assert!(!database_exists(&name).await, "{name} still exists");
    assert!(client.query_one("SELECT 1", &[]).await.is_err());
}

#[tokio::test]
async fn concurrent_test_databases_all_succeed() {
    let (a, b, c) = tokio::join!(test_database(), test_database(), test_database());
    assert_ne!(a.name(), b.name());
    assert_ne!(b.name(), c.name());
    for db in [&a, &b, &c] {
        assert!(
            table_exists(db, "public.mitras").await,
            "{} has no mitras",
            db.name()
        );
    }
}

#[tokio::test]
async fn eventually_returns_as_soon_as_the_check_holds() {
    let calls = AtomicU32::new(0);
    let started = Instant::now();
    eventually("the third call", Duration::from_secs(5), || async {
        calls.fetch_add(1, Ordering::SeqCst) >= 2
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert!(started.elapsed() < Duration::from_secs(1));
}

async fn ping(connection: &mut redis::aio::MultiplexedConnection) -> redis::RedisResult<String> {
    redis::cmd("PING").query_async(connection).await
}

async fn try_connect(url: &str) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_millis(500)));
    redis::Client::open(url)?
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

#[tokio::test]
async fn a_valkey_server_answers_ping() {
    let server = ValkeyServer::start().await;
    assert_eq!(
        server.url(),
        format!("redis://127.0.0.1:{}/", server.port())
    );
    let mut connection = server.connection().await;
    assert_eq!(ping(&mut connection).await.expect("ping"), "PONG");
}

#[tokio::test]
async fn two_valkey_servers_are_independent() {
    let one = ValkeyServer::start().await;
    let two = ValkeyServer::start().await;
    assert_ne!(one.port(), two.port());
    let mut first = one.connection().await;
    let mut second = two.connection().await;
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("1")
        .query_async(&mut first)
        .await
        .expect("set");
    let value: Option<String> = redis::cmd("GET")
        .arg("k")
        .query_async(&mut second)
        .await
        .expect("get");
    assert_eq!(value, None);
}

#[tokio::test]
async fn kill_makes_connections_fail() {
    let mut server = ValkeyServer::start().await;
    let mut connection = server.connection().await;
    assert_eq!(ping(&mut connection).await.expect("ping"), "PONG");

    server.kill().await;

    assert!(
        ping(&mut connection).await.is_err(),
        "an open connection still works"
    );
    assert!(
        try_connect(&server.url()).await.is_err(),
        "a new connection still works"
    );
}

#[tokio::test]
async fn restart_brings_it_back_empty_on_the_same_port() {
    let mut server = ValkeyServer::start().await;
    let port = server.port();
    let mut connection = server.connection().await;
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut connection)
        .await
        .expect("set");

    server.restart().await;
    assert_eq!(server.port(), port);
    let mut connection = server.connection().await;
    let size: i64 = redis::cmd("DBSIZE")
        .query_async(&mut connection)
        .await
        .expect("dbsize");
    assert_eq!(size, 0);

    // And again after an explicit kill, as a test of an outage would do it.
    server.kill().await;
    assert!(try_connect(&server.url()).await.is_err());
    server.restart().await;
    assert_eq!(server.port(), port);
    assert_eq!(
        ping(&mut server.connection().await).await.expect("ping"),
        "PONG"
    );
}

#[tokio::test]
async fn pause_makes_commands_time_out_until_resume() {
    let server = ValkeyServer::start().await;
    let config =
        AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_millis(200)));
    let mut connection = redis::Client::open(server.url())
        .expect("url")
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("connect");
    assert_eq!(ping(&mut connection).await.expect("ping"), "PONG");

    server.pause();
    let started = Instant::now();
    let paused = ping(&mut connection).await;
    assert!(paused.is_err(), "PING answered while paused: {paused:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the 200 ms timeout took {:?}",
        started.elapsed()
    );

    server.resume();
    eventually(
        "PING to answer after resume",
        Duration::from_secs(5),
        || {
            let mut connection = connection.clone();
            async move { ping(&mut connection).await.is_ok() }
        },
    )
    .await;
    assert_eq!(
        ping(&mut server.connection().await).await.expect("ping"),
        "PONG"
    );
}
