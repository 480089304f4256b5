//! `ChatStore` over a deadpool pool. Single-statement transitions state their preconditions in
//! SQL; the slot-taking ones (accept, targeted request) run in one transaction that first locks
//! the mitra row, so concurrent callers for one mitra take turns and capacity is never exceeded.

use crate::chat_queries as q;
use crate::db::{column, first_row, run, Db};
use crate::error::classify;
use crate::events_store::{append_events, Transition};
use crate::queries::NamedQuery;
use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Pool};
use halo_domain::{MitraId, SessionStatus};
use halo_metrics::Metrics;
use halo_ports::{
    AcceptOutcome, BlastOutcome, ChatSession, ChatStore, OpenLimit, Party, RerouteOutcome,
    TargetOutcome, Timeouts, TruthError, UnsettledPayment,
};
use time::{Duration, OffsetDateTime};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

#[derive(Clone)]
pub struct PgChat {
    db: Db,
}

impl PgChat {
    pub fn new(pool: Pool, metrics: Metrics) -> Self {
        Self {
            db: Db::new(pool, metrics),
        }
    }

    /// A statement returning at most one session.
    async fn session_opt(
        &self,
        query: &NamedQuery,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<ChatSession>, TruthError> {
        self.db
            .query(query, params)
            .await?
            .first()
            .map(session_row)
            .transpose()
    }

    /// A one-statement transition and its events, in one transaction: `None` (nothing
    /// written) when the statement matched no session.
    async fn transition(
        &self,
        query: &NamedQuery,
        params: &[&(dyn ToSql + Sync)],
        events: Transition,
    ) -> Result<Option<ChatSession>, TruthError> {
        let mut client = self.db.client().await?;
        // Dropping the transaction without `commit` rolls it back.
        let tx = client.transaction().await.map_err(classify)?;
        let metrics = self.db.metrics();
        let rows = run(&tx, metrics, query, params).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let session = session_row(row)?;
        append_events(&tx, metrics, &[session.id], events).await?;
        tx.commit().await.map_err(classify)?;
        Ok(Some(session))
    }
}

fn count(row: &Row, name: &str) -> Result<u64, TruthError> {
    let n: i64 = column(row, name)?;
    u64::try_from(n).map_err(|e| TruthError::Query(Box::new(e)))
}

pub(crate) fn session_row(row: &Row) -> Result<ChatSession, TruthError> {
    let status: String = column(row, "status")?;
    let minutes: i32 = column(row, "minutes")?;
    Ok(ChatSession {
        id: column(row, "id")?,
        customer_id: column(row, "customer_id")?,
        mitra_id: column::<Option<Uuid>>(row, "mitra_id")?.map(MitraId::new),
        status: status
            .parse::<SessionStatus>()
            .map_err(|e| TruthError::Query(Box::new(e)))?,
        minutes: u32::try_from(minutes).map_err(|e| TruthError::Query(Box::new(e)))?,
        created_at: column(row, "created_at")?,
        accepted_at: column(row, "accepted_at")?,
        ends_at: column(row, "ends_at")?,
        ended_at: column(row, "ended_at")?,
        end_reason: column(row, "end_reason")?,
    })
}

/// The `integer` column's range; the domain caps minutes far below it.
fn minutes_param(minutes: u32) -> Result<i32, TruthError> {
    i32::try_from(minutes)
        .map_err(|_| TruthError::Query(format!("minutes out of range: {minutes}").into()))
}

/// A session or notification pointed at a mitra that does not exist (the `mitra_id` foreign
/// keys of V1; an unknown customer stays a `Query` error).
/// Takes the mitra's slot lock (see `LOCK_MITRA`): `None` for an unknown mitra, else whether it
/// is active.
async fn lock_mitra(
    tx: &impl GenericClient,
    metrics: &Metrics,
    mitra: Uuid,
) -> Result<Option<bool>, TruthError> {
    let rows = run(tx, metrics, &q::LOCK_MITRA, &[&mitra]).await?;
    rows.first().map(|row| column(row, "is_active")).transpose()
}

/// The mitra's `active` + `pending_payment` sessions, read after its lock.
async fn open_sessions(
    tx: &impl GenericClient,
    metrics: &Metrics,
    mitra: Uuid,
) -> Result<u64, TruthError> {
    let rows = run(tx, metrics, &q::MITRA_OPEN_SESSIONS, &[&mitra]).await?;
    count(&first_row(rows, &q::MITRA_OPEN_SESSIONS)?, "open")
}

/// Under the customer's lock: the oldest open request when the customer holds its limit.
async fn open_request_over_limit(
    tx: &impl GenericClient,
    metrics: &Metrics,
    customer: Uuid,
    limit: OpenLimit,
) -> Result<Option<Uuid>, TruthError> {
    run(tx, metrics, &q::LOCK_CUSTOMER, &[&customer]).await?;
    let open = run(
        tx,
        metrics,
        &q::OPEN_REQUESTS_OF_CUSTOMER,
        &[
            &customer,
            &limit.timeouts.blast.as_seconds_f64(),
            &limit.timeouts.payment.as_seconds_f64(),
        ],
    )
    .await?;
    if open.len() < limit.max_open as usize {
        return Ok(None);
    }
    open.first().map(|row| column(row, "id")).transpose()
}

fn unknown_mitra(error: TruthError) -> TruthError {
    let mitra_fk = match &error {
        TruthError::Query(source) => source
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(tokio_postgres::Error::as_db_error)
            .is_some_and(|db| {
                *db.code() == SqlState::FOREIGN_KEY_VIOLATION
                    && db
                        .constraint()
                        .is_some_and(|c| c.ends_with("_mitra_id_fkey"))
            }),
        _ => false,
    };
    if mitra_fk {
        TruthError::MitraNotFound
    } else {
        error
    }
}

#[async_trait]
impl ChatStore for PgChat {
    async fn create_blast(
        &self,
        customer: Uuid,
        minutes: u32,
        notify: &[MitraId],
        limit: OpenLimit,
    ) -> Result<BlastOutcome, TruthError> {
        let mitras: Vec<Uuid> = notify.iter().map(|id| id.uuid()).collect();
        let minutes = minutes_param(minutes)?;
        let mut client = self.db.client().await?;
        // Dropping the transaction without `commit` rolls it back.
        let tx = client.transaction().await.map_err(classify)?;
        let metrics = self.db.metrics();
        if let Some(open) = open_request_over_limit(&tx, metrics, customer, limit).await? {
            return Ok(BlastOutcome::OpenRequest(open));
        }
        let rows = run(
            &tx,
            metrics,
            &q::CREATE_BLAST,
            &[&customer, &minutes, &mitras],
        )
        .await
        .map_err(unknown_mitra)?;
        let session = session_row(&first_row(rows, &q::CREATE_BLAST)?)?;
        let events = Transition {
            blast: Some(limit.timeouts.blast),
            ..Transition::default()
        };
        append_events(&tx, metrics, &[session.id], events).await?;
        tx.commit().await.map_err(classify)?;
        Ok(BlastOutcome::Created(session))
    }

    /// `MitraNotFound` when the mitra does not exist.
    async fn create_targeted(
        &self,
        customer: Uuid,
        mitra: MitraId,
        minutes: u32,
        max_customers: u32,
        limit: OpenLimit,
    ) -> Result<TargetOutcome, TruthError> {
        let minutes = minutes_param(minutes)?;
        let mitra = mitra.uuid();
        let mut client = self.db.client().await?;
        // Dropping the transaction without `commit` rolls it back.
        let tx = client.transaction().await.map_err(classify)?;
        let metrics = self.db.metrics();
        // The customer's lock first, then the mitra's: the one order every transaction uses.
        if let Some(open) = open_request_over_limit(&tx, metrics, customer, limit).await? {
            return Ok(TargetOutcome::OpenRequest(open));
        }
        match lock_mitra(&tx, metrics, mitra).await? {
            None => return Err(TruthError::MitraNotFound),
            Some(false) => return Ok(TargetOutcome::Inactive),
            Some(true) => {}
        }
        if open_sessions(&tx, metrics, mitra).await? >= u64::from(max_customers) {
            return Ok(TargetOutcome::AtCapacity);
        }
        let rows = run(
            &tx,
            metrics,
            &q::CREATE_TARGETED,
            &[&customer, &mitra, &minutes],
        )
        .await?;
        let session = session_row(&first_row(rows, &q::CREATE_TARGETED)?)?;
        append_events(&tx, metrics, &[session.id], Transition::default()).await?;
        tx.commit().await.map_err(classify)?;
        Ok(TargetOutcome::Created(session))
    }

    async fn session(&self, id: Uuid) -> Result<Option<ChatSession>, TruthError> {
        self.session_opt(&q::SESSION, &[&id]).await
    }

    async fn pay(
        &self,
        id: Uuid,
        customer: Uuid,
        timeouts: Timeouts,
        reference: &str,
    ) -> Result<Option<ChatSession>, TruthError> {
        let payment = timeouts.payment.as_seconds_f64();
        self.transition(
            &q::PAY,
            &[&id, &customer, &payment, &reference],
            Transition::default(),
        )
        .await
    }

    async fn start_payment(&self, id: Uuid, customer: Uuid) -> Result<u32, TruthError> {
        let row = self
            .db
            .query_one(&q::START_PAYMENT, &[&id, &customer])
            .await?;
        let attempt: i32 = column(&row, "attempt")?;
        Ok(u32::try_from(attempt).unwrap_or(1))
    }

    async fn record_refund(&self, id: Uuid, attempt: u32) -> Result<(), TruthError> {
        let attempt = i32::try_from(attempt).unwrap_or(i32::MAX);
        self.db
            .execute(&q::RECORD_REFUND, &[&id, &attempt])
            .await
            .map(drop)
    }

    async fn unsettled_payments(
        &self,
        older_than: Duration,
        limit: u32,
    ) -> Result<Vec<UnsettledPayment>, TruthError> {
        let rows = self
            .db
            .query(
                &q::UNSETTLED_PAYMENTS,
                &[&older_than.as_seconds_f64(), &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let attempt: i32 = column(row, "attempt")?;
                Ok(UnsettledPayment {
                    session: column(row, "session_id")?,
                    attempt: u32::try_from(attempt).unwrap_or(1),
                })
            })
            .collect()
    }

    async fn accept(
        &self,
        id: Uuid,
        mitra: MitraId,
        max_customers: u32,
        timeouts: Timeouts,
    ) -> Result<AcceptOutcome, TruthError> {
        let mitra = mitra.uuid();
        let mut client = self.db.client().await?;
        // Dropping the transaction without `commit` rolls it back.
        let tx = client.transaction().await.map_err(classify)?;
        let metrics = self.db.metrics();
        match lock_mitra(&tx, metrics, mitra).await? {
            // An unknown mitra cannot have been notified.
            None => return Ok(AcceptOutcome::NotOffered),
            Some(false) => return Ok(AcceptOutcome::Inactive),
            Some(true) => {}
        }
        let check = first_row(
            run(&tx, metrics, &q::ACCEPT_CHECK, &[&id, &mitra]).await?,
            &q::ACCEPT_CHECK,
        )?;
        if !column::<bool>(&check, "offered")? {
            return Ok(AcceptOutcome::NotOffered);
        }
        if count(&check, "open")? >= u64::from(max_customers) {
            return Ok(AcceptOutcome::AtCapacity);
        }
        let blast = timeouts.blast.as_seconds_f64();
        let rows = run(&tx, metrics, &q::ACCEPT_SESSION, &[&id, &mitra, &blast]).await?;
        let Some(row) = rows.first() else {
            return Ok(AcceptOutcome::Taken);
        };
        let session = session_row(row)?;
        let events = Transition {
            taken: true,
            ..Transition::default()
        };
        append_events(&tx, metrics, &[session.id], events).await?;
        tx.commit().await.map_err(classify)?;
        Ok(AcceptOutcome::Accepted(session))
    }

    async fn reject(&self, id: Uuid, mitra: MitraId) -> Result<bool, TruthError> {
        let rows = self.db.query(&q::REJECT, &[&id, &mitra.uuid()]).await?;
        column(&first_row(rows, &q::REJECT)?, "reached")
    }

    async fn end(
        &self,
        id: Uuid,
        by: Party,
        reason: &str,
    ) -> Result<Option<ChatSession>, TruthError> {
        let (customer, mitra) = match by {
            Party::Customer(customer) => (Some(customer), None),
            Party::Mitra(mitra) => (None, Some(mitra.uuid())),
        };
        self.transition(
            &q::END,
            &[&id, &customer, &mitra, &reason],
            Transition::default(),
        )
        .await
    }

    async fn extend(
        &self,
        id: Uuid,
        customer: Uuid,
        minutes: u32,
    ) -> Result<Option<ChatSession>, TruthError> {
        let minutes = minutes_param(minutes)?;
        self.transition(
            &q::EXTEND,
            &[&id, &customer, &minutes],
            Transition::default(),
        )
        .await
    }

    /// `MitraNotFound` when `to` does not exist.
    /// `MitraNotFound` when the target does not exist.
    async fn reroute(
        &self,
        id: Uuid,
        to: MitraId,
        max_customers: Option<u32>,
    ) -> Result<RerouteOutcome, TruthError> {
        let to = to.uuid();
        let mut client = self.db.client().await?;
        // Dropping the transaction without `commit` rolls it back.
        let tx = client.transaction().await.map_err(classify)?;
        let metrics = self.db.metrics();
        // The target's lock first, then the session's: the order accept uses.
        match lock_mitra(&tx, metrics, to).await? {
            None => return Err(TruthError::MitraNotFound),
            Some(false) => return Ok(RerouteOutcome::Refused),
            Some(true) => {}
        }
        if let Some(max) = max_customers {
            if open_sessions(&tx, metrics, to).await? >= u64::from(max) {
                return Ok(RerouteOutcome::Refused);
            }
        }
        let rows = run(&tx, metrics, &q::REROUTE, &[&id, &to]).await?;
        let Some(row) = rows.first() else {
            return Ok(RerouteOutcome::NotActive);
        };
        let previous: Option<Uuid> = column(row, "previous_mitra_id")?;
        let session = session_row(row)?;
        let events = Transition {
            previous: previous.filter(|from| *from != to),
            ..Transition::default()
        };
        append_events(&tx, metrics, &[session.id], events).await?;
        tx.commit().await.map_err(classify)?;
        Ok(RerouteOutcome::Moved {
            session,
            from: previous.map(MitraId::new),
        })
    }

    async fn open_requests(
        &self,
        mitra: MitraId,
        timeouts: Timeouts,
    ) -> Result<Vec<ChatSession>, TruthError> {
        let blast = timeouts.blast.as_seconds_f64();
        let rows = self
            .db
            .query(&q::OPEN_REQUESTS, &[&mitra.uuid(), &blast])
            .await?;
        rows.iter().map(session_row).collect()
    }

    async fn expire_due(
        &self,
        now: OffsetDateTime,
        blast_timeout: Duration,
        payment_timeout: Duration,
        limit: u32,
    ) -> Result<Vec<ChatSession>, TruthError> {
        let mut client = self.db.client().await?;
        // Dropping the transaction without `commit` rolls it back.
        let tx = client.transaction().await.map_err(classify)?;
        let metrics = self.db.metrics();
        let rows = run(
            &tx,
            metrics,
            &q::EXPIRE_DUE,
            &[
                &now,
                &blast_timeout.as_seconds_f64(),
                &payment_timeout.as_seconds_f64(),
                &i64::from(limit),
            ],
        )
        .await?;
        let moved = rows
            .iter()
            .map(session_row)
            .collect::<Result<Vec<_>, _>>()?;
        let ids: Vec<Uuid> = moved.iter().map(|s| s.id).collect();
        append_events(&tx, metrics, &ids, Transition::default()).await?;
        tx.commit().await.map_err(classify)?;
        Ok(moved)
    }

    async fn count_active(&self) -> Result<u64, TruthError> {
        let rows = self.db.query(&q::COUNT_ACTIVE, &[]).await?;
        count(&first_row(rows, &q::COUNT_ACTIVE)?, "count")
    }

    async fn database_now(&self) -> Result<OffsetDateTime, TruthError> {
        let row = self.db.query_one(&q::DATABASE_NOW, &[]).await?;
        column(&row, "now")
    }
}
