//! `EventLog` over the pool, and `append_events`, which the chat transitions call last in their
//! transactions. The order guarantee rests on `LOCK_EVENT_ORDER` (see migration V7).

use crate::chat_queries as chat_q;
use crate::chat_store::session_row;
use crate::db::{column, first_row, run, Db};
use crate::error::classify;
use crate::event_queries as q;
use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Pool};
use halo_domain::{MitraId, SessionStatus};
use halo_metrics::Metrics;
use halo_ports::{
    AppEvent, Audience, AudienceKind, ChatSession, EventBatch, EventLog, LoggedEvent, OnlineReason,
    QueuePlace, SessionView, StateAt, Timeouts, TruthError, WithdrawReason,
};
use time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::IsolationLevel;
use tokio_postgres::Row;
use uuid::Uuid;

/// What a transition tells `append_events` beyond the sessions' new state.
#[derive(Debug, Clone, Default)]
pub(crate) struct Transition {
    /// The accept: the other notified mitras get `offer_withdrawn{taken}`.
    pub taken: bool,
    /// A reroute: the mitra the session left gets `session{reassigned}`.
    pub previous: Option<Uuid>,
    /// The blast timeout: offers written before rounds existed expire this long after their
    /// search started.
    pub blast: Option<Duration>,
    /// Sessions left the line: everyone still in it gets its new place.
    pub left_line: bool,
    /// The offers this transition expired, (session, mitra): each mitra gets
    /// `offer_withdrawn{expired}`.
    pub expired: Vec<(Uuid, Uuid)>,
    /// Only the offers changed (a new round): no `session` events.
    pub offers_only: bool,
}

/// Appends the events of `sessions`' transitions, last in the transaction: the order lock, then
/// the rows (pipelined: one round trip). The caller commits right after; the lock is released
/// only once that commit is visible.
pub(crate) async fn append_events(
    tx: &impl GenericClient,
    metrics: &Metrics,
    sessions: &[Uuid],
    transition: Transition,
) -> Result<(), TruthError> {
    if sessions.is_empty() {
        return Ok(());
    }
    let taken = transition.taken.then_some(WithdrawReason::Taken.as_str());
    let blast = transition.blast.unwrap_or(Duration::ZERO).as_seconds_f64();
    let sessions = sessions.to_vec();
    let (expired_sessions, expired_mitras): (Vec<Uuid>, Vec<Uuid>) =
        transition.expired.iter().copied().unzip();
    let params: [&(dyn ToSql + Sync); 7] = [
        &sessions,
        &taken,
        &transition.previous,
        &blast,
        &expired_sessions,
        &expired_mitras,
        &transition.offers_only,
    ];
    tokio::try_join!(
        run(tx, metrics, &q::LOCK_EVENT_ORDER, &[]),
        run(tx, metrics, &q::APPEND_TRANSITION_EVENTS, &params),
    )?;
    if transition.left_line {
        run(tx, metrics, &q::APPEND_QUEUE_PLACES, &[]).await?;
    }
    Ok(())
}

/// Appends `away{reason}` for mitras the system set offline, last in the transaction.
pub(crate) async fn append_away(
    tx: &impl GenericClient,
    metrics: &Metrics,
    mitras: &[Uuid],
    reason: OnlineReason,
) -> Result<(), TruthError> {
    if mitras.is_empty() {
        return Ok(());
    }
    let mitras = mitras.to_vec();
    let reason = reason.as_str();
    let params: [&(dyn ToSql + Sync); 2] = [&mitras, &reason];
    tokio::try_join!(
        run(tx, metrics, &q::LOCK_EVENT_ORDER, &[]),
        run(tx, metrics, &q::APPEND_AWAY, &params),
    )?;
    Ok(())
}

#[derive(Clone)]
pub struct PgEvents {
    db: Db,
}

impl PgEvents {
    pub fn new(pool: Pool, metrics: Metrics) -> Self {
        Self {
            db: Db::new(pool, metrics),
        }
    }
}

fn bad(what: &str, value: &str) -> TruthError {
    TruthError::Query(format!("app_events: unknown {what} {value:?}").into())
}

fn audience_kind(raw: &str) -> Result<AudienceKind, TruthError> {
    match raw {
        "customer" => Ok(AudienceKind::Customer),
        "mitra" => Ok(AudienceKind::Mitra),
        other => Err(bad("audience", other)),
    }
}

fn audience_param(kind: AudienceKind) -> &'static str {
    match kind {
        AudienceKind::Customer => "customer",
        AudienceKind::Mitra => "mitra",
    }
}

fn reason(raw: &str) -> Result<WithdrawReason, TruthError> {
    match raw {
        "taken" => Ok(WithdrawReason::Taken),
        "expired" => Ok(WithdrawReason::Expired),
        "cancelled" => Ok(WithdrawReason::Cancelled),
        other => Err(bad("reason", other)),
    }
}

fn away_reason(raw: &str) -> Result<OnlineReason, TruthError> {
    match raw {
        "missed_offers" => Ok(OnlineReason::MissedOffers),
        "deactivated" => Ok(OnlineReason::Deactivated),
        other => Err(bad("away reason", other)),
    }
}

fn view(raw: &str) -> Result<SessionView, TruthError> {
    if raw == "reassigned" {
        return Ok(SessionView::Reassigned);
    }
    raw.parse::<SessionStatus>()
        .map(SessionView::Is)
        .map_err(|_| bad("status", raw))
}

fn required<T>(value: Option<T>, name: &str) -> Result<T, TruthError> {
    value.ok_or_else(|| TruthError::Query(format!("app_events: {name} is null").into()))
}

/// A queued session's place, from the `queue_position` / `estimated_wait_seconds` columns.
fn queue_place(row: &Row) -> Result<Option<QueuePlace>, TruthError> {
    let position: Option<i32> = column(row, "queue_position")?;
    let wait: Option<i32> = column(row, "estimated_wait_seconds")?;
    let unsigned = |n: i32| u32::try_from(n).map_err(|e| TruthError::Query(Box::new(e)));
    Ok(match position {
        Some(position) => Some(QueuePlace {
            position: unsigned(position)?,
            estimated_wait_seconds: wait.map(unsigned).transpose()?,
        }),
        None => None,
    })
}

fn event_row(row: &Row) -> Result<LoggedEvent, TruthError> {
    let kind: String = column(row, "kind")?;
    if kind == "availability" {
        let count: i32 = required(column(row, "available_count")?, "available_count")?;
        return Ok(LoggedEvent {
            seq: column(row, "seq")?,
            audience: audience_kind(&column::<String>(row, "audience")?)?,
            recipients: column(row, "recipients")?,
            event: AppEvent::Availability {
                available: count > 0,
                count: u32::try_from(count).map_err(|e| TruthError::Query(Box::new(e)))?,
            },
        });
    }
    if kind == "away" {
        return Ok(LoggedEvent {
            seq: column(row, "seq")?,
            audience: audience_kind(&column::<String>(row, "audience")?)?,
            recipients: column(row, "recipients")?,
            event: AppEvent::Away {
                reason: away_reason(&required::<String>(column(row, "reason")?, "reason")?)?,
            },
        });
    }
    let session_id: Uuid = required(column(row, "session_id")?, "session_id")?;
    let event = match kind.as_str() {
        "offer" => {
            let minutes: i32 = required(column(row, "minutes")?, "minutes")?;
            AppEvent::Offer {
                session_id,
                minutes: u32::try_from(minutes).map_err(|e| TruthError::Query(Box::new(e)))?,
                expires_at: required(column(row, "expires_at")?, "expires_at")?,
            }
        }
        "offer_withdrawn" => AppEvent::OfferWithdrawn {
            session_id,
            reason: reason(&required::<String>(column(row, "reason")?, "reason")?)?,
        },
        "session" => AppEvent::Session {
            session_id,
            status: view(&required::<String>(column(row, "status")?, "status")?)?,
            mitra_id: column::<Option<Uuid>>(row, "mitra_id")?.map(MitraId::new),
            ends_at: column(row, "ends_at")?,
            queue: queue_place(row)?,
        },
        other => return Err(bad("kind", other)),
    };
    Ok(LoggedEvent {
        seq: column(row, "seq")?,
        audience: audience_kind(&column::<String>(row, "audience")?)?,
        recipients: column(row, "recipients")?,
        event,
    })
}

fn sessions(rows: &[Row]) -> Result<Vec<ChatSession>, TruthError> {
    rows.iter().map(session_row).collect()
}

#[async_trait]
impl EventLog for PgEvents {
    async fn head(&self) -> Result<i64, TruthError> {
        column(&self.db.query_one(&q::EVENTS_HEAD, &[]).await?, "head")
    }

    async fn read_after(&self, after: i64, limit: u32) -> Result<EventBatch, TruthError> {
        let rows = self
            .db
            .query(&q::EVENTS_AFTER, &[&after, &i64::from(limit)])
            .await?;
        let through = rows.last().map(|row| column(row, "seq")).transpose()?;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            match event_row(row) {
                Ok(event) => events.push(event),
                Err(error) => {
                    tracing::warn!(error = %error, "app event this version cannot read; skipped")
                }
            }
        }
        Ok(EventBatch {
            events,
            through,
            full: rows.len() == limit as usize,
        })
    }

    async fn read_for(
        &self,
        audience: Audience,
        after: i64,
        limit: u32,
    ) -> Result<Vec<LoggedEvent>, TruthError> {
        let kind = audience_param(audience.kind());
        let rows = self
            .db
            .query(
                &q::EVENTS_FOR,
                &[&kind, &audience.id(), &after, &i64::from(limit)],
            )
            .await?;
        rows.iter().map(event_row).collect()
    }

    async fn resumable(&self, after: i64) -> Result<bool, TruthError> {
        column(
            &self.db.query_one(&q::EVENTS_RESUMABLE, &[&after]).await?,
            "resumable",
        )
    }

    /// One read-only repeatable-read transaction: the position and the state share a snapshot.
    async fn state(&self, audience: Audience, timeouts: Timeouts) -> Result<StateAt, TruthError> {
        let mut client = self.db.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(classify)?;
        let metrics = self.db.metrics();
        let head = first_row(
            run(&tx, metrics, &q::EVENTS_HEAD, &[]).await?,
            &q::EVENTS_HEAD,
        )?;
        let id = audience.id();
        let availability = match audience {
            Audience::Customer(_) => run(&tx, metrics, &q::NEWEST_AVAILABILITY, &[])
                .await?
                .first()
                .map(event_row)
                .transpose()?
                .map(|logged| logged.event),
            Audience::Mitra(_) => None,
        };
        let (offers, open) = match audience {
            Audience::Mitra(_) => {
                let blast = timeouts.blast.as_seconds_f64();
                let offers: [&(dyn ToSql + Sync); 2] = [&id, &blast];
                let open: [&(dyn ToSql + Sync); 1] = [&id];
                tokio::try_join!(
                    run(&tx, metrics, &chat_q::OPEN_REQUESTS, &offers),
                    run(&tx, metrics, &q::MITRA_OPEN_SESSION_ROWS, &open),
                )?
            }
            Audience::Customer(_) => (
                Vec::new(),
                run(&tx, metrics, &q::CUSTOMER_OPEN_SESSION_ROWS, &[&id]).await?,
            ),
        };
        tx.commit().await.map_err(classify)?;
        let offers = offers
            .iter()
            .map(|row| Ok((session_row(row)?, column(row, "offer_expires_at")?)))
            .collect::<Result<_, TruthError>>()?;
        let queue = open
            .iter()
            .filter_map(|row| match queue_place(row) {
                Ok(Some(place)) => Some(column(row, "id").map(|id| (id, place))),
                Ok(None) => None,
                Err(error) => Some(Err(error)),
            })
            .collect::<Result<_, TruthError>>()?;
        Ok(StateAt {
            position: column(&head, "head")?,
            offers,
            sessions: sessions(&open)?,
            queue,
            availability,
        })
    }

    async fn append_availability(&self, count: u32) -> Result<bool, TruthError> {
        let count = i32::try_from(count).unwrap_or(i32::MAX);
        let mut client = self.db.client().await?;
        let tx = client.transaction().await.map_err(classify)?;
        let metrics = self.db.metrics();
        // One after the other, not pipelined: the guard must read the log only once the order
        // lock is held (a pipelined statement whose plan is cached could run first).
        run(&tx, metrics, &q::LOCK_EVENT_ORDER, &[]).await?;
        let appended = run(&tx, metrics, &q::APPEND_AVAILABILITY, &[&count]).await?;
        tx.commit().await.map_err(classify)?;
        Ok(!appended.is_empty())
    }

    async fn append_away(&self, mitra: MitraId, reason: OnlineReason) -> Result<(), TruthError> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await.map_err(classify)?;
        append_away(&tx, self.db.metrics(), &[mitra.uuid()], reason).await?;
        tx.commit().await.map_err(classify)
    }

    async fn prune(&self, older_than: Duration, limit: u32) -> Result<u64, TruthError> {
        self.db
            .execute(
                &q::PRUNE_EVENTS,
                &[&older_than.as_seconds_f64(), &i64::from(limit)],
            )
            .await
    }
}
