//! `<binary> migrate` and `MIGRATE_ON_START`, as a deploy's migration job uses them: the
//! subcommand migrates an empty database and is a no-op on a migrated one (exit 0 both times),
//! fails with a clear message on a bad URL; a service with `MIGRATE_ON_START=false` refuses to
//! start on a schema behind it and starts once the job has run.

use halo_acceptance::{run_to_exit, service_env, Instance, Kind, ValkeyServer};
use halo_testkit::TestDatabase;
use std::process::Output;

/// An empty database (no tables) next to a fresh test database; dropped with it by hand.
struct EmptyDatabase {
    _db: TestDatabase,
    admin: tokio_postgres::Client,
    name: String,
    url: String,
}

impl EmptyDatabase {
    async fn create() -> EmptyDatabase {
        let db = halo_testkit::test_database().await;
        let admin = db.client().await;
        let name = format!("{}_empty", db.name());
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create empty database");
        let url = db.url().replace(db.name(), &name);
        EmptyDatabase {
            _db: db,
            admin,
            name,
            url,
        }
    }

    async fn tables(&self) -> i64 {
        let client = halo_testkit::connect(&self.url).await.expect("connect");
        client
            .query_one(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
                &[],
            )
            .await
            .expect("count tables")
            .get(0)
    }

    async fn drop(self) {
        self.admin
            .batch_execute(&format!("DROP DATABASE \"{}\" WITH (FORCE)", self.name))
            .await
            .expect("drop empty database");
    }
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Only `DATABASE_URL`: a migration job needs no other secret.
fn migrate_env(url: &str) -> Vec<(String, String)> {
    vec![("DATABASE_URL".to_owned(), url.to_owned())]
}

#[tokio::test]
async fn migrate_applies_everything_on_an_empty_database_then_nothing() {
    let empty = EmptyDatabase::create().await;
    assert_eq!(empty.tables().await, 0);

    let first = run_to_exit(Kind::Public, &["migrate"], &migrate_env(&empty.url)).await;
    let (stdout, stderr) = text(&first);
    assert!(first.status.success(), "migrate failed: {stdout}{stderr}");
    assert!(stdout.contains("applied V1"), "{stdout}");
    assert!(empty.tables().await > 0, "the schema exists");

    for kind in [Kind::Public, Kind::Internal] {
        let again = run_to_exit(kind, &["migrate"], &migrate_env(&empty.url)).await;
        let (stdout, stderr) = text(&again);
        assert!(
            again.status.success(),
            "{kind:?} migrate failed: {stdout}{stderr}"
        );
        assert!(stdout.contains("schema up to date"), "{stdout}");
    }
    empty.drop().await;
}

#[tokio::test]
async fn migrate_fails_with_a_message_naming_database_url() {
    let output = run_to_exit(
        Kind::Internal,
        &["migrate"],
        &migrate_env("postgres://halo@127.0.0.1:1/postgres?sslmode=sometimes"),
    )
    .await;
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    assert!(stderr.contains("sometimes"), "{stderr}");
    let unset = run_to_exit(Kind::Public, &["migrate"], &[]).await;
    assert_eq!(unset.status.code(), Some(2));
    assert!(text(&unset).1.contains("DATABASE_URL"));
}

#[tokio::test]
async fn without_migrate_on_start_a_service_refuses_a_schema_behind_it() {
    let empty = EmptyDatabase::create().await;
    let valkey = ValkeyServer::start().await;
    let mut env = service_env(&empty.url, &valkey.url());
    env.push(("MIGRATE_ON_START".to_owned(), "false".to_owned()));

    let refused = run_to_exit(Kind::Public, &[], &env).await;
    let (_, stderr) = text(&refused);
    assert!(!refused.status.success());
    assert!(stderr.contains("schema is behind"), "{stderr}");
    assert!(stderr.contains("public-api migrate"), "{stderr}");
    assert_eq!(empty.tables().await, 0, "nothing was migrated");

    let job = run_to_exit(Kind::Internal, &["migrate"], &migrate_env(&empty.url)).await;
    assert!(job.status.success(), "{:?}", text(&job));
    let log_dir = std::env::temp_dir().join(format!(
        "halo-acceptance-migrate-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&log_dir).expect("log dir");
    let mut service = Instance::start(Kind::Public, &env, &log_dir).await;
    service.stop().await;
    let _ = std::fs::remove_dir_all(&log_dir);
    empty.drop().await;
}
