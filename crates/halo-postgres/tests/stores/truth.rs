//! The truth contract (`halo_fakes::truth_contract`, which `InMemoryTruth` passes too) against
//! `PgTruth`, one database per case; the backdoor writes the rows the chat store and the
//! heartbeats would, and closes the pool for "Postgres does not answer".

use async_trait::async_trait;
use deadpool_postgres::Pool;
use halo_domain::MitraId;
use halo_fakes::truth_contract::TruthBackdoor;
use halo_metrics::Metrics;
use halo_ports::OnlineReason;
use halo_postgres::PgTruth;
use halo_testkit::{test_database, TestDatabase};
use std::sync::Arc;
use time::OffsetDateTime;
use tokio_postgres::Client;

pub struct Tables {
    /// Dropping the backdoor drops the database.
    _db: TestDatabase,
    pg: Client,
    pool: Pool,
}

const REASONS: [OnlineReason; 4] = [
    OnlineReason::Manual,
    OnlineReason::AutoOffline,
    OnlineReason::Operator,
    OnlineReason::Deactivated,
];

#[async_trait]
impl TruthBackdoor for Tables {
    /// `open` slot-holding sessions (half `pending_payment`), after ending the ones it had, and
    /// beside them a `searching` and a `cancelled` one, which hold no slot.
    async fn set_open_sessions(&self, id: MitraId, open: u32) {
        self.pg
            .execute(
                "UPDATE chat_sessions SET status = 'ended', end_reason = 'expired'
                  WHERE mitra_id = $1 AND status IN ('active', 'pending_payment')",
                &[&id.uuid()],
            )
            .await
            .unwrap();
        let customer: uuid::Uuid = self
            .pg
            .query_one(
                "INSERT INTO customers (phone) VALUES ('+6299' || (random() * 1e9)::bigint) RETURNING id",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let statuses: Vec<&str> = (0..open)
            .map(|n| {
                if n % 2 == 0 {
                    "active"
                } else {
                    "pending_payment"
                }
            })
            .chain(["searching", "cancelled"])
            .collect();
        self.pg
            .execute(
                "INSERT INTO chat_sessions (customer_id, mitra_id, status, minutes)
                 SELECT $1, $2, s, 10 FROM unnest($3::text[]) AS s",
                &[&customer, &id.uuid(), &statuses],
            )
            .await
            .unwrap();
    }

    /// An `ended` session of a new customer, accepted a minute before `at` and ended at `at`.
    async fn set_session_activity(&self, id: MitraId, at: OffsetDateTime) {
        self.pg
            .execute(
                "WITH c AS (
                     INSERT INTO customers (phone) VALUES ('+6298' || (random() * 1e9)::bigint)
                     RETURNING id)
                 INSERT INTO chat_sessions
                        (customer_id, mitra_id, status, minutes, accepted_at, ends_at, ended_at,
                         end_reason)
                 SELECT c.id, $1, 'ended', 1, $2::timestamptz - interval '1 minute', $2, $2,
                        'ended_by_customer'
                   FROM c",
                &[&id.uuid(), &at],
            )
            .await
            .unwrap();
    }

    async fn set_heartbeat(&self, id: MitraId, at: Option<OffsetDateTime>) {
        let rows = self
            .pg
            .execute(
                "UPDATE mitra_online_status SET last_heartbeat_at = $2 WHERE mitra_id = $1",
                &[&id.uuid(), &at],
            )
            .await
            .unwrap();
        assert_eq!(rows, 1, "{id} has a status row");
    }

    async fn online_log(&self, id: MitraId) -> Vec<(bool, OnlineReason)> {
        let rows = self
            .pg
            .query(
                "SELECT status, reason FROM mitra_online_logs WHERE mitra_id = $1 ORDER BY id",
                &[&id.uuid()],
            )
            .await
            .unwrap();
        rows.iter()
            .map(|row| {
                let reason: &str = row.get("reason");
                let reason = REASONS.into_iter().find(|r| r.as_str() == reason);
                (row.get::<_, &str>("status") == "online", reason.unwrap())
            })
            .collect()
    }

    async fn go_down(&self) {
        self.pool.close();
    }
}

async fn postgres() -> (Arc<PgTruth>, Tables) {
    let db = test_database().await;
    let pool = db.pool().await;
    let truth = Arc::new(PgTruth::new(pool.clone(), Metrics::new()));
    let pg = db.client().await;
    (truth, Tables { _db: db, pg, pool })
}

halo_fakes::truth_contract!(postgres);
