//! TLS to Postgres with libpq's `sslmode` semantics, against a server of the test's own
//! (`ssl = on`, a CA and a server certificate for `localhost` made with `openssl`, and a
//! `pg_hba.conf` that admits TLS connections only).

use halo_postgres::{connect_one, ConnectError, PoolSettings};
use halo_testkit::{test_database, PgServer, TestCerts};
use std::time::Duration;
use tokio_postgres::error::SqlState;

/// A server that accepts only TLS (`hostssl`), with a certificate for `localhost` only.
async fn tls_only_server(certs: &TestCerts) -> PgServer {
    let mut server = PgServer::init().await;
    server
        .install_file("server.crt", &certs.server_cert(), 0o600)
        .await;
    server
        .install_file("server.key", &certs.server_key(), 0o600)
        .await;
    server
        .write_hba("local all all trust\nhostssl all all 127.0.0.1/32 trust\n")
        .await;
    server
        .set("ssl", "on")
        .set("ssl_cert_file", "'server.crt'")
        .set("ssl_key_file", "'server.key'");
    server.start().await;
    server
}

/// `postgres://halo@<host>:<port>/postgres?<params>`.
fn url(server: &PgServer, host: &str, params: &str) -> String {
    server
        .url("postgres", params)
        .replace("@127.0.0.1:", &format!("@{host}:"))
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, ConnectError> {
    connect_one(url, |config| {
        config.connect_timeout(Duration::from_secs(10));
    })
    .await
}

/// Connects and tells whether the session is encrypted.
async fn encrypted(url: &str) -> bool {
    let client = connect(url)
        .await
        .unwrap_or_else(|e| panic!("{url} should connect: {e}"));
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0)
}

/// The reason a connection was refused in TLS.
async fn tls_refusal(url: &str) -> String {
    match connect(url).await {
        Err(ConnectError::Tls(why)) => why,
        Err(other) => panic!("{url}: refused, but not for TLS: {other}"),
        Ok(_) => panic!("{url} should have been refused"),
    }
}

#[tokio::test]
async fn verify_full_connects_only_with_the_right_ca_and_host_name() {
    let certs = TestCerts::make("DNS:localhost").await;
    let server = tls_only_server(&certs).await;
    let ca = certs.ca().display().to_string();
    let other_ca = certs.other_ca().display().to_string();

    let right = url(
        &server,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    assert!(encrypted(&right).await);

    let wrong_ca = url(
        &server,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={other_ca}"),
    );
    let why = tls_refusal(&wrong_ca).await;
    assert!(why.contains("wrong CA"), "{why}");

    // The certificate names `localhost`, not 127.0.0.1.
    let wrong_host = url(
        &server,
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let why = tls_refusal(&wrong_host).await;
    assert!(why.contains("host name"), "{why}");

    // verify-ca checks the chain only; `require` with a CA verifies it like verify-ca.
    let chain_only = url(
        &server,
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    );
    assert!(encrypted(&chain_only).await);
    let chain_wrong_ca = url(
        &server,
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={other_ca}"),
    );
    assert!(tls_refusal(&chain_wrong_ca).await.contains("wrong CA"));
    let require_wrong_ca = url(
        &server,
        "127.0.0.1",
        &format!("sslmode=require&sslrootcert={other_ca}"),
    );
    assert!(tls_refusal(&require_wrong_ca).await.contains("wrong CA"));
}

#[tokio::test]
async fn require_encrypts_without_a_ca_and_disable_is_refused_by_a_tls_only_server() {
    let certs = TestCerts::make("DNS:localhost").await;
    let server = tls_only_server(&certs).await;

    assert!(encrypted(&url(&server, "127.0.0.1", "sslmode=require")).await);
    assert!(
        encrypted(&url(&server, "127.0.0.1", "sslmode=prefer")).await,
        "prefer uses TLS when the server offers it"
    );
    assert!(
        encrypted(&url(&server, "127.0.0.1", "")).await,
        "prefer is the default"
    );

    match connect(&url(&server, "127.0.0.1", "sslmode=disable")).await {
        Err(ConnectError::Connect(error)) => assert_eq!(
            error.as_db_error().map(|db| db.code()),
            Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
            "refused by pg_hba.conf: {error}"
        ),
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a plain connection to a hostssl-only server"),
    }
}

#[tokio::test]
async fn require_is_refused_by_a_server_without_tls() {
    // The shared test cluster runs without TLS.
    let db = test_database().await;
    let url = format!("{}?sslmode=require", db.url());
    let why = tls_refusal(&url).await;
    assert!(why.contains("does not accept TLS"), "{why}");
    let prefer = format!("{}?sslmode=prefer", db.url());
    assert!(!encrypted(&prefer).await, "prefer falls back to plain");
}

#[tokio::test]
async fn the_pool_migrates_and_queries_over_verified_tls() {
    let certs = TestCerts::make("DNS:localhost").await;
    let server = tls_only_server(&certs).await;
    let ca = certs.ca().display().to_string();
    let url = url(
        &server,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let settings = PoolSettings {
        max_size: 2,
        timeout: Duration::from_secs(10),
    };
    let pool = halo_postgres::connect_pool(&url, &settings).expect("pool");
    halo_postgres::migrate(&pool)
        .await
        .expect("migrate over TLS");
    let status = halo_postgres::schema_status(&pool).await.expect("status");
    assert!(!status.is_behind(), "{status:?}");
    let client = pool.get().await.expect("connection");
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0);
    assert!(ssl);

    let wrong = url.replace(&ca, &certs.other_ca().display().to_string());
    let pool = halo_postgres::connect_pool(&wrong, &settings).expect("pool");
    match halo_postgres::migrate(&pool).await {
        Err(halo_postgres::MigrateError::Tls(why)) => assert!(why.contains("wrong CA"), "{why}"),
        other => panic!("a wrong CA must be a TLS refusal, got {other:?}"),
    }
}
