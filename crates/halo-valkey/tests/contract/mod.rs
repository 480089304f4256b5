//! The mirror contract (`halo_fakes::contract`, which `InMemoryMirror` passes too) against a
//! real valkey-server, one server per case.

use async_trait::async_trait;
use halo_domain::MitraId;
use halo_fakes::contract::Backdoor;
use halo_metrics::Metrics;
use halo_testkit::ValkeyServer;
use halo_valkey::ValkeyMirror;
use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;
use std::time::Duration;
use time::OffsetDateTime;

/// The server, and a connection that goes around the adapter (no key prefix).
pub struct Raw {
    _server: ValkeyServer,
    conn: MultiplexedConnection,
}

/// A timestamp in the adapter's stored form (`2026-12-01T10:00:00.000000Z`).
fn stored(at: OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    at.to_offset(time::UtcOffset::UTC).format(&format).unwrap()
}

#[async_trait]
impl Backdoor for Raw {
    async fn put_heartbeat(&self, id: MitraId, at: Option<OffsetDateTime>) {
        let key = format!("mitra:heartbeat:{id}");
        let mut conn = self.conn.clone();
        let () = match at {
            Some(at) => conn.set(key, stored(at)).await.unwrap(),
            None => conn.del(key).await.unwrap(),
        };
    }

    async fn put_beacon_lock(&self, owner: &str) {
        let mut conn = self.conn.clone();
        let () = conn.set("availability:snapshot:lock", owner).await.unwrap();
    }

    async fn flush(&self) {
        let () = redis::cmd("FLUSHALL")
            .query_async(&mut self.conn.clone())
            .await
            .unwrap();
    }

    async fn let_time_pass(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }
}

pub async fn valkey() -> (ValkeyMirror, Raw) {
    valkey_counted(Metrics::new()).await
}

pub async fn valkey_counted(metrics: Metrics) -> (ValkeyMirror, Raw) {
    let server = ValkeyServer::start().await;
    let mirror = super::mirror_counted(&server, "", metrics);
    let conn = server.connection().await;
    (
        mirror,
        Raw {
            _server: server,
            conn,
        },
    )
}

halo_fakes::mirror_contract!(valkey);
