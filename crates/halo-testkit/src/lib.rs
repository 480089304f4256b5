//! The test harness shared by every crate's tests: a fresh, migrated Postgres database per test
//! ([`test_database`]), throwaway `valkey-server` processes a test may kill, restart or pause
//! ([`ValkeyServer`]), and deadline-bounded polling instead of fixed sleeps ([`eventually`]).
//!
//! The Postgres server is started once per run by `scripts/test.sh` (or by hand with
//! `scripts/lib.sh`'s `start_postgres`); its admin URL comes from `HALO_TEST_DATABASE_URL`.
//! Valkey servers are started by the tests themselves, from `VALKEY_SERVER_BIN`. A test that
//! changes the server itself (TLS, `pg_hba.conf`, replication, a kill) starts a [`PgServer`] of
//! its own; [`TestCerts`] makes the certificates for the TLS ones.
//!
//! Each test database is dropped when its [`TestDatabase`] is dropped (also when the test
//! panics); only a killed test process leaves `halo_test_*` databases behind. Templates
//! (`halo_tpl_<hash>`, one per version of `migrations/`) stay on the server for later runs; they
//! are marked `IS_TEMPLATE` and refuse connections, so removing one by hand takes
//! `ALTER DATABASE … IS_TEMPLATE false` first. Deleting `.data/test` resets everything.
//!
//! Everything here runs only in tests, so setup failures panic with a message saying what to do.

mod certs;
mod pg_server;
mod postgres;
mod tls;
mod valkey;
mod valkey_cluster;

pub use certs::TestCerts;
pub use pg_server::{PgServer, PG_SERVER_USER};
pub use postgres::{admin_url, connect, test_database, TestDatabase, DEFAULT_ADMIN_URL};
pub use tls::TlsTunnel;
pub use valkey::ValkeyServer;
pub use valkey_cluster::ValkeyCluster;

use std::future::Future;
use std::time::Duration;

/// How often [`eventually`] re-checks its condition.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Polls `check` every 25 ms until it returns `true`.
///
/// # Panics
///
/// When `check` is still `false` after `timeout`, with a message naming `what`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
