//! Building the connections: TCP_NODELAY on (off by default in redis 1.x), a TCP user timeout
//! so a black-holed peer is dropped, short connect timeouts, TLS (`rediss://`, with a private CA
//! from `VALKEY_CA_CERT`), standalone or cluster, and lazy connect so an instance starts
//! (degraded) while Valkey is down.

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::{
    Cmd, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisFuture, TlsCertificates, Value,
};
use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct ValkeySettings {
    /// `redis://` or `rediss://` (TLS); in cluster mode a comma-separated list of seed nodes
    /// (one configuration endpoint is enough: the client learns the others from it).
    pub url: String,
    pub key_prefix: String,
    /// Deadline of every call.
    pub timeout: Duration,
    /// The cluster protocol (`VALKEY_CLUSTER=true`): slots, redirects, sharded pub/sub.
    pub cluster: bool,
    /// A PEM file of the CA that signed the server's certificate (private CAs, as Memorystore
    /// uses); without it, `rediss://` trusts the system's roots.
    pub ca_cert: Option<PathBuf>,
}

/// Why no connection could even be set up (bad settings; an unreachable server is not this).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid VALKEY_URL: {0}")]
    InvalidUrl(#[source] redis::RedisError),
    #[error("cannot read VALKEY_CA_CERT {path}")]
    CaCert {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("VALKEY_CA_CERT is set but VALKEY_URL is not rediss:// (no TLS to verify)")]
    CaWithoutTls,
    #[error("cannot set up the valkey connection: {0}")]
    Setup(#[source] redis::RedisError),
}

/// One command connection, to a standalone server or a cluster.
#[derive(Clone)]
pub(crate) enum Conn {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Standalone(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Standalone(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Standalone(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}

/// What new connections are made from.
#[derive(Clone)]
enum Backend {
    Standalone {
        client: redis::Client,
        config: ConnectionManagerConfig,
    },
    Cluster {
        client: ClusterClient,
        config: ClusterConfig,
    },
}

impl Backend {
    /// A connection that connects on first use and reconnects by itself; needs a runtime.
    fn lazy_connection(&self) -> Result<Conn, redis::RedisError> {
        match self {
            Backend::Standalone { client, config } => {
                ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                    .map(Conn::Standalone)
            }
            Backend::Cluster { client, config } => Ok(Conn::Cluster(
                client.get_pending_async_connection_with_config(config.clone()),
            )),
        }
    }
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
    shared: Conn,
    backend: Backend,
    /// Tells this mirror's bound connections from another mirror's on the same thread.
    id: u64,
    /// Connections found dropped by the server, ever (see `note_drop`).
    drops: Arc<AtomicU64>,
}

/// A thread's own connection, and the drop count it was made after.
struct Bound {
    mirror: u64,
    after_drops: u64,
    conn: Conn,
}

thread_local! {
    /// The connections bound to this thread.
    static BOUND: RefCell<Vec<Bound>> = const { RefCell::new(Vec::new()) };
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

impl Connections {
    /// The connection for a command sent from this thread: its own (renewed if the server
    /// dropped a connection since it was made), or the shared one.
    pub(crate) fn current(&self) -> Conn {
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
    pub(crate) fn bind_to_current_thread(&self) {
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

    /// Counts a connection the server dropped (or a primary that changed): the bound
    /// connections of every thread renew themselves, and the mirror watcher reseeds (the
    /// server may have come back with old data).
    pub(crate) fn note_drop(&self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn drops(&self) -> u64 {
        self.drops.load(Ordering::Relaxed)
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.backend, Backend::Cluster { .. })
    }

    fn new_connection(&self) -> Option<Conn> {
        tokio::runtime::Handle::try_current().ok()?;
        self.backend
            .lazy_connection()
            .inspect_err(|error| {
                tracing::warn!(%error, "no own valkey connection for this thread; using the shared one");
            })
            .ok()
    }
}

/// Where the `config:invalidate` listener subscribes: its own connection, made fresh for each
/// subscription's life (see `pubsub`).
#[derive(Clone)]
pub struct Subscriber {
    pub(crate) target: SubscriberTarget,
}

#[derive(Clone)]
pub(crate) enum SubscriberTarget {
    Standalone(redis::Client),
    /// Built per subscription: the push sender that carries the messages is part of the
    /// client.
    Cluster(ClusterSpec),
}

/// Everything a cluster client is built from.
#[derive(Clone)]
pub(crate) struct ClusterSpec {
    nodes: Vec<ConnectionInfo>,
    certificates: Option<TlsCertificates>,
    tcp: TcpSettings,
    connect_timeout: Duration,
}

impl ClusterSpec {
    /// `resend`: whether a request may be sent again after a dropped connection or a redirect.
    /// Never for the mirror's commands — the server that answers the resend may be a promoted
    /// replica with older data, as after a standalone restart (see `ValkeyMirror::call_raw`):
    /// the call fails, the drop is counted and the watcher reseeds; the client still refreshes
    /// its slot map, so the next call reaches the new primary. The subscriber may: it only
    /// resubscribes.
    pub(crate) fn builder(&self, resend: bool) -> ClusterClientBuilder {
        let mut builder = ClusterClientBuilder::new(self.nodes.clone())
            .tcp_settings(self.tcp.clone())
            .connection_timeout(self.connect_timeout)
            .retries(if resend { 3 } else { 0 })
            .min_retry_wait(20)
            .max_retry_wait(200);
        if let Some(certificates) = &self.certificates {
            builder = builder.certs(certificates.clone());
        }
        builder
    }
}

/// The subscriber and the command connections.
pub fn connect(settings: &ValkeySettings) -> Result<(Subscriber, Connections), ConnectError> {
    let tcp = TcpSettings::default()
        .set_nodelay(true)
        .set_user_timeout(Duration::from_secs(5));
    let certificates = ca_certificates(settings)?;
    let connect_timeout = settings.timeout.max(Duration::from_millis(500));
    let nodes = node_infos(settings, &tcp)?;
    if certificates.is_some() && !nodes.iter().all(is_tls) {
        return Err(ConnectError::CaWithoutTls);
    }
    let (backend, target) = if settings.cluster {
        let spec = ClusterSpec {
            nodes,
            certificates,
            tcp,
            connect_timeout,
        };
        let client = spec
            .builder(false)
            .build()
            .map_err(ConnectError::InvalidUrl)?;
        // No response timeout in the driver: every call runs under the mirror's deadline.
        let config = ClusterConfig::new().set_connection_timeout(connect_timeout);
        (
            Backend::Cluster { client, config },
            SubscriberTarget::Cluster(spec),
        )
    } else {
        let info = nodes.into_iter().next().ok_or_else(|| {
            ConnectError::InvalidUrl(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "no URL",
            )))
        })?;
        let client = match certificates {
            Some(certificates) => redis::Client::build_with_tls(info, certificates),
            None => redis::Client::open(info),
        }
        .map_err(ConnectError::InvalidUrl)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            // Every call already runs under the mirror's own deadline (`ValkeyMirror::call`):
            // a second timer per command in the driver would only cost time on the hot paths.
            .set_response_timeout(None)
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        (
            Backend::Standalone {
                client: client.clone(),
                config,
            },
            SubscriberTarget::Standalone(client),
        )
    };
    let shared = backend.lazy_connection().map_err(ConnectError::Setup)?;
    let connections = Connections {
        shared,
        backend,
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        drops: Arc::new(AtomicU64::new(0)),
    };
    Ok((Subscriber { target }, connections))
}

/// The URL (standalone) or seed nodes (cluster: comma-separated), with our TCP settings.
fn node_infos(
    settings: &ValkeySettings,
    tcp: &TcpSettings,
) -> Result<Vec<ConnectionInfo>, ConnectError> {
    let urls: Vec<&str> = if settings.cluster {
        settings
            .url
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .collect()
    } else {
        vec![settings.url.as_str()]
    };
    urls.into_iter()
        .map(|url| {
            url.into_connection_info()
                .map(|info| info.set_tcp_settings(tcp.clone()))
                .map_err(ConnectError::InvalidUrl)
        })
        .collect()
}

fn is_tls(info: &ConnectionInfo) -> bool {
    matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. })
}

fn ca_certificates(settings: &ValkeySettings) -> Result<Option<TlsCertificates>, ConnectError> {
    let Some(path) = &settings.ca_cert else {
        return Ok(None);
    };
    let pem = std::fs::read(path).map_err(|source| ConnectError::CaCert {
        path: path.clone(),
        source,
    })?;
    // A DER file or the wrong file would give an empty trust store: every handshake would
    // then fail as "unknown issuer", far from the cause.
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(ConnectError::CaCert {
            path: path.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "no PEM certificate in the file",
            ),
        });
    }
    Ok(Some(TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    }))
}
