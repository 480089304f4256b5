//! A Postgres server of a test's own, for tests that change the server itself (TLS settings,
//! `pg_hba.conf`, streaming replication, kill and promote) and so cannot use the shared test
//! cluster: `initdb` into a temp dir, start with chosen settings on a free loopback port, stop,
//! kill (`-m immediate`), promote, a standby made with `pg_basebackup -R`.
//!
//! Postgres refuses to run as root: when the tests run as root (CI), every server program runs
//! as the `postgres` system user through `runuser -u postgres --` from `/`, and the server's
//! directory is handed to that user, as `scripts/lib.sh` does for the shared cluster.
//! The binaries come from `PG_BIN` or the newest `/usr/lib/postgresql/<version>/bin`.
//!
//! Dropping a server kills it (`-m immediate`) and deletes its directory.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::process::Command;

/// Superuser of every server made here (trust authentication on loopback).
pub const PG_SERVER_USER: &str = "halo";

/// How often a start is retried when another process took the port first.
const START_ATTEMPTS: u32 = 5;

/// A Postgres server in a directory of its own; see the module docs.
#[derive(Debug)]
pub struct PgServer {
    /// `<tmp>/halo-pg-<id>`: the data dir, the log and the socket live here (a short path, so
    /// the socket path stays within the kernel's limit).
    root: PathBuf,
    port: u16,
    settings: Vec<(String, String)>,
    running: bool,
}

impl PgServer {
    /// `initdb` (superuser [`PG_SERVER_USER`], trust authentication, UTF8, C locale) into a
    /// fresh directory; not started yet.
    ///
    /// # Panics
    ///
    /// When the directory cannot be made or `initdb` fails.
    pub async fn init() -> PgServer {
        let server = PgServer::empty().await;
        let data = server.data_dir();
        run_pg(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                PG_SERVER_USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )
        .await;
        server
    }

    /// A streaming standby of `primary` (which must be running): `pg_basebackup -R -X stream`
    /// from it, so the copy starts in recovery and follows the primary. Its `cluster_name`
    /// (and so the `application_name` its WAL receiver reports to the primary, which
    /// `synchronous_standby_names` matches) is `name`. Not started yet.
    ///
    /// # Panics
    ///
    /// When the base backup fails.
    pub async fn standby_of(primary: &PgServer, name: &str) -> PgServer {
        assert!(primary.running, "the primary must run for a base backup");
        let mut standby = PgServer::empty().await;
        let port = primary.port.to_string();
        run_pg(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                PG_SERVER_USER,
                "-D",
                path_str(&standby.data_dir()),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ],
        )
        .await;
        standby.set("cluster_name", &format!("'{name}'"));
        standby
    }

    async fn empty() -> PgServer {
        let root = std::env::temp_dir().join(format!(
            "halo-pg-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ));
        std::fs::create_dir_all(&root)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", root.display()));
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))
            .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", root.display()));
        give_to_postgres(&root).await;
        PgServer {
            root,
            port: 0,
            settings: Vec::new(),
            running: false,
        }
    }

    /// Sets `name = value` in the server's configuration (`value` as written in
    /// `postgresql.conf`, strings quoted: `"'on'"` or `"on"`, `"'server.crt'"`), applied at the
    /// next [`start`](Self::start).
    pub fn set(&mut self, name: &str, value: &str) -> &mut Self {
        self.settings.retain(|(n, _)| n != name);
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Writes `contents` to `name` inside the data directory with `mode`, owned by the server
    /// user (for `server.key`, which Postgres accepts only as `0600` of its own user).
    ///
    /// # Panics
    ///
    /// When the file cannot be written.
    pub async fn install_file(&self, name: &str, contents: &[u8], mode: u32) {
        let path = self.data_dir().join(name);
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
        give_to_postgres(&path).await;
    }

    /// Replaces `pg_hba.conf` (applied at the next start).
    pub async fn write_hba(&self, contents: &str) {
        self.install_file("pg_hba.conf", contents.as_bytes(), 0o600)
            .await;
    }

    /// Starts the server on a free loopback port (a new one on every start) and waits until it
    /// accepts connections.
    ///
    /// # Panics
    ///
    /// When it does not start (the log's tail is in the message).
    pub async fn start(&mut self) {
        assert!(!self.running, "already running");
        for _ in 0..START_ATTEMPTS {
            self.port = free_port();
            self.write_settings().await;
            let started = pg_ctl(&[
                "-D",
                path_str(&self.data_dir()),
                "-l",
                path_str(&self.log_path()),
                "-w",
                "-t",
                "60",
                "start",
            ])
            .await;
            if started {
                self.running = true;
                return;
            }
            if !self.log().contains("could not bind") {
                break;
            }
        }
        panic!(
            "postgres in {} did not start:\n{}",
            self.root.display(),
            self.log_tail(30)
        );
    }

    /// A fast shutdown (open sessions are ended, committed data kept), waiting for it.
    pub async fn stop(&mut self) {
        self.stop_with("fast").await;
    }

    /// `pg_ctl stop -m immediate`: the server dies as on a crash, no checkpoint, no goodbye to
    /// its clients; committed data survives in the WAL (as long as `synchronous_commit` was on).
    pub async fn kill(&mut self) {
        self.stop_with("immediate").await;
    }

    async fn stop_with(&mut self, mode: &str) {
        if self.running {
            pg_ctl(&["-D", path_str(&self.data_dir()), "-m", mode, "-w", "stop"]).await;
            self.running = false;
        }
    }

    /// `pg_ctl promote -w`: a standby leaves recovery and accepts writes.
    ///
    /// # Panics
    ///
    /// When the promotion fails or does not finish within a minute.
    pub async fn promote(&self) {
        let promoted = pg_ctl(&[
            "-D",
            path_str(&self.data_dir()),
            "-w",
            "-t",
            "60",
            "promote",
        ])
        .await;
        assert!(promoted, "promotion failed:\n{}", self.log_tail(30));
    }

    /// `127.0.0.1:<port>`.
    pub fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://halo@127.0.0.1:<port>/<database>`, with `params` (`sslmode=…`) when not empty.
    pub fn url(&self, database: &str, params: &str) -> String {
        let mut url = format!(
            "postgres://{PG_SERVER_USER}@127.0.0.1:{}/{database}",
            self.port
        );
        if !params.is_empty() {
            url.push('?');
            url.push_str(params);
        }
        url
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    pub fn is_running(&self) -> bool {
        self.running
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn log_path(&self) -> PathBuf {
        self.root.join("postgres.log")
    }

    /// Our settings live in `halo.conf`, rewritten on every start and included once, as
    /// `scripts/lib.sh` does. `fsync` is off (the tests kill processes, not machines: a killed
    /// server loses nothing it wrote); `synchronous_commit` stays on, so a commit is in the WAL
    /// before it is acknowledged and survives `-m immediate`.
    async fn write_settings(&self) {
        let mut conf = format!(
            "# written by halo-testkit\nlisten_addresses = '127.0.0.1'\nport = {}\n\
             unix_socket_directories = '{}'\nfsync = off\nmax_connections = 100\n",
            self.port,
            self.root.display()
        );
        for (name, value) in &self.settings {
            conf.push_str(&format!("{name} = {value}\n"));
        }
        self.install_file("halo.conf", conf.as_bytes(), 0o600).await;
        let main = self.data_dir().join("postgresql.conf");
        let text = std::fs::read_to_string(&main)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", main.display()));
        let include = "include_if_exists = 'halo.conf'";
        if !text.lines().any(|line| line == include) {
            std::fs::write(&main, format!("{text}\n{include}\n"))
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", main.display()));
        }
    }
}

impl Drop for PgServer {
    /// Kills the server (no waiting for clients) and removes its directory.
    fn drop(&mut self) {
        if self.running {
            let mut command = pg_command_std(
                &pg_bin().join("pg_ctl"),
                &[
                    "-D",
                    path_str(&self.data_dir()),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            );
            if let Err(err) = command.output() {
                eprintln!(
                    "halo-testkit: cannot stop postgres in {}: {err}",
                    self.root.display()
                );
            }
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        } else {
            eprintln!(
                "halo-testkit: postgres files kept in {}",
                self.root.display()
            );
        }
    }
}

/// True when this process runs as root (the owner of `/proc/self` is the effective user).
fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// The Postgres server programs: `PG_BIN`, or the newest `/usr/lib/postgresql/<v>/bin`.
fn pg_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .unwrap_or_else(|| panic!("no Postgres under /usr/lib/postgresql/*/bin (set PG_BIN)"))
}

fn pg_command(program: &Path, args: &[&str]) -> Command {
    Command::from(pg_command_std(program, args))
}

/// The program as the `postgres` user when we are root, from `/` (which that user may enter).
fn pg_command_std(program: &Path, args: &[&str]) -> std::process::Command {
    let mut command = if is_root() {
        let mut command = std::process::Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        std::process::Command::new(program)
    };
    command.args(args).current_dir("/");
    command
}

/// Runs a server program; panics with its output when it fails.
async fn run_pg(program: &str, args: &[&str]) {
    let path = pg_bin().join(program);
    let output = pg_command(&path, args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    assert!(
        output.status.success(),
        "{program} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `pg_ctl …`; whether it succeeded.
async fn pg_ctl(args: &[&str]) -> bool {
    let path = pg_bin().join("pg_ctl");
    pg_command(&path, args)
        .output()
        .await
        .is_ok_and(|output| output.status.success())
}

/// Hands `path` to the `postgres` user when we are root (the server must own its files).
async fn give_to_postgres(path: &Path) {
    if !is_root() {
        return;
    }
    let status = Command::new("chown")
        .arg("postgres:")
        .arg(path)
        .status()
        .await
        .unwrap_or_else(|e| panic!("cannot run chown: {e}"));
    assert!(status.success(), "chown postgres {} failed", path.display());
}

fn path_str(path: &Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| panic!("{} is not UTF-8", path.display()))
}

/// A loopback port nobody listens on right now (a start that loses a race for it retries).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}
