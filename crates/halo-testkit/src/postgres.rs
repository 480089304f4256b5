//! One Postgres database per test, cloned from a template migrated once per server.
//!
//! The template is named after a hash of the `migrations/` folder, so changing a migration makes
//! a new template and old test databases never see a half-updated schema. Several test binaries
//! run at once; the first one to need a template builds it under an advisory lock, under a
//! work-in-progress name renamed only when complete, so a crash never leaves a broken template.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

/// The admin URL used when `HALO_TEST_DATABASE_URL` is not set: the `postgres` database of the
/// test server `scripts/test.sh` starts.
pub const DEFAULT_ADMIN_URL: &str = "postgres://halo@127.0.0.1:55433/postgres";

/// Serializes template builds across processes. Any constant works, as long as it is this one.
const TEMPLATE_LOCK_KEY: i64 = 0x4841_4C4F_5450_4C31; // "HALOTPL1"

/// The `migrations/` folder, the same one `halo-postgres` embeds.
const MIGRATIONS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations");

/// How long to keep retrying statements refused because someone is still connected to the
/// source database (a pool's connections close asynchronously).
const IN_USE_RETRIES: u32 = 200;
const IN_USE_PAUSE: Duration = Duration::from_millis(25);

/// The admin URL of the test Postgres server: `HALO_TEST_DATABASE_URL`, or
/// [`DEFAULT_ADMIN_URL`]. It must point at a database that always exists (`postgres`).
pub fn admin_url() -> String {
    std::env::var("HALO_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_owned())
}

/// A database of its own for one test, migrated, dropped (with `FORCE`) when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
}

/// Creates a fresh database `halo_test_<uuid>` cloned from the migrated template, building the
/// template first when this server has none for the current migrations.
///
/// # Panics
///
/// When the test Postgres cannot be reached ("start the test stores with scripts/test.sh"), or
/// when creating or migrating a database fails.
pub async fn test_database() -> TestDatabase {
    let admin_url = admin_url();
    let admin = connect_admin(&admin_url).await;
    let template = ensure_template(&admin, &admin_url).await;

    let name = format!("halo_test_{}", uuid::Uuid::new_v4().simple());
    let create = format!(
        "CREATE DATABASE {} TEMPLATE {}",
        quote(&name),
        quote(&template)
    );
    retry_while_in_use(&admin, &create)
        .await
        .unwrap_or_else(|err| panic!("cannot create test database {name}: {}", error_chain(&err)));

    let url = database_url(&admin_url, &name);
    TestDatabase {
        name,
        url,
        admin_url,
    }
}

impl TestDatabase {
    /// The full URL of this database (`postgres://…/halo_test_…`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database name, `halo_test_<uuid>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A small pool (4 connections, 10 s timeouts) built like the services build theirs.
    ///
    /// # Panics
    ///
    /// Never in practice: the URL was built by this crate.
    pub async fn pool(&self) -> deadpool_postgres::Pool {
        let settings = halo_postgres::PoolSettings {
            max_size: 4,
            timeout: Duration::from_secs(10),
        };
        halo_postgres::connect_pool(&self.url, &settings)
            .unwrap_or_else(|err| panic!("cannot build a pool for {}: {err}", self.name))
    }

    /// A plain connection for assertions (TLS as the URL says, like the services), its
    /// connection task spawned on the current runtime.
    ///
    /// # Panics
    ///
    /// When the database cannot be reached.
    pub async fn client(&self) -> Client {
        connect(&self.url).await.unwrap_or_else(|err| {
            panic!(
                "cannot connect to test database {}: {}",
                self.name,
                error_chain(&err)
            )
        })
    }
}

impl Drop for TestDatabase {
    /// Drops the database, closing whatever connections the test left open. Runs on a thread
    /// of its own with its own runtime, so it works from inside or outside any runtime; errors
    /// are only reported, since a leftover database harms nothing but disk space.
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin_url = self.admin_url.clone();
        let dropper = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    eprintln!("halo-testkit: cannot drop test database {name}: no runtime: {err}");
                    return;
                }
            };
            runtime.block_on(async {
                let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote(&name));
                let outcome: Result<(), Box<dyn std::error::Error>> =
                    match try_connect_admin(&admin_url).await {
                        Ok(admin) => admin.batch_execute(&statement).await.map_err(Into::into),
                        Err(err) => Err(err.into()),
                    };
                if let Err(err) = outcome {
                    eprintln!(
                        "halo-testkit: cannot drop test database {name}: {}",
                        error_chain(err.as_ref())
                    );
                }
            });
        });
        if dropper.join().is_err() {
            eprintln!(
                "halo-testkit: the thread dropping test database {} panicked",
                self.name
            );
        }
    }
}

/// Makes sure the template for the current migrations exists; returns its name.
async fn ensure_template(admin: &Client, admin_url: &str) -> String {
    let template = template_name().to_owned();
    if database_exists(admin, &template).await {
        return template;
    }
    admin
        .execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK_KEY])
        .await
        .unwrap_or_else(|err| panic!("cannot take the template lock: {}", error_chain(&err)));
    // Another process may have built it while we waited for the lock.
    if !database_exists(admin, &template).await {
        build_template(admin, admin_url, &template).await;
    }
    admin
        .execute("SELECT pg_advisory_unlock($1)", &[&TEMPLATE_LOCK_KEY])
        .await
        .unwrap_or_else(|err| panic!("cannot release the template lock: {}", error_chain(&err)));
    template
}

/// Builds `template` under a work-in-progress name (left over only by a crash, and then
/// replaced), migrates it with the services' own code, and renames it into place.
async fn build_template(admin: &Client, admin_url: &str, template: &str) {
    let wip = format!("{template}_wip");
    let fail = |what: &str, err: &dyn std::error::Error| -> ! {
        panic!(
            "cannot build the test template {template}: {what}: {}",
            error_chain(err)
        )
    };
    // Two statements: CREATE DATABASE refuses to run in the implicit transaction of a batch.
    admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote(&wip)
        ))
        .await
        .unwrap_or_else(|err| fail("drop leftover", &err));
    admin
        .batch_execute(&format!("CREATE DATABASE {}", quote(&wip)))
        .await
        .unwrap_or_else(|err| fail("create", &err));

    let settings = halo_postgres::PoolSettings {
        max_size: 2,
        timeout: Duration::from_secs(10),
    };
    let pool = halo_postgres::connect_pool(&database_url(admin_url, &wip), &settings)
        .unwrap_or_else(|err| fail("pool", &err));
    halo_postgres::migrate(&pool)
        .await
        .unwrap_or_else(|err| fail("migrate", &err));
    if let Err(problem) = check_all_migrations_applied(&pool).await {
        panic!("cannot build the test template {template}: {problem}");
    }
    pool.close();
    drop(pool);

    // Nobody connects to a template after this; CREATE DATABASE … TEMPLATE does not need to.
    let finish = format!(
        "ALTER DATABASE {wip} RENAME TO {template}",
        wip = quote(&wip),
        template = quote(template)
    );
    retry_while_in_use(admin, &finish)
        .await
        .unwrap_or_else(|err| fail("rename", &err));
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS false IS_TEMPLATE true",
            quote(template)
        ))
        .await
        .unwrap_or_else(|err| fail("mark as template", &err));
}

/// `halo-postgres` embeds the migrations at compile time, but the template name hashes the
/// folder as it is now; a migration added since `halo-postgres` was last compiled would
/// otherwise give a template missing it under the new name.
async fn check_all_migrations_applied(pool: &deadpool_postgres::Pool) -> Result<(), String> {
    let expected = migration_files().len();
    let client = pool.get().await.map_err(|err| error_chain(&err))?;
    let row = client
        .query_one("SELECT count(*) FROM refinery_schema_history", &[])
        .await
        .map_err(|err| error_chain(&err))?;
    let applied: i64 = row.get(0);
    if usize::try_from(applied).ok() == Some(expected) {
        Ok(())
    } else {
        Err(format!(
            "{applied} migrations applied but {expected} files in migrations/; \
             rebuild halo-postgres (touch crates/halo-postgres/src/pool.rs)"
        ))
    }
}

/// `halo_tpl_<hash of the migration files' names and contents>`, computed once per process.
fn template_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let mut hasher = DefaultHasher::new();
        for (name, contents) in migration_files() {
            name.hash(&mut hasher);
            contents.hash(&mut hasher);
        }
        format!("halo_tpl_{:016x}", hasher.finish())
    })
}

/// The `V…__….sql` files of `migrations/`, sorted by name, with their contents.
fn migration_files() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(MIGRATIONS_DIR);
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|err| panic!("cannot read {}: {err}", dir.display()));
    let mut files: Vec<(String, Vec<u8>)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            (name.starts_with('V') && name.ends_with(".sql")).then_some((name, entry.path()))
        })
        .map(|(name, path)| {
            let contents = std::fs::read(&path)
                .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
            (name, contents)
        })
        .collect();
    files.sort();
    files
}

async fn database_exists(admin: &Client, name: &str) -> bool {
    admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .unwrap_or_else(|err| panic!("cannot list databases: {}", error_chain(&err)))
        .is_some()
}

/// Runs `statement`, retrying while Postgres says the source database is still in use.
async fn retry_while_in_use(admin: &Client, statement: &str) -> Result<(), tokio_postgres::Error> {
    let mut attempt = 0;
    loop {
        match admin.batch_execute(statement).await {
            Err(err)
                if err.code() == Some(&SqlState::OBJECT_IN_USE) && attempt < IN_USE_RETRIES =>
            {
                attempt += 1;
                tokio::time::sleep(IN_USE_PAUSE).await;
            }
            outcome => return outcome,
        }
    }
}

async fn connect_admin(admin_url: &str) -> Client {
    try_connect_admin(admin_url).await.unwrap_or_else(|err| {
        panic!(
            "cannot connect to the test Postgres at {admin_url} ({}): \
             start the test stores with scripts/test.sh, or by hand: \
             `source scripts/lib.sh && start_postgres .data/test/pg 55433 --fast`",
            error_chain(&err)
        )
    })
}

async fn try_connect_admin(admin_url: &str) -> Result<Client, halo_postgres::ConnectError> {
    connect(admin_url).await
}

/// One connection with the services' own URL handling (`sslmode`, `sslrootcert`), so the
/// harness reaches a TLS-only server as they do.
pub async fn connect(url: &str) -> Result<Client, halo_postgres::ConnectError> {
    halo_postgres::connect_one(url, |config| {
        config
            .application_name("halo-testkit")
            .connect_timeout(Duration::from_secs(5));
    })
    .await
}

/// `admin_url` with its database replaced by `database` (URL form only:
/// `postgres://user@host:port/db?params`).
fn database_url(admin_url: &str, database: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let authority_start = base.find("://").map_or(0, |at| at + 3);
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |at| authority_start + at);
    let mut url = format!("{}/{database}", &base[..authority_end]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// Quotes an identifier; ours are `[a-z0-9_]`, but quoting keeps that from mattering.
fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// An error with its sources, since `migrate`'s own message is only the outermost layer.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(admin_url: &str, expected: &str) {
        assert_eq!(
            database_url(admin_url, "halo_test_x"),
            expected,
            "for {admin_url}"
        );
    }

    #[test]
    fn database_url_replaces_only_the_database() {
        check(
            "postgres://halo@127.0.0.1:55433/postgres",
            "postgres://halo@127.0.0.1:55433/halo_test_x",
        );
        check(
            "postgres://halo@127.0.0.1:55433",
            "postgres://halo@127.0.0.1:55433/halo_test_x",
        );
        check(
            "postgres://halo@127.0.0.1:55433/",
            "postgres://halo@127.0.0.1:55433/halo_test_x",
        );
        check(
            "postgres://a:b@h/postgres?sslmode=disable",
            "postgres://a:b@h/halo_test_x?sslmode=disable",
        );
        check(
            "postgresql://h:1/p?x=/y",
            "postgresql://h:1/halo_test_x?x=/y",
        );
    }

    #[test]
    fn template_name_is_stable_and_short() {
        let name = template_name();
        assert_eq!(name, template_name());
        assert!(name.starts_with("halo_tpl_"));
        assert!(
            name.len() + "_wip".len() < 63,
            "{name} is too long for Postgres"
        );
    }

    #[test]
    fn quote_doubles_quotes() {
        assert_eq!(quote("halo_test_1"), "\"halo_test_1\"");
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
    }
}
