//! The checklist's Setup: both services answer, every instance subscribed to
//! `config:invalidate`, Postgres reachable and the mirror seeded, the accounts the sections use.

use halo_acceptance::Stack;
use reqwest::Method;

#[tokio::test]
async fn setup_services_answer() {
    let stack = Stack::start().await;
    let providers = stack
        .app(Method::GET, "/api/shared/auth-providers", "", None)
        .await
        .expect(200);
    assert_eq!(providers["providers"][0], "phone_otp");
    let url = stack.internal.url("/healthz");
    let health = stack
        .http
        .call(Method::GET, &url, None, None)
        .await
        .expect(200);
    assert_eq!(health["service"], "internal-api");
}

#[tokio::test]
async fn setup_every_instance_subscribed_to_config_invalidate() {
    let stack = Stack::start().await;
    let subscribers: Vec<(String, i64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg("config:invalidate")
        .query_async(&mut stack.vk().await)
        .await
        .unwrap();
    assert_eq!(subscribers, [("config:invalidate".to_owned(), 2)]);
}

#[tokio::test]
async fn setup_postgres_reachable_and_seed_logged() {
    let stack = Stack::start().await;
    for instance in [stack.public(), &stack.internal] {
        let url = instance.url("/readyz");
        let ready = stack
            .http
            .call(Method::GET, &url, None, None)
            .await
            .expect(200);
        assert_eq!(
            (ready["postgres"].as_str(), ready["valkey"].as_str()),
            (Some("up"), Some("up"))
        );
        assert_eq!(instance.events("mirror.seed").len(), 1);
    }
}

#[tokio::test]
async fn setup_three_mitras_and_a_customer() {
    let stack = Stack::start().await;
    for _ in 0..3 {
        stack.mitra().await;
    }
    let customer = stack.customer().await;
    let list = stack
        .cc(Method::GET, "/internal/mitras", None)
        .await
        .expect(200);
    assert_eq!(list["total"], 3);
    let customers = stack
        .pg_count("SELECT count(*) FROM customers WHERE id = $1", customer.id)
        .await;
    assert_eq!(customers, 1);
}
