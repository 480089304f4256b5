//! Building the connection: TCP_NODELAY on (off by default in redis 1.x), a TCP user timeout
//! so a black-holed peer is dropped, short connect/response timeouts, and lazy connect so an
//! instance starts (degraded) while Valkey is down.

use halo_ports::MirrorError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::TcpSettings;
use redis::IntoConnectionInfo;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ValkeySettings {
    pub url: String,
    pub key_prefix: String,
    /// Deadline of every call.
    pub timeout: Duration,
}

/// The command connections of one mirror: a shared self-reconnecting multiplexed connection,
/// plus one per thread that asked for its own (`bind_to_current_thread`).
///
/// Why per thread: a multiplexed connection is driven by a task on the runtime that first used
/// it. Used from another thread, every command is two cross-thread wake-ups (request to the
/// driver, reply back), which profiling showed to be about a third of the service's CPU in a
/// heartbeat flood. An actix worker is a single-threaded runtime for its whole life, so a
/// connection bound to it is driven on the same thread that sends the commands.
///
/// When any of them finds the server gone (a restart, a failover), the others are stale too:
/// `note_drop` counts it, and each thread replaces its bound connection before its next
/// command instead of failing that command on the dead socket.
#[derive(Clone)]
pub struct Connections {
    shared: ConnectionManager,
    client: redis::Client,
    config: ConnectionManagerConfig,
    /// Tells this mirror's bound connections from another mirror's on the same thread.
    id: u64,
    /// Connections found dropped by the server, ever (see `note_drop`).
    drops: Arc<AtomicU64>,
}

/// A thread's own connection, and the drop count it was made after.
struct Bound {
    mirror: u64,
    after_drops: u64,
    conn: ConnectionManager,
}

thread_local! {
    /// The connections bound to this thread.
    static BOUND: RefCell<Vec<Bound>> = const { RefCell::new(Vec::new()) };
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

impl Connections {
    /// The connection for a command sent from this thread: its own (renewed if the server
    /// dropped a connection since it was made), or the shared one.
    pub(crate) fn current(&self) -> ConnectionManager {
        let drops = self.drops();
        let own = BOUND.try_with(|bound| {
            let mut bound = bound.borrow_mut();
            let entry = bound.iter_mut().find(|b| b.mirror == self.id)?;
            if entry.after_drops != drops {
                if let Some(fresh) = self.new_connection() {
                    *entry = Bound {
                        mirror: self.id,
                        after_drops: drops,
                        conn: fresh,
                    };
                }
            }
            Some(entry.conn.clone())
        });
        own.ok().flatten().unwrap_or_else(|| self.shared.clone())
    }

    /// Gives the calling thread its own connection (connected on first use, reconnecting by
    /// itself like the shared one), replacing one it had. Call it only on a thread that runs
    /// one Tokio runtime for its whole life (an actix worker): the connection's tasks live on
    /// that runtime. Without a runtime here, the thread keeps using the shared connection.
    pub fn bind_to_current_thread(&self) {
        let Some(conn) = self.new_connection() else {
            return;
        };
        let entry = Bound {
            mirror: self.id,
            after_drops: self.drops(),
            conn,
        };
        let _ = BOUND.try_with(|bound| {
            let mut bound = bound.borrow_mut();
            bound.retain(|b| b.mirror != self.id);
            bound.push(entry);
        });
    }

    /// Counts a connection the server dropped: the bound connections of every thread renew
    /// themselves, and the mirror watcher reseeds (the server may have come back with old data).
    pub(crate) fn note_drop(&self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn drops(&self) -> u64 {
        self.drops.load(Ordering::Relaxed)
    }

    fn new_connection(&self) -> Option<ConnectionManager> {
        tokio::runtime::Handle::try_current().ok()?;
        ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())
            .inspect_err(|error| {
                tracing::warn!(%error, "no own valkey connection for this thread; using the shared one");
            })
            .ok()
    }
}

/// The client (for pub/sub connections) and the command connections.
pub fn connect(settings: &ValkeySettings) -> Result<(redis::Client, Connections), MirrorError> {
    let info = settings
        .url
        .as_str()
        .into_connection_info()
        .map_err(|e| MirrorError::Corrupt(format!("invalid VALKEY_URL: {e}")))?;
    let tcp = TcpSettings::default()
        .set_nodelay(true)
        .set_user_timeout(Duration::from_secs(5));
    let client = redis::Client::open(info.set_tcp_settings(tcp))
        .map_err(|e| MirrorError::Corrupt(format!("invalid VALKEY_URL: {e}")))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(settings.timeout.max(Duration::from_millis(500))))
        // Every call already runs under the mirror's own deadline (`ValkeyMirror::call`): a
        // second timer per command in the driver would only cost time on the hot paths.
        .set_response_timeout(None)
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    let shared = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
        .map_err(|e| MirrorError::Unavailable(Box::new(e)))?;
    let connections = Connections {
        shared,
        client: client.clone(),
        config,
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        drops: Arc::new(AtomicU64::new(0)),
    };
    Ok((client, connections))
}
