//! The schema version check behind `MIGRATE_ON_START=false`, the standalone migration of the
//! `migrate` subcommand, and how a refused write on a read-only server is classified.

use halo_ports::TruthError;
use halo_postgres::PoolSettings;
use halo_testkit::test_database;
use std::time::Duration;

fn settings() -> PoolSettings {
    PoolSettings {
        max_size: 2,
        timeout: Duration::from_secs(10),
    }
}

#[tokio::test]
async fn an_empty_database_is_behind_until_migrated_standalone() {
    let db = test_database().await;
    let admin = db.client().await;
    // A database of our own that is empty (test databases come migrated).
    let name = format!("{}_empty", db.name());
    admin
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create empty database");
    let url = db.url().replace(db.name(), &name);

    let pool = halo_postgres::connect_pool(&url, &settings()).expect("pool");
    let before = halo_postgres::schema_status(&pool).await.expect("status");
    assert_eq!(before.applied, None);
    assert!(before.is_behind());

    let applied = halo_postgres::migrate_standalone(&url, Duration::from_secs(10))
        .await
        .expect("migrate");
    assert_eq!(
        applied.len() as u32,
        before.expected,
        "every migration applied"
    );
    let after = halo_postgres::schema_status(&pool).await.expect("status");
    assert_eq!(after.applied, Some(after.expected));
    assert!(!after.is_behind());
    let again = halo_postgres::migrate_standalone(&url, Duration::from_secs(10))
        .await
        .expect("migrate again");
    assert!(again.is_empty(), "nothing left to apply: {again:?}");

    pool.close();
    drop(pool);
    admin
        .batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .await
        .expect("drop");
}

#[tokio::test]
async fn a_write_refused_by_a_read_only_server_is_an_outage_not_a_bug() {
    let db = test_database().await;
    let client = db.client().await;
    client
        .batch_execute("SET default_transaction_read_only = on")
        .await
        .expect("read only");
    let refused = client
        .execute("UPDATE app_config SET updated_at = updated_at", &[])
        .await
        .expect_err("a read-only session refuses writes");
    assert!(
        matches!(halo_postgres::classify(refused), TruthError::Unavailable(_)),
        "25006 read_only_sql_transaction must answer 503, as during a failover"
    );
}
