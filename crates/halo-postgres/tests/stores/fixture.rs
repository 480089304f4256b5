//! A fresh database with both stores over one pool, plus direct SQL for setup and assertions.

use halo_domain::{MitraId, Phone};
use halo_metrics::Metrics;
use halo_ports::{
    BlastOutcome, ChatSession, ChatStore, OpenLimit, TargetOutcome, Timeouts, WhenNobody,
};
use halo_postgres::{PgAuth, PgChat, PgEvents, PoolSettings};
use halo_testkit::{test_database, TestDatabase};
use std::time::Duration;
use time::OffsetDateTime;
use tokio_postgres::Client;
use uuid::Uuid;

/// Timeouts long enough never to matter in a test that does not backdate rows.
/// No open-request limit: the tests of other rules create as many requests as they need.
pub const NO_LIMIT: OpenLimit = OpenLimit {
    max_open: u32::MAX,
    timeouts: T,
};

/// The session a blast created.
pub fn created(outcome: BlastOutcome) -> ChatSession {
    match outcome {
        BlastOutcome::Created(session) => session,
        other => panic!("the blast was refused: {other:?}"),
    }
}

pub const T: Timeouts = Timeouts {
    blast: time::Duration::minutes(10),
    payment: time::Duration::minutes(10),
    offer: time::Duration::minutes(10),
    queue: time::Duration::minutes(10),
};

pub struct Fixture {
    /// Dropping the fixture drops the database.
    _db: TestDatabase,
    pub pg: Client,
    pub auth: PgAuth,
    pub chat: PgChat,
    pub events: PgEvents,
    pub metrics: Metrics,
}

/// Both stores over a pool of 4 connections.
pub async fn fixture() -> Fixture {
    fixture_with_pool(4).await
}

/// Both stores over a pool of `size` connections, all opened up front so that concurrent
/// callers really run at once instead of queueing behind connection set-up.
pub async fn fixture_with_pool(size: usize) -> Fixture {
    let db = test_database().await;
    let settings = PoolSettings {
        max_size: size,
        timeout: Duration::from_secs(10),
    };
    let pool = halo_postgres::connect_pool(db.url(), &settings).expect("pool");
    let mut held = Vec::with_capacity(size);
    for _ in 0..size {
        held.push(pool.get().await.expect("warm the pool"));
    }
    drop(held);
    let metrics = Metrics::new();
    let pg = db.client().await;
    Fixture {
        auth: PgAuth::new(pool.clone(), metrics.clone()),
        chat: PgChat::new(pool.clone(), metrics.clone()),
        events: PgEvents::new(pool.clone(), metrics.clone()),
        _db: db,
        pg,
        metrics,
    }
}

/// A unique, valid phone number.
pub fn phone() -> Phone {
    let digits = Uuid::new_v4().as_u128() % 1_000_000_000_000;
    Phone::parse(&format!("+62{digits:012}")).expect("valid phone")
}

/// Postgres keeps microseconds; a value that round-trips compares equal.
pub fn micros(at: OffsetDateTime) -> OffsetDateTime {
    at.replace_nanosecond(at.nanosecond() / 1_000 * 1_000)
        .expect("valid nanosecond")
}

pub fn now() -> OffsetDateTime {
    micros(OffsetDateTime::now_utc())
}

impl Fixture {
    pub async fn mitras(&self, n: usize) -> Vec<MitraId> {
        let phones: Vec<String> = (0..n).map(|_| phone().as_str().to_owned()).collect();
        self.pg
            .query(
                "INSERT INTO mitras (phone, display_name)
                 SELECT p, 'Mitra ' || p FROM unnest($1::text[]) AS p RETURNING id",
                &[&phones],
            )
            .await
            .expect("insert mitras")
            .iter()
            .map(|row| MitraId::new(row.get("id")))
            .collect()
    }

    pub async fn mitra(&self) -> MitraId {
        self.mitras(1).await[0]
    }

    pub async fn customer(&self) -> Uuid {
        self.pg
            .query_one(
                "INSERT INTO customers (phone) VALUES ($1) RETURNING id",
                &[&phone().as_str()],
            )
            .await
            .expect("insert customer")
            .get("id")
    }

    /// A `pending_payment` session of a new customer with `mitra` (capacity unlimited).
    pub async fn targeted(&self, mitra: MitraId, minutes: u32) -> ChatSession {
        let customer = self.customer().await;
        match self
            .chat
            .create_targeted(customer, mitra, minutes, u32::MAX, NO_LIMIT)
            .await
            .expect("create_targeted")
        {
            TargetOutcome::Created(session) => session,
            other => panic!("an active mitra with unlimited capacity refused: {other:?}"),
        }
    }

    /// An `active` session of a new customer with `mitra`.
    pub async fn active(&self, mitra: MitraId, minutes: u32) -> ChatSession {
        let session = self.targeted(mitra, minutes).await;
        self.chat
            .pay(session.id, session.customer_id, T, "test-charge")
            .await
            .expect("pay")
            .expect("payable")
    }

    /// A `searching` blast of a new customer reaching `mitras`.
    pub async fn blast(&self, mitras: &[MitraId], minutes: u32) -> ChatSession {
        let customer = self.customer().await;
        created(
            self.chat
                .create_blast(customer, minutes, mitras, NO_LIMIT, WhenNobody::Fail)
                .await
                .expect("create_blast"),
        )
    }

    pub async fn set_created_at(&self, ids: &[Uuid], at: OffsetDateTime) {
        self.pg
            .execute(
                "UPDATE chat_sessions SET created_at = $2 WHERE id = ANY($1)",
                &[&ids, &at],
            )
            .await
            .expect("set created_at");
    }

    pub async fn set_ends_at(&self, ids: &[Uuid], at: OffsetDateTime) {
        self.pg
            .execute(
                "UPDATE chat_sessions SET ends_at = $2 WHERE id = ANY($1)",
                &[&ids, &at],
            )
            .await
            .expect("set ends_at");
    }

    /// `(status, end_reason)` as stored.
    pub async fn status_of(&self, id: Uuid) -> (String, Option<String>) {
        let row = self
            .pg
            .query_one(
                "SELECT status, end_reason FROM chat_sessions WHERE id = $1",
                &[&id],
            )
            .await
            .expect("session row");
        (row.get("status"), row.get("end_reason"))
    }

    pub async fn count(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> i64 {
        self.pg.query_one(sql, params).await.expect("count").get(0)
    }
}
