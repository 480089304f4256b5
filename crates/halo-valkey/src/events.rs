//! `EventSignal` over pub/sub: one `PUBLISH` (`SPUBLISH` on a cluster, the sharded channel the
//! subscription listens on, see `pubsub`) on the events channel after a commit that appended
//! app events. The message carries nothing: receivers read the log from Postgres.

use crate::connection::Connections;
use crate::keys::Keys;
use async_trait::async_trait;
use halo_metrics::Metrics;
use halo_ports::{EventSignal, MirrorError};
use std::time::Duration;
use tracing::Instrument;

pub struct ValkeyEventSignal {
    conn: Connections,
    channel: String,
    timeout: Duration,
    metrics: Metrics,
}

impl ValkeyEventSignal {
    pub fn new(conn: Connections, keys: &Keys, timeout: Duration, metrics: Metrics) -> Self {
        Self {
            conn,
            channel: keys.events_channel(),
            timeout,
            metrics,
        }
    }
}

#[async_trait]
impl EventSignal for ValkeyEventSignal {
    /// Sent once, never again (like every call of this crate); a dropped connection is
    /// counted so the other connections renew themselves.
    async fn announce(&self) -> Result<(), MirrorError> {
        const OP: &str = "announce_events";
        let command = if self.conn.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        };
        let request = redis::cmd(command).arg(&self.channel).arg("1").to_owned();
        let mut conn = self.conn.current();
        self.metrics.valkey_round_trip(OP);
        let started = std::time::Instant::now();
        let reply = tokio::time::timeout(self.timeout, request.query_async::<()>(&mut conn))
            .instrument(tracing::debug_span!("valkey", op = OP))
            .await;
        self.metrics.valkey_call_took(OP, started.elapsed());
        match reply {
            Err(_) => Err(MirrorError::Unavailable(
                format!("valkey {OP} timed out after {:?}", self.timeout).into(),
            )),
            Ok(Err(error)) => {
                if error.is_connection_dropped() && !error.is_connection_refusal() {
                    self.conn.note_drop();
                }
                Err(MirrorError::Unavailable(Box::new(error)))
            }
            Ok(Ok(())) => Ok(()),
        }
    }
}
