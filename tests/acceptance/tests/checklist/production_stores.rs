//! The stores users deploy to (README "Production stores"): Valkey over TLS with a private CA,
//! Valkey Cluster with the mirror in one hash-tagged slot, and failovers — a standalone primary
//! replaced by its replica behind an endpoint that flips, and a cluster shard failing over. The
//! degraded-mode rules hold through each: no mitra that kept pinging goes offline, no
//! deactivated mitra gets through, the mirror is reseeded and ends equal to Postgres.

use crate::common::{wait_max_customers_seen, DEADLINE};
use halo_acceptance::{
    binaries, eventually, Mitra, PgProxy, Stack, StackOptions, TestCerts, TlsTunnel, ValkeyCluster,
    ValkeyServer,
};
use redis::AsyncCommands;
use reqwest::Method;
use serde_json::Value;
use std::time::Duration;

const CLUSTER_PREFIX: &str = "{halo}:";

async fn mirror_state(stack: &Stack, i: usize) -> Value {
    stack
        .app_on(i, Method::GET, "/readyz", "", None)
        .await
        .expect(200)["mirror"]
        .clone()
}

async fn wait_trusted(stack: &Stack, i: usize) {
    eventually(&format!("public {i}: mirror trusted"), DEADLINE, || async {
        mirror_state(stack, i).await == "trusted"
    })
    .await;
}

/// Every hot path through the mirror once: a toggle lands in the online set, a ping is recorded
/// there, the beacon counts the mitra, a blast offers it the chat.
async fn hot_paths_use_the_mirror(stack: &Stack, online_key: &str, members: impl AsyncMembers) {
    let mitra = stack.online_mitra().await;
    assert!(
        members.of(online_key).await.contains(&mitra.id.to_string()),
        "the toggle reached the mirror"
    );
    stack.heartbeat(&mitra).await.expect(200);
    let before = stack.public().metrics().await;
    members.del("availability:snapshot").await;
    assert_eq!(stack.beacon(0).await["count"], 1);
    let customer = stack.customer().await;
    stack.blast(&customer).await.expect(201);
    let requests = stack
        .app(Method::GET, "/api/mitra/chat/requests", &mitra.token, None)
        .await
        .expect(200);
    assert_eq!(requests["requests"].as_array().map(Vec::len), Some(1));
    let after = stack.public().metrics().await;
    assert_eq!(
        after.fallbacks("beacon") + after.fallbacks("offer_candidates"),
        before.fallbacks("beacon") + before.fallbacks("offer_candidates"),
        "answered from the mirror, not from Postgres"
    );
}

/// Reads a set from wherever the test's Valkey is (one server, or a cluster).
trait AsyncMembers {
    async fn of(&self, key: &str) -> Vec<String>;
    async fn del(&self, key: &str);
}

struct Direct<'a>(&'a ValkeyServer);

impl AsyncMembers for Direct<'_> {
    async fn of(&self, key: &str) -> Vec<String> {
        self.0
            .connection()
            .await
            .smembers(key)
            .await
            .expect("SMEMBERS")
    }
    async fn del(&self, key: &str) {
        let _: i64 = self.0.connection().await.del(key).await.expect("DEL");
    }
}

struct Cluster<'a>(&'a ValkeyCluster);

impl Cluster<'_> {
    async fn connection(&self) -> redis::cluster_async::ClusterConnection {
        let urls: Vec<String> = self.0.urls().split(',').map(str::to_owned).collect();
        redis::cluster::ClusterClient::new(urls)
            .expect("cluster client")
            .get_async_connection()
            .await
            .expect("cluster connection")
    }
}

impl AsyncMembers for Cluster<'_> {
    async fn of(&self, key: &str) -> Vec<String> {
        self.connection()
            .await
            .smembers(format!("{CLUSTER_PREFIX}{key}"))
            .await
            .expect("SMEMBERS")
    }
    async fn del(&self, key: &str) {
        let _: i64 = self
            .connection()
            .await
            .del(format!("{CLUSTER_PREFIX}{key}"))
            .await
            .expect("DEL");
    }
}

#[tokio::test]
async fn valkey_over_tls_with_a_private_ca_serves_the_hot_paths() {
    let valkey = ValkeyServer::start().await;
    let certs = TestCerts::make("IP:127.0.0.1").await;
    let tunnel = TlsTunnel::start(valkey.port(), &certs).await;
    let options = StackOptions::default().env("VALKEY_CA_CERT", certs.ca().display());
    let stack = Stack::with_valkey(options, valkey, &tunnel.rediss_url()).await;
    wait_trusted(&stack, 0).await;
    hot_paths_use_the_mirror(&stack, "mitras:online", Direct(&stack.valkey)).await;
    stack.wait_in_sync("no drift over TLS", DEADLINE).await;

    // An instance that does not trust the server's CA never talks to it in clear: it serves
    // from Postgres (degraded), and says why in its log.
    let doubting = stack
        .spawn_with(
            halo_acceptance::Kind::Public,
            &[("VALKEY_CA_CERT", &certs.other_ca().display().to_string())],
        )
        .await;
    let ready = stack
        .http
        .call(Method::GET, &doubting.url("/readyz"), None, None)
        .await
        .expect(200);
    assert_ne!(ready["mirror"], "trusted", "{ready}");
    let mitra = stack.online_mitra().await;
    let beat = stack
        .http
        .call(
            Method::POST,
            &doubting.url("/api/mitra/status/heartbeat"),
            Some(&mitra.token),
            None,
        )
        .await
        .expect(200);
    assert_eq!(beat["is_online"], true, "answered from Postgres");
}

#[tokio::test]
async fn the_product_runs_on_a_valkey_cluster() {
    let cluster = ValkeyCluster::start().await;
    let options = StackOptions::default()
        .publics(2)
        .env("VALKEY_CLUSTER", "true")
        .env("VALKEY_KEY_PREFIX", CLUSTER_PREFIX);
    let unused = ValkeyServer::start().await;
    let stack = Stack::with_valkey(options, unused, &cluster.urls()).await;
    wait_trusted(&stack, 0).await;
    wait_trusted(&stack, 1).await;
    hot_paths_use_the_mirror(&stack, "mitras:online", Cluster(&cluster)).await;
    stack
        .wait_in_sync("no drift on the cluster", DEADLINE)
        .await;

    // The sharded config channel reaches every instance.
    let mitra = stack.mitra().await;
    stack.set_config("max_customers_per_mitra", 7).await;
    for i in 0..2 {
        wait_max_customers_seen(&stack, i, &mitra, 7).await;
    }
    let subscribers: Vec<(String, i64)> = redis::cmd("PUBSUB")
        .arg("SHARDNUMSUB")
        .arg(format!("{CLUSTER_PREFIX}config:invalidate"))
        .query_async(&mut Cluster(&cluster).connection().await)
        .await
        .expect("PUBSUB SHARDNUMSUB");
    assert_eq!(subscribers[0].1, 3, "every instance subscribed");

    // A prefix without a hash tag is refused at start-up, saying why.
    let output = tokio::process::Command::new(&binaries().public_api)
        .env_clear()
        .envs(stack.env_vars().iter().map(|(k, v)| (k, v)))
        .env("VALKEY_KEY_PREFIX", "halo:")
        .output()
        .await
        .expect("run public-api");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("VALKEY_KEY_PREFIX") && stderr.contains("hash tag"),
        "{stderr}"
    );
}

/// Pings `mitras` through public `i` until `stop` is set; every answer must say online.
async fn keep_pinging(stack: &Stack, mitras: &[Mitra], until: tokio::time::Instant) -> usize {
    let mut answered = 0;
    while tokio::time::Instant::now() < until {
        for mitra in mitras {
            let reply = stack.heartbeat(mitra).await;
            // Requests caught in the switch may fail over to Postgres; none may say offline.
            assert_eq!(
                reply.expect(200)["is_online"],
                true,
                "a live mitra was answered offline"
            );
            answered += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    answered
}

#[tokio::test]
async fn a_cluster_failover_is_followed_and_reseeded() {
    let mut cluster = ValkeyCluster::start().await;
    let options = StackOptions::default()
        .env("VALKEY_CLUSTER", "true")
        .env("VALKEY_KEY_PREFIX", CLUSTER_PREFIX)
        .env("MITRA_AUTO_OFFLINE_SWEEP_SECONDS", 1);
    let unused = ValkeyServer::start().await;
    let stack = Stack::with_valkey(options, unused, &cluster.urls()).await;
    stack.set_config("heartbeat_interval_seconds", 5).await;
    stack.set_config("stale_after_seconds", 10).await;
    let pinging = [stack.online_mitra().await, stack.online_mitra().await];
    wait_trusted(&stack, 0).await;
    let seeds_before = stack.public().metrics().await.seeds("reconnect");

    let primary = cluster
        .primary_of(&format!("{CLUSTER_PREFIX}mirror:generation"))
        .await;
    let replica = cluster.replica_of(primary).await;
    cluster.node_mut(primary).kill().await;
    cluster.take_over(replica).await;
    // Longer than stale_after: a sweep that trusted a stale mirror would take them.
    keep_pinging(
        &stack,
        &pinging,
        tokio::time::Instant::now() + Duration::from_secs(12),
    )
    .await;
    eventually("reseeded after the failover", DEADLINE, || async {
        stack.public().metrics().await.seeds("reconnect") > seeds_before
    })
    .await;
    wait_trusted(&stack, 0).await;
    for mitra in &pinging {
        assert!(stack.pg_is_online(mitra.id).await);
    }
    stack
        .wait_in_sync("no drift after the failover", DEADLINE)
        .await;
}

/// A standalone primary with a replica, reached through an endpoint (the proxy) the way a
/// managed service's DNS name works. The replica is cut off first, so it misses the last writes
/// (a deactivation, a toggle): then the primary dies, the replica is promoted with its older
/// data and the endpoint flips to it. The instance notices the new primary, reseeds, and at no
/// point lets the deactivated mitra through or takes a pinging mitra offline.
#[tokio::test]
async fn a_promoted_replica_behind_a_flipped_endpoint_is_reseeded() {
    let primary = ValkeyServer::start().await;
    let replica = ValkeyServer::start().await;
    replica.replicate(&primary).await;
    let endpoint = PgProxy::start(&format!("127.0.0.1:{}", primary.port())).await;
    let options = StackOptions::default().env("MITRA_AUTO_OFFLINE_SWEEP_SECONDS", 1);
    let mut stack = Stack::with_valkey(options, primary, &endpoint.redis_url()).await;
    stack.set_config("heartbeat_interval_seconds", 5).await;
    stack.set_config("stale_after_seconds", 10).await;
    let pinging = [stack.online_mitra().await, stack.online_mitra().await];
    let deactivated = stack.online_mitra().await;
    let went_offline = stack.online_mitra().await;
    wait_trusted(&stack, 0).await;

    // The replica stops following: what the primary learns from now on, it never gets.
    replica.promote().await;
    stack.set_active(&deactivated, false).await.expect(200);
    stack.toggle(&went_offline, false).await.expect(200);
    assert!(Direct(&replica)
        .of("mitras:online")
        .await
        .contains(&went_offline.id.to_string()));

    stack.valkey.kill().await;
    endpoint.switch_to(&format!("127.0.0.1:{}", replica.port()));
    let until = tokio::time::Instant::now() + Duration::from_secs(12);
    while tokio::time::Instant::now() < until {
        for mitra in &pinging {
            assert_eq!(stack.heartbeat(mitra).await.expect(200)["is_online"], true);
        }
        let refused = stack.heartbeat(&deactivated).await;
        assert_eq!(
            refused.status, 403,
            "a deactivated mitra got through: {refused:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_trusted(&stack, 0).await;
    assert!(
        !Direct(&replica)
            .of("mitras:online")
            .await
            .contains(&went_offline.id.to_string()),
        "the reseed replaced the replica's older online set"
    );
    for mitra in &pinging {
        assert!(stack.pg_is_online(mitra.id).await);
    }
    stack
        .wait_in_sync("no drift after the failover", DEADLINE)
        .await;
}
