//! A real Valkey Cluster on loopback: three primaries and three replicas, each a
//! [`ValkeyServer`] started with `--cluster-enabled yes`, joined with `CLUSTER MEET`, slots
//! assigned with `CLUSTER ADDSLOTSRANGE`, replicas attached with `CLUSTER REPLICATE`. A test may
//! fail a shard over or kill a node.

use crate::valkey::ValkeyServer;
use redis::aio::MultiplexedConnection;
use std::time::Duration;

const SHARDS: usize = 3;
const SLOTS: [(u16, u16); SHARDS] = [(0, 5460), (5461, 10922), (10923, 16383)];
const FORM_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);
/// Short, so a killed primary is replaced within a few seconds.
const NODE_TIMEOUT_MS: &str = "1500";

/// Nodes `0..3` start as the primaries of the three slot ranges, `3..6` as their replicas
/// (node `3 + i` replicates node `i`); after a failover the roles swap.
pub struct ValkeyCluster {
    nodes: Vec<ValkeyServer>,
}

impl ValkeyCluster {
    /// Starts six nodes and waits until every one reports `cluster_state:ok` and each replica
    /// is in sync.
    ///
    /// # Panics
    ///
    /// When a node does not start or the cluster does not form within 30 s.
    pub async fn start() -> ValkeyCluster {
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            NODE_TIMEOUT_MS,
            // A replica takes over however long it was cut off (tests kill primaries at will).
            "--cluster-replica-validity-factor",
            "0",
        ];
        let mut nodes = Vec::new();
        for _ in 0..2 * SHARDS {
            nodes.push(ValkeyServer::start_with(&args).await);
        }
        let cluster = ValkeyCluster { nodes };
        cluster.form().await;
        cluster
    }

    async fn form(&self) {
        let mut first = self.nodes[0].connection().await;
        for node in &self.nodes[1..] {
            run(
                &mut first,
                redis::cmd("CLUSTER")
                    .arg("MEET")
                    .arg("127.0.0.1")
                    .arg(node.port()),
            )
            .await;
        }
        for (node, (from, to)) in self.nodes.iter().zip(SLOTS) {
            let mut conn = node.connection().await;
            run(
                &mut conn,
                redis::cmd("CLUSTER").arg("ADDSLOTSRANGE").arg(from).arg(to),
            )
            .await;
        }
        self.wait_until_all_know_each_other().await;
        for shard in 0..SHARDS {
            let primary_id = self.node_id(shard).await;
            let mut replica = self.nodes[SHARDS + shard].connection().await;
            run(
                &mut replica,
                redis::cmd("CLUSTER").arg("REPLICATE").arg(&primary_id),
            )
            .await;
        }
        self.wait_healthy().await;
    }

    /// Waits until every live node says `cluster_state:ok` and every replica's link is up.
    ///
    /// # Panics
    ///
    /// When that takes longer than 30 s.
    pub async fn wait_healthy(&self) {
        let deadline = tokio::time::Instant::now() + FORM_TIMEOUT;
        loop {
            if self.healthy().await {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the valkey cluster did not become healthy:\n{}",
                self.cluster_nodes().await
            );
            tokio::time::sleep(POLL).await;
        }
    }

    async fn healthy(&self) -> bool {
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            let Ok(mut conn) = node.try_connection().await else {
                return false;
            };
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            if !info.contains("cluster_state:ok") {
                return false;
            }
            let replication: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            if replication.contains("role:slave")
                && !(replication.contains("master_link_status:up")
                    && replication.contains("master_sync_in_progress:0"))
            {
                return false;
            }
        }
        let nodes = self.cluster_nodes().await;
        let replicas = nodes
            .lines()
            .filter(|l| l.contains("slave") && !l.contains("fail"))
            .count();
        let live = self.nodes.iter().filter(|n| n.is_running()).count();
        replicas == live - SHARDS
    }

    /// The seed list for `VALKEY_URL` (every node, comma-separated).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(ValkeyServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i` (see the type's doc for the layout).
    pub fn node(&self, i: usize) -> &ValkeyServer {
        &self.nodes[i]
    }

    pub fn node_mut(&mut self, i: usize) -> &mut ValkeyServer {
        &mut self.nodes[i]
    }

    /// The index of the node that is the primary serving `key` now.
    ///
    /// # Panics
    ///
    /// When no live node claims the key's slot.
    pub async fn primary_of(&self, key: &str) -> usize {
        let slot = self.slot_of(key).await;
        let nodes = self.cluster_nodes().await;
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let (from, to) = range.split_once('-').unwrap_or((range, range));
                matches!((from.parse::<u16>(), to.parse::<u16>()), (Ok(f), Ok(t)) if f <= slot && slot <= t)
            });
            let port = fields[1]
                .split(['@', ':'])
                .nth(1)
                .and_then(|p| p.parse::<u16>().ok());
            if serves {
                if let Some(i) = self.nodes.iter().position(|n| Some(n.port()) == port) {
                    return i;
                }
            }
        }
        panic!("no primary serves slot {slot} of {key:?}:\n{nodes}");
    }

    /// The index of a live replica of the primary at `primary`.
    ///
    /// # Panics
    ///
    /// When it has none.
    pub async fn replica_of(&self, primary: usize) -> usize {
        let primary_id = self.node_id(primary).await;
        let nodes = self.cluster_nodes().await;
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() >= 4 && fields[2].contains("slave") && fields[3] == primary_id {
                let port = fields[1]
                    .split(['@', ':'])
                    .nth(1)
                    .and_then(|p| p.parse::<u16>().ok());
                if let Some(i) = self.nodes.iter().position(|n| Some(n.port()) == port) {
                    return i;
                }
            }
        }
        panic!("node {primary} has no replica:\n{nodes}");
    }

    /// `CLUSTER FAILOVER TAKEOVER` on `replica`: it becomes the primary at once, with whatever
    /// it had replicated (the old primary may be dead). Waits until the cluster is healthy
    /// again, the killed node aside.
    ///
    /// # Panics
    ///
    /// When the node refuses, or the cluster does not recover within 30 s.
    pub async fn take_over(&self, replica: usize) {
        let mut conn = self.nodes[replica].connection().await;
        run(
            &mut conn,
            redis::cmd("CLUSTER").arg("FAILOVER").arg("TAKEOVER"),
        )
        .await;
        let deadline = tokio::time::Instant::now() + FORM_TIMEOUT;
        loop {
            let role: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            let ok: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            if role.contains("role:master") && ok.contains("cluster_state:ok") {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {replica} did not take over:\n{}",
                self.cluster_nodes().await
            );
            tokio::time::sleep(POLL).await;
        }
    }

    async fn slot_of(&self, key: &str) -> u16 {
        let mut conn = self.any_live().await;
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|err| panic!("CLUSTER KEYSLOT failed: {err}"))
    }

    async fn node_id(&self, i: usize) -> String {
        let mut conn = self.nodes[i].connection().await;
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|err| panic!("CLUSTER MYID failed: {err}"))
    }

    /// `CLUSTER NODES` as a live node sees it.
    pub async fn cluster_nodes(&self) -> String {
        let mut conn = self.any_live().await;
        redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|err| format!("CLUSTER NODES failed: {err}"))
    }

    async fn any_live(&self) -> MultiplexedConnection {
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            if let Ok(conn) = node.try_connection().await {
                return conn;
            }
        }
        panic!("no cluster node answers");
    }

    /// Gossip takes a moment: `CLUSTER REPLICATE` on a node that has not heard of the primary
    /// yet fails with "Unknown node".
    async fn wait_until_all_know_each_other(&self) {
        let deadline = tokio::time::Instant::now() + FORM_TIMEOUT;
        'poll: loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the valkey cluster nodes never all met:\n{}",
                self.cluster_nodes().await
            );
            tokio::time::sleep(POLL).await;
            for node in &self.nodes {
                let mut conn = node.connection().await;
                let nodes: String = redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_default();
                let known = nodes.lines().filter(|l| !l.trim().is_empty()).count();
                if known < 2 * SHARDS || nodes.contains("handshake") || nodes.contains("noaddr") {
                    continue 'poll;
                }
            }
            return;
        }
    }
}

async fn run(conn: &mut MultiplexedConnection, cmd: &mut redis::Cmd) {
    let reply: redis::RedisResult<redis::Value> = cmd.query_async(conn).await;
    if let Err(err) = reply {
        panic!(
            "{:?} failed: {err}",
            String::from_utf8_lossy(&cmd.get_packed_command())
        );
    }
}
