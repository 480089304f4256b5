//! One availability instance over real stores, plus direct store access for assertions.

use halo_core::{
    Availability, AvailabilityStores, Chat, DevPayments, MitraAdmin, SeedReason, SettingsCache,
};
use halo_domain::MitraId;
use halo_metrics::Metrics;
use halo_ports::{AvailabilityMirror, SettingsStore, SystemClock};
use halo_postgres::{PgAuth, PgChat, PgTruth};
use halo_testkit::{test_database, TestDatabase, ValkeyServer};
use halo_valkey::{Keys, ValkeyMirror, ValkeySettings};
use redis::AsyncCommands;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

pub const VALKEY_TIMEOUT: Duration = Duration::from_millis(250);

pub struct Stack {
    pub db: TestDatabase,
    pub valkey: ValkeyServer,
    pub pg: tokio_postgres::Client,
    pub av: Arc<Availability>,
    pub metrics: Metrics,
    /// The truth under `av`, for assertions that read Postgres through its port.
    pub truth: Arc<PgTruth>,
}

pub async fn stack() -> Stack {
    let db = test_database().await;
    let valkey = ValkeyServer::start().await;
    let (av, metrics) = instance(&db, &valkey.url()).await;
    let pg = db.client().await;
    let truth = Arc::new(PgTruth::new(db.pool().await, Metrics::new()));
    Stack {
        db,
        valkey,
        pg,
        av,
        metrics,
        truth,
    }
}

/// Another availability instance on the same stores (its own pools, connection and counters).
pub async fn instance(db: &TestDatabase, valkey_url: &str) -> (Arc<Availability>, Metrics) {
    let mirror = mirror(valkey_url, &Metrics::new());
    instance_with_mirror(db, mirror).await
}

pub fn mirror(valkey_url: &str, metrics: &Metrics) -> Arc<ValkeyMirror> {
    let settings = ValkeySettings {
        url: valkey_url.to_owned(),
        key_prefix: String::new(),
        timeout: VALKEY_TIMEOUT,
        ..Default::default()
    };
    let (_client, connection) = halo_valkey::connect(&settings).expect("valkey url");
    Arc::new(ValkeyMirror::new(
        connection,
        Keys::new(""),
        VALKEY_TIMEOUT,
        metrics.clone(),
    ))
}

/// An instance whose Postgres fallback allows for a heartbeat-mirror cycle of `lag`, as the
/// services configure it.
pub async fn instance_with_lag(
    db: &TestDatabase,
    valkey_url: &str,
    lag: Duration,
) -> Arc<Availability> {
    let metrics = Metrics::new();
    let truth = Arc::new(PgTruth::new(db.pool().await, metrics.clone()));
    let settings = SettingsCache::new(truth.load_settings().await.expect("settings"));
    let av = Availability::new(
        stores(truth, mirror(valkey_url, &metrics)),
        settings,
        metrics,
    )
    .with_postgres_heartbeat_lag(lag);
    started(av).await
}

/// An instance over any mirror implementation (e.g. one that injects failures). The mirror's
/// counters are not the instance's: budget tests use `instance`, which shares them.
pub async fn instance_with_mirror(
    db: &TestDatabase,
    mirror: Arc<dyn AvailabilityMirror>,
) -> (Arc<Availability>, Metrics) {
    let metrics = Metrics::new();
    let truth = Arc::new(PgTruth::new(db.pool().await, metrics.clone()));
    let settings = SettingsCache::new(truth.load_settings().await.expect("settings"));
    let av = Availability::new(stores(truth, mirror), settings, metrics.clone());
    (started(av).await, metrics)
}

/// The availability stores over one Postgres truth (also the settings store) and a mirror.
fn stores(truth: Arc<PgTruth>, mirror: Arc<dyn AvailabilityMirror>) -> AvailabilityStores {
    AvailabilityStores {
        truth: truth.clone(),
        settings: truth,
        mirror,
        clock: Arc::new(SystemClock),
    }
}

/// Seeds before use, as the services do before serving (an instance starts `Unseeded`); a
/// mirror that cannot be seeded leaves the instance on Postgres, as in production.
async fn started(av: Availability) -> Arc<Availability> {
    let _ = av.seed_from_postgres(SeedReason::Startup).await;
    Arc::new(av)
}

/// An instance whose truth and mirror count into one `Metrics` (budget assertions).
pub async fn counted_instance(db: &TestDatabase, valkey_url: &str) -> (Arc<Availability>, Metrics) {
    let metrics = Metrics::new();
    let truth = Arc::new(PgTruth::new(db.pool().await, metrics.clone()));
    let settings = SettingsCache::new(truth.load_settings().await.expect("settings"));
    let mirror = mirror(valkey_url, &metrics);
    let av = Availability::new(stores(truth, mirror), settings, metrics.clone());
    (started(av).await, metrics)
}

impl Stack {
    /// The chat use cases over this stack's instance (the background loops need one).
    pub async fn chat(&self) -> Arc<Chat> {
        let pool = self.db.pool().await;
        Arc::new(Chat::new(
            Arc::new(PgChat::new(pool, Metrics::new())),
            self.av.clone(),
            Arc::new(DevPayments::default()),
        ))
    }

    /// The operators' use cases over this stack's instance.
    pub async fn admin(&self) -> MitraAdmin {
        let pool = self.db.pool().await;
        MitraAdmin::new(
            self.truth.clone(),
            Arc::new(PgAuth::new(pool, Metrics::new())),
            self.av.clone(),
        )
    }

    pub async fn vk(&self) -> redis::aio::MultiplexedConnection {
        self.valkey.connection().await
    }

    pub async fn mitra(&self) -> MitraId {
        insert_mitra(&self.pg).await
    }

    pub async fn online_mitra(&self) -> MitraId {
        let id = self.mitra().await;
        self.av.set_online(id).await.expect("set online");
        id
    }

    pub async fn customer(&self) -> Uuid {
        let phone = format!("+62{}", Uuid::new_v4().as_u128() % 10_000_000_000);
        let row = self
            .pg
            .query_one(
                "INSERT INTO customers (phone) VALUES ($1) RETURNING id",
                &[&phone],
            )
            .await
            .expect("insert customer");
        row.get(0)
    }

    /// A chat session row in `status` for this mitra (the services' flows are tested by halo-app's route tests and the acceptance suite).
    pub async fn session(&self, mitra: MitraId, status: &str) -> Uuid {
        let customer = self.customer().await;
        let row = self
            .pg
            .query_one(
                "INSERT INTO chat_sessions (customer_id, mitra_id, status, minutes) VALUES ($1, $2, $3, 15) RETURNING id",
                &[&customer, &mitra.uuid(), &status],
            )
            .await
            .expect("insert session");
        row.get(0)
    }

    pub async fn pg_online(&self, id: MitraId) -> bool {
        self.pg
            .query_one(
                "SELECT is_online FROM mitra_online_status WHERE mitra_id = $1",
                &[&id.uuid()],
            )
            .await
            .expect("status row")
            .get(0)
    }

    pub async fn smembers(&self, key: &str) -> Vec<String> {
        let mut members: Vec<String> = self.vk().await.smembers(key).await.expect("smembers");
        members.sort();
        members
    }

    pub async fn get(&self, key: &str) -> Option<String> {
        self.vk().await.get(key).await.expect("get")
    }

    pub async fn set(&self, key: &str, value: &str) {
        let () = self.vk().await.set(key, value).await.expect("set");
    }

    /// Ages the mitra's Postgres heartbeat (`last_heartbeat_at`, stamped by its toggle) as if
    /// its last ping were long ago: the auto-offline guard then agrees with a stale mirror.
    pub async fn age_pg_heartbeat(&self, id: MitraId) {
        self.pg
            .execute(
                "UPDATE mitra_online_status SET last_heartbeat_at = '2020-01-01Z' WHERE mitra_id = $1",
                &[&id.uuid()],
            )
            .await
            .expect("age last_heartbeat_at");
    }

    pub async fn drift_is_empty(&self) -> bool {
        self.av.drift_report().await.expect("drift").is_empty()
    }
}

pub async fn insert_mitra(pg: &tokio_postgres::Client) -> MitraId {
    let phone = format!("+62{}", Uuid::new_v4().as_u128() % 10_000_000_000);
    let row = pg
        .query_one(
            "INSERT INTO mitras (phone, display_name) VALUES ($1, 'Test Mitra') RETURNING id",
            &[&phone],
        )
        .await
        .expect("insert mitra");
    MitraId::new(row.get(0))
}

/// `count` online mitras straight in Postgres (two statements: a CTE cannot see the status rows
/// the insert trigger creates in the same statement).
pub async fn bulk_online_mitras(pg: &tokio_postgres::Client, phone_prefix: &str, count: i32) {
    let tag = Uuid::new_v4().to_string();
    pg.execute(
        "INSERT INTO mitras (phone, display_name) SELECT $1 || g, $2 FROM generate_series(1, $3) g",
        &[&phone_prefix, &tag, &count],
    )
    .await
    .expect("bulk insert");
    pg.execute(
        "UPDATE mitra_online_status SET is_online = true
          WHERE mitra_id IN (SELECT id FROM mitras WHERE display_name = $1)",
        &[&tag],
    )
    .await
    .expect("bulk online");
}

pub fn sorted(ids: impl IntoIterator<Item = MitraId>) -> Vec<String> {
    let mut v: Vec<String> = ids.into_iter().map(|id| id.to_string()).collect();
    v.sort();
    v
}

pub fn hb_key(id: MitraId) -> String {
    format!("mitra:heartbeat:{id}")
}

pub fn cap_key(id: MitraId) -> String {
    format!("mitra:capacity:{id}")
}
