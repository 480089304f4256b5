//! The services over TLS to Postgres, black-box: a Postgres of the test's own that accepts only
//! TLS; with `sslmode=verify-full` and the right CA the service starts and serves; with a
//! wrong CA it exits at once, non-zero, and its stderr names `DATABASE_URL` and the reason.

use halo_acceptance::{run_to_exit, service_env, Instance, Kind, ValkeyServer};
use halo_testkit::{PgServer, TestCerts};
use reqwest::StatusCode;

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

fn verify_full(server: &PgServer, ca: &std::path::Path) -> String {
    server
        .url(
            "postgres",
            &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
        )
        .replace("@127.0.0.1:", "@localhost:")
}

#[tokio::test]
async fn tls_a_service_with_the_wrong_ca_stops_naming_database_url() {
    let certs = TestCerts::make("DNS:localhost").await;
    let server = tls_only_server(&certs).await;
    let valkey = ValkeyServer::start().await;
    let env = service_env(&verify_full(&server, &certs.other_ca()), &valkey.url());
    let output = run_to_exit(Kind::Public, &[], &env).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    assert!(stderr.contains("wrong CA"), "{stderr}");
}

#[tokio::test]
async fn tls_a_service_with_the_right_ca_serves() {
    let certs = TestCerts::make("DNS:localhost").await;
    let server = tls_only_server(&certs).await;
    let valkey = ValkeyServer::start().await;
    let env = service_env(&verify_full(&server, &certs.ca()), &valkey.url());
    let log_dir = std::env::temp_dir().join(format!(
        "halo-acceptance-tls-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&log_dir).expect("log dir");
    let mut service = Instance::start(Kind::Public, &env, &log_dir).await;
    let ready = reqwest::get(service.url("/readyz")).await.expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);
    service.stop().await;
    let _ = std::fs::remove_dir_all(&log_dir);
}
