//! A TCP proxy in front of the shared test Postgres that a test can cut and restore: a Postgres
//! outage for the services behind it, without stopping the cluster other tests use.
//!
//! Cut: every open connection is dropped and new ones are accepted and closed at once (the
//! services see refused logins, as when Postgres is down). Restore: forwarding resumes on the
//! same port. Switch: the endpoint flips to another server (a managed store's failover, e.g.
//! the DNS flip to a promoted Postgres standby): open connections drop, new ones go there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct PgProxy {
    port: u16,
    shared: Arc<Shared>,
    accept: AbortHandle,
}

struct Shared {
    upstream: Mutex<String>,
    up: AtomicBool,
    links: Mutex<Vec<AbortHandle>>,
}

impl PgProxy {
    /// Listens on a free loopback port, forwarding to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> PgProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream.to_owned()),
            up: AtomicBool::new(true),
            links: Mutex::new(Vec::new()),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone())).abort_handle();
        PgProxy {
            port,
            shared,
            accept,
        }
    }

    /// `database_url` with its `host:port` replaced by this proxy.
    pub fn url_for(&self, database_url: &str) -> String {
        let (scheme, rest) = database_url.split_once("://").expect("url scheme");
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let user = authority.rsplit_once('@').map(|(user, _)| user);
        let host = format!("127.0.0.1:{}", self.port);
        match user {
            Some(user) => format!("{scheme}://{user}@{host}/{path}"),
            None => format!("{scheme}://{host}/{path}"),
        }
    }

    /// Postgres "goes down": open connections drop, new ones are refused.
    pub fn cut(&self) {
        self.shared.up.store(false, Ordering::SeqCst);
        for link in self.shared.links.lock().expect("links").drain(..) {
            link.abort();
        }
    }

    /// Postgres "comes back".
    pub fn restore(&self) {
        self.shared.up.store(true, Ordering::SeqCst);
    }

    /// The endpoint flips to another server (a managed store's failover: same address, new
    /// primary behind it): open connections drop, new ones reach `upstream` (`host:port`).
    pub fn switch_to(&self, upstream: &str) {
        *self.shared.upstream.lock().expect("upstream") = upstream.to_owned();
        self.cut();
        self.restore();
    }

    /// `redis://127.0.0.1:<port>/` of this proxy (when it fronts Valkey).
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// `host:port` of a `postgres://user@host:port/db` URL.
pub(crate) fn authority(database_url: &str) -> String {
    let rest = database_url
        .split_once("://")
        .map_or(database_url, |(_, r)| r);
    let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
        .to_owned()
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((client, _)) = listener.accept().await {
        if !shared.up.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let upstream = shared.upstream.lock().expect("upstream").clone();
        let link = tokio::spawn(forward(client, upstream));
        let mut links = shared.links.lock().expect("links");
        links.retain(|link| !link.is_finished());
        links.push(link.abort_handle());
    }
}

async fn forward(mut client: TcpStream, upstream: String) {
    if let Ok(mut server) = TcpStream::connect(&upstream).await {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }
}
