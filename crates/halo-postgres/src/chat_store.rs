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
    AcceptOutcome, BlastOutcome, ChatSession, ChatStore, DueRound, Moved, OpenLimit, Party,
    RerouteOutcome, TargetOutcome, Timeouts, TruthError, UnsettledPayment, WhenNobody,
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

    /// Counts missed offers (one entry per offer) in a statement of its own, after the
    /// transaction that expired them committed: it locks mitra rows, which that transaction
    /// must not take while it holds session rows (accept takes them the other way round).
    /// Returns the mitras that reached `limit` in a row. `None`: the rule is off and nothing
    /// is counted (a mitra row write per missed offer saved; counts from before stay). The
    /// transition committed, so a failure here only loses these misses (logged).
    async fn count_missed(&self, missed: &[(Uuid, Uuid)], limit: Option<u32>) -> Vec<MitraId> {
        let Some(limit) = limit else {
            return Vec::new();
        };
        if missed.is_empty() {
            return Vec::new();
        }
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let mitras: Vec<Uuid> = missed.iter().map(|(_, mitra)| *mitra).collect();
        let counted = async {
            let rows = self.db.query(&q::COUNT_MISSED, &[&mitras, &limit]).await?;
            let mut away = Vec::new();
            for row in &rows {
                if column::<bool>(row, "away")? {
                    away.push(MitraId::new(column::<Uuid>(row, "id")?));
                }
            }
            Ok::<_, TruthError>(away)
        };
        counted.await.unwrap_or_else(|error| {
            tracing::warn!(error = %error, "missed offers not counted");
            Vec::new()
        })
    }
}

fn seconds(duration: Duration) -> f64 {
    duration.as_seconds_f64()
}

/// Expires the open offers of `sessions`: (session, mitra) of each.
async fn expire_open_offers(
    tx: &impl GenericClient,
    metrics: &Metrics,
    sessions: &[Uuid],
) -> Result<Vec<(Uuid, Uuid)>, TruthError> {
    let sessions = sessions.to_vec();
    let rows = run(tx, metrics, &q::EXPIRE_OPEN_OFFERS, &[&sessions]).await?;
    rows.iter()
        .map(|row| Ok((column(row, "session_id")?, column(row, "mitra_id")?)))
        .collect()
}

fn ids(rows: &[Row], name: &str) -> Result<Vec<Uuid>, TruthError> {
    rows.iter().map(|row| column(row, name)).collect()
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
            &seconds(limit.timeouts.blast),
            &seconds(limit.timeouts.payment),
            &seconds(limit.timeouts.queue),
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
        nobody: WhenNobody,
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
        let queue = nobody == WhenNobody::Queue;
        let rows = run(
            &tx,
            metrics,
            &q::CREATE_BLAST,
            &[
                &customer,
                &minutes,
                &mitras,
                &queue,
                &seconds(limit.timeouts.offer),
                &seconds(limit.timeouts.blast),
            ],
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
        if run(&tx, metrics, &q::LOCK_SESSION, &[&id])
            .await?
            .is_empty()
        {
            return Ok(AcceptOutcome::NotOffered);
        }
        let check = first_row(
            run(&tx, metrics, &q::ACCEPT_CHECK, &[&id, &mitra]).await?,
            &q::ACCEPT_CHECK,
        )?;
        if column::<bool>(&check, "won")? {
            // A retry of the winning accept: the caller answers the session it won.
            return Ok(AcceptOutcome::Taken);
        }
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
        let mitra = mitra.uuid();
        let mut client = self.db.client().await?;
        // Dropping the transaction without `commit` rolls it back.
        let tx = client.transaction().await.map_err(classify)?;
        let metrics = self.db.metrics();
        // The mitra row first, as accept takes it (the reject may reset its missed count).
        if lock_mitra(&tx, metrics, mitra).await?.is_none() {
            return Ok(false);
        }
        let rows = run(&tx, metrics, &q::REJECT, &[&id, &mitra]).await?;
        let reached = column(&first_row(rows, &q::REJECT)?, "reached")?;
        tx.commit().await.map_err(classify)?;
        Ok(reached)
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
        let mut client = self.db.client().await?;
        // Dropping the transaction without `commit` rolls it back.
        let tx = client.transaction().await.map_err(classify)?;
        let metrics = self.db.metrics();
        let rows = run(&tx, metrics, &q::END, &[&id, &customer, &mitra, &reason]).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let session = session_row(row)?;
        let events = Transition {
            left_line: column(row, "left_line")?,
            ..Transition::default()
        };
        append_events(&tx, metrics, &[session.id], events).await?;
        tx.commit().await.map_err(classify)?;
        Ok(Some(session))
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
        timeouts: Timeouts,
        missed_limit: Option<u32>,
        limit: u32,
    ) -> Result<Moved, TruthError> {
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
                &seconds(timeouts.blast),
                &seconds(timeouts.payment),
                &i64::from(limit),
                &seconds(timeouts.queue),
            ],
        )
        .await?;
        let moved = rows
            .iter()
            .map(session_row)
            .collect::<Result<Vec<_>, _>>()?;
        let reason = |s: &ChatSession, r: &str| s.end_reason.as_deref() == Some(r);
        let timed_out: Vec<Uuid> = moved
            .iter()
            .filter(|s| reason(s, "blast_timeout"))
            .map(|s| s.id)
            .collect();
        let expired = if timed_out.is_empty() {
            Vec::new()
        } else {
            expire_open_offers(&tx, metrics, &timed_out).await?
        };
        let ids: Vec<Uuid> = moved.iter().map(|s| s.id).collect();
        let events = Transition {
            left_line: moved.iter().any(|s| reason(s, "queue_timeout")),
            expired: expired.clone(),
            ..Transition::default()
        };
        append_events(&tx, metrics, &ids, events).await?;
        tx.commit().await.map_err(classify)?;
        let away = self.count_missed(&expired, missed_limit).await;
        Ok(Moved {
            sessions: moved,
            away,
        })
    }

    async fn due_rounds(&self, limit: u32) -> Result<Vec<DueRound>, TruthError> {
        let rows = self.db.query(&q::DUE_ROUNDS, &[&i64::from(limit)]).await?;
        rows.iter()
            .map(|row| {
                let round: i32 = column(row, "offer_round")?;
                let offered: Vec<Uuid> = column(row, "offered")?;
                Ok(DueRound {
                    session: column(row, "id")?,
                    round: u32::try_from(round).map_err(|e| TruthError::Query(Box::new(e)))?,
                    offered: offered.into_iter().map(MitraId::new).collect(),
                })
            })
            .collect()
    }

    async fn next_round(
        &self,
        round: &DueRound,
        notify: &[MitraId],
        timeouts: Timeouts,
        missed_limit: Option<u32>,
    ) -> Result<Option<Moved>, TruthError> {
        let number = i32::try_from(round.round).map_err(|e| TruthError::Query(Box::new(e)))?;
        let (offer, blast) = (seconds(timeouts.offer), seconds(timeouts.blast));
        let mut client = self.db.client().await?;
        // Dropping the transaction without `commit` rolls it back.
        let tx = client.transaction().await.map_err(classify)?;
        let metrics = self.db.metrics();
        let rows = run(
            &tx,
            metrics,
            &q::NEXT_ROUND,
            &[&round.session, &number, &offer, &blast],
        )
        .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let session = session_row(row)?;
        let expired = expire_open_offers(&tx, metrics, &[session.id]).await?;
        let mitras: Vec<Uuid> = notify.iter().map(|id| id.uuid()).collect();
        run(
            &tx,
            metrics,
            &q::INSERT_OFFERS,
            &[&session.id, &mitras, &offer, &blast],
        )
        .await?;
        let events = Transition {
            blast: Some(timeouts.blast),
            expired: expired.clone(),
            offers_only: true,
            ..Transition::default()
        };
        append_events(&tx, metrics, &[session.id], events).await?;
        tx.commit().await.map_err(classify)?;
        let away = self.count_missed(&expired, missed_limit).await;
        Ok(Some(Moved {
            sessions: vec![session],
            away,
        }))
    }

    async fn queued(&self, limit: u32) -> Result<Vec<Uuid>, TruthError> {
        let rows = self.db.query(&q::QUEUED, &[&i64::from(limit)]).await?;
        ids(&rows, "id")
    }

    async fn mitras_with_open_offers(
        &self,
        timeouts: Timeouts,
    ) -> Result<Vec<MitraId>, TruthError> {
        let rows = self
            .db
            .query(&q::OPEN_OFFER_HOLDERS, &[&seconds(timeouts.blast)])
            .await?;
        Ok(ids(&rows, "mitra_id")?
            .into_iter()
            .map(MitraId::new)
            .collect())
    }

    async fn dispatch(
        &self,
        assignments: &[(Uuid, Vec<MitraId>)],
        timeouts: Timeouts,
    ) -> Result<Vec<ChatSession>, TruthError> {
        let (offer, blast) = (seconds(timeouts.offer), seconds(timeouts.blast));
        let queue = seconds(timeouts.queue);
        let mut client = self.db.client().await?;
        // Dropping the transaction without `commit` rolls it back.
        let tx = client.transaction().await.map_err(classify)?;
        let metrics = self.db.metrics();
        let mut started = Vec::new();
        for (id, notify) in assignments {
            let rows = run(&tx, metrics, &q::DISPATCH, &[id, &offer, &blast, &queue]).await?;
            let Some(row) = rows.first() else { continue };
            let mitras: Vec<Uuid> = notify.iter().map(|m| m.uuid()).collect();
            run(
                &tx,
                metrics,
                &q::INSERT_OFFERS,
                &[id, &mitras, &offer, &blast],
            )
            .await?;
            started.push(session_row(row)?);
        }
        if started.is_empty() {
            return Ok(started);
        }
        let ids: Vec<Uuid> = started.iter().map(|s| s.id).collect();
        let events = Transition {
            blast: Some(timeouts.blast),
            left_line: true,
            ..Transition::default()
        };
        append_events(&tx, metrics, &ids, events).await?;
        tx.commit().await.map_err(classify)?;
        Ok(started)
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
