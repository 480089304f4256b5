//! One service process: started with an explicit environment (nothing inherited), its JSON logs
//! in a file the test reads events from, killed when dropped.

use crate::binaries::binaries;
use crate::http::Http;
use crate::metrics::MetricsText;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::process::{Child, Command};

/// How long a starting service gets to answer `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(25);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Public,
    Internal,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Public => "public-api",
            Self::Internal => "internal-api",
        }
    }

    fn port_variable(self) -> &'static str {
        match self {
            Self::Public => "PUBLIC_PORT",
            Self::Internal => "INTERNAL_PORT",
        }
    }

    fn binary(self) -> &'static Path {
        match self {
            Self::Public => &binaries().public_api,
            Self::Internal => &binaries().internal_api,
        }
    }
}

/// A running `public-api` or `internal-api` on `127.0.0.1:<port>`.
pub struct Instance {
    pub kind: Kind,
    pub port: u16,
    child: Option<Child>,
    log: PathBuf,
    http: Http,
}

impl Instance {
    /// Starts the service with `env` on a free port and waits until `/healthz` answers. A lost
    /// race for the port (another process bound it first) is retried on a new port.
    ///
    /// # Panics
    ///
    /// When the process exits for another reason or does not answer in time.
    pub async fn start(kind: Kind, env: &[(String, String)], log_dir: &Path) -> Instance {
        for attempt in 0..5 {
            let port = free_port();
            let log = log_dir.join(format!("{}-{port}-{attempt}.log", kind.name()));
            let child = spawn(kind, port, env, &log);
            let mut instance = Instance {
                kind,
                port,
                child: Some(child),
                log,
                http: Http::default(),
            };
            if instance.wait_healthy().await {
                return instance;
            }
            if !instance.log_text().contains("Address already in use") {
                panic!(
                    "{} exited during start-up:\n{}",
                    kind.name(),
                    instance.log_tail()
                );
            }
        }
        panic!("{} could not bind a port after 5 tries", kind.name())
    }

    /// True once `/healthz` answers; false when the process exited first.
    async fn wait_healthy(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let url = self.url("/healthz");
        loop {
            if self.exited() {
                return false;
            }
            // Another process may hold the port we picked (and answer): ours has bound it
            // only once it logged that it listens.
            if self.http.answers(&url).await && self.log_text().contains("\"listening\"") {
                return true;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} did not answer within {START_TIMEOUT:?}:\n{}",
                self.kind.name(),
                self.log_tail()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// SIGKILL: the process dies mid-flight, as on a crash.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// SIGTERM and wait: the graceful stop a deploy does.
    ///
    /// # Panics
    ///
    /// When the process does not stop within 30 seconds.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let stopped = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
        assert!(stopped.is_ok(), "{} ignored SIGTERM", self.kind.name());
    }

    /// The names of this process's threads (Linux: `/proc/<pid>/task/*/comm`, 15 characters
    /// at most); empty once it exited.
    pub fn thread_names(&self) -> Vec<String> {
        let Some(pid) = self.child.as_ref().and_then(Child::id) else {
            return Vec::new();
        };
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return Vec::new();
        };
        tasks
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim_end().to_owned())
            .collect()
    }

    /// The current `/metrics` of this process (public-api: its admin listener).
    pub async fn metrics(&self) -> MetricsText {
        let url = format!(
            "http://127.0.0.1:{}/metrics",
            metrics_port(self.kind, self.port)
        );
        MetricsText(self.http.text(&url).await)
    }

    /// Every JSON log line of this process whose `event` field is `event` (e.g. `mirror.seed`).
    pub fn events(&self, event: &str) -> Vec<Value> {
        self.log_text()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line["event"] == event)
            .collect()
    }

    /// Whether the log shows `op` falling back to Postgres: a `mirror.fallback` event of the
    /// call that failed, or (when the watcher noticed the outage first and the breaker was
    /// already open, so no call failed) the one `mirror.state` event that opened it.
    pub fn logged_fallback(&self, op: &str) -> bool {
        self.events("mirror.fallback").iter().any(|e| e["op"] == op)
            || self
                .events("mirror.state")
                .iter()
                .any(|e| e["to"] == "down" || e["to"] == "unseeded")
    }

    /// Every JSON log line of this process.
    pub fn log_lines(&self) -> Vec<Value> {
        self.log_text()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .collect()
    }

    /// True when some log line contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.log_text().contains(needle)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

fn spawn(kind: Kind, port: u16, env: &[(String, String)], log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("create log file");
    let err = out.try_clone().expect("clone log file");
    Command::new(kind.binary())
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env(kind.port_variable(), port.to_string())
        // public-api's /metrics listener; internal-api serves them on its own port.
        .env("METRICS_PORT", metrics_port(kind, port).to_string())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", kind.binary().display()))
}

/// public-api's metrics listener: a port derived from its service port, so a retry on a new
/// port moves both (a clash shows as "Address already in use" like the service port's).
fn metrics_port(kind: Kind, port: u16) -> u16 {
    match kind {
        Kind::Public => port.wrapping_add(1).max(1024),
        Kind::Internal => port,
    }
}

/// Runs `kind` with `args` (e.g. `migrate`) and `env` (nothing inherited) until it exits.
///
/// # Panics
///
/// When it cannot be started or is still running after a minute.
pub async fn run_to_exit(kind: Kind, args: &[&str], env: &[(String, String)]) -> Output {
    let run = Command::new(kind.binary())
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env(kind.port_variable(), free_port().to_string())
        .env("METRICS_PORT", free_port().to_string())
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .unwrap_or_else(|_| panic!("{} {args:?} did not exit within a minute", kind.name()))
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", kind.binary().display()))
}

/// A loopback port nobody listens on right now (the service may still lose a race for it,
/// which [`Instance::start`] retries).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("free loopback port")
}
