//! `AvailabilityTruth`, `SettingsStore` and `MitraDirectory` over a deadpool pool: every call
//! is one named, prepared statement, except the recount and a settings change (transactions).

use crate::db::{column, first_row, run, Db};
use crate::error::classify;
use crate::queries;
use async_trait::async_trait;
use deadpool_postgres::Pool;
use halo_domain::{
    AppSettings, IdleRank, MitraId, MitraState, MitraTruth, SettingError, SettingKey, TruthSnapshot,
};
use halo_metrics::Metrics;
use halo_ports::{
    AvailabilityTruth, CapacityCount, MitraDirectory, MitraFlags, MitraRow, OfflineSweep,
    OnlineReason, SettingChange, SettingsStore, TruthError,
};
use std::collections::BTreeSet;
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

#[derive(Clone)]
pub struct PgTruth {
    db: Db,
}

impl PgTruth {
    pub fn new(pool: Pool, metrics: Metrics) -> Self {
        Self {
            db: Db::new(pool, metrics),
        }
    }
}

fn count(row: &Row, name: &str) -> Result<u32, TruthError> {
    let n: i64 = column(row, name)?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

fn idle_rank(row: &Row) -> Result<IdleRank, TruthError> {
    let value: f64 = column(row, "idle_rank")?;
    IdleRank::from_value(value)
        .ok_or_else(|| TruthError::Query(format!("idle_rank is not a number: {value}").into()))
}

fn state_row(row: &Row) -> Result<(MitraId, MitraState), TruthError> {
    let id: Uuid = column(row, "id")?;
    let state = MitraState {
        online: column(row, "is_online")?,
        active: column(row, "is_active")?,
        last_heartbeat: column(row, "last_heartbeat_at")?,
        open_sessions: count(row, "open_sessions")?,
    };
    Ok((MitraId::new(id), state))
}

fn mitra_row(row: &Row) -> Result<MitraRow, TruthError> {
    Ok(MitraRow {
        id: MitraId::new(column(row, "id")?),
        phone: column(row, "phone")?,
        display_name: column(row, "display_name")?,
        active: column(row, "is_active")?,
        online: column(row, "is_online")?,
        created_at: column(row, "created_at")?,
    })
}

fn flags_row(row: &Row) -> Result<MitraFlags, TruthError> {
    Ok(MitraFlags {
        active: column(row, "is_active")?,
        online: column(row, "is_online")?,
    })
}

/// The settings in `app_config` rows (`key`, `value`), validated; keys this version does not
/// know are someone else's settings and are skipped.
fn settings_from(rows: &[Row]) -> Result<AppSettings, TruthError> {
    let mut pairs = Vec::with_capacity(rows.len());
    for row in rows {
        let key: String = column(row, "key")?;
        let Ok(key) = key.parse::<SettingKey>() else {
            continue;
        };
        pairs.push((key, json_integer(row, "value")?));
    }
    let (settings, repaired) =
        AppSettings::from_stored(pairs).map_err(|e| TruthError::Query(Box::new(e)))?;
    if let Some(rule) = repaired {
        tracing::warn!(%rule, "app_config breaks a rule of this version; using the safe value until an operator saves one");
    }
    Ok(settings)
}

/// A jsonb column that holds an integer.
fn json_integer(row: &Row, name: &str) -> Result<i64, TruthError> {
    let value: serde_json::Value = column(row, name)?;
    value.as_i64().ok_or_else(|| {
        TruthError::Query(format!("app_config {name} is not an integer: {value}").into())
    })
}

impl PgTruth {
    /// The database's clock (an empty truth has no row to carry it).
    async fn database_now(&self) -> Result<OffsetDateTime, TruthError> {
        let row = self.db.query_one(&queries::DATABASE_NOW, &[]).await?;
        column(&row, "now")
    }
}

fn uuids(ids: &[MitraId]) -> Vec<Uuid> {
    ids.iter().map(|id| id.uuid()).collect()
}

impl PgTruth {
    /// Creates the operator, or replaces its password when the email exists.
    pub async fn upsert_operator(
        &self,
        email: &str,
        password_hash: &str,
    ) -> Result<Uuid, TruthError> {
        let row = self
            .db
            .query_one(&queries::UPSERT_OPERATOR, &[&email, &password_hash])
            .await?;
        column(&row, "id")
    }
}

#[async_trait]
impl AvailabilityTruth for PgTruth {
    async fn ping(&self) -> Result<(), TruthError> {
        self.db.query(&queries::PING, &[]).await.map(|_| ())
    }

    async fn set_online(
        &self,
        id: MitraId,
        online: bool,
        reason: OnlineReason,
    ) -> Result<bool, TruthError> {
        let row = self
            .db
            .query_one(
                &queries::SET_ONLINE,
                &[&id.uuid(), &online, &reason.as_str()],
            )
            .await?;
        if !column::<bool>(&row, "known")? {
            return Err(TruthError::MitraNotFound);
        }
        column(&row, "changed")
    }

    async fn set_offline_many(
        &self,
        ids: &[MitraId],
        reason: OnlineReason,
        stale_before: OffsetDateTime,
    ) -> Result<OfflineSweep, TruthError> {
        let rows = self
            .db
            .query(
                &queries::SET_OFFLINE_MANY,
                &[&uuids(ids), &reason.as_str(), &stale_before],
            )
            .await?;
        let mut sweep = OfflineSweep::default();
        for row in &rows {
            let id = MitraId::new(column(row, "mitra_id")?);
            let last: Option<OffsetDateTime> = column(row, "last_heartbeat_at")?;
            match (
                column::<bool>(row, "changed")?,
                column(row, "is_online")?,
                last,
            ) {
                (true, _, _) => sweep.changed.push(id),
                (false, false, _) => sweep.already_offline.push(id),
                (false, true, Some(at)) => sweep.fresh.push((id, at)),
                // Online, no heartbeat, not changed: only a row the guard did not match, which
                // cannot happen without a heartbeat; leave it to the next tick.
                (false, true, None) => {}
            }
        }
        Ok(sweep)
    }

    async fn set_active(&self, id: MitraId, active: bool) -> Result<(), TruthError> {
        match self
            .db
            .execute(&queries::SET_ACTIVE, &[&id.uuid(), &active])
            .await?
        {
            0 => Err(TruthError::MitraNotFound),
            _ => Ok(()),
        }
    }

    async fn heartbeat_fallback(
        &self,
        id: MitraId,
        at: OffsetDateTime,
    ) -> Result<Option<MitraFlags>, TruthError> {
        let rows = self
            .db
            .query(&queries::HEARTBEAT_FALLBACK, &[&id.uuid(), &at])
            .await?;
        rows.first().map(flags_row).transpose()
    }

    async fn mitra_flags(&self, id: MitraId) -> Result<Option<MitraFlags>, TruthError> {
        let rows = self.db.query(&queries::MITRA_FLAGS, &[&id.uuid()]).await?;
        rows.first().map(flags_row).transpose()
    }

    async fn count_open_sessions(&self, id: MitraId) -> Result<CapacityCount, TruthError> {
        let mut client = self.db.client().await?;
        // Dropping the transaction without `commit` rolls it back.
        let tx = client.transaction().await.map_err(classify)?;
        let metrics = self.db.metrics();
        let seq = run(&tx, metrics, &queries::NEXT_CAPACITY_SEQ, &[&id.uuid()]).await?;
        let seq = match seq.first() {
            Some(row) => column::<i64>(row, "capacity_seq")?,
            None => return Err(TruthError::MitraNotFound),
        };
        let counted = run(&tx, metrics, &queries::OPEN_SESSION_COUNT, &[&id.uuid()]).await?;
        let counted = first_row(counted, &queries::OPEN_SESSION_COUNT)?;
        let open = count(&counted, "count")?;
        let idle_rank = idle_rank(&counted)?;
        tx.commit().await.map_err(classify)?;
        Ok(CapacityCount {
            open,
            seq: u64::try_from(seq).unwrap_or(0),
            idle_rank,
        })
    }

    async fn mitra_states(
        &self,
        ids: &[MitraId],
    ) -> Result<Vec<(MitraId, MitraState)>, TruthError> {
        let ids: Vec<Uuid> = ids.iter().map(|id| id.uuid()).collect();
        let rows = self.db.query(&queries::MITRA_STATES, &[&ids]).await?;
        rows.iter().map(state_row).collect()
    }

    async fn candidate_states(&self) -> Result<Vec<(MitraId, MitraState)>, TruthError> {
        let rows = self.db.query(&queries::CANDIDATE_STATES, &[]).await?;
        rows.iter().map(state_row).collect()
    }

    async fn offer_candidates(
        &self,
        limit: usize,
        exclude: &BTreeSet<MitraId>,
        fresh_since: OffsetDateTime,
        max_customers: u32,
    ) -> Result<Vec<(MitraId, MitraState)>, TruthError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let exclude: Vec<Uuid> = exclude.iter().map(|id| id.uuid()).collect();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .db
            .query(
                &queries::OFFER_CANDIDATES,
                &[&fresh_since, &i64::from(max_customers), &exclude, &limit],
            )
            .await?;
        rows.iter().map(state_row).collect()
    }

    async fn count_online(&self) -> Result<u64, TruthError> {
        let row = self.db.query_one(&queries::COUNT_ONLINE, &[]).await?;
        Ok(u64::from(count(&row, "count")?))
    }

    async fn mirror_truth(&self) -> Result<TruthSnapshot, TruthError> {
        // One statement = one snapshot: flags and counts are mutually consistent.
        let rows = self.db.query(&queries::MIRROR_TRUTH, &[]).await?;
        let read_at = match rows.first() {
            Some(row) => column(row, "read_at")?,
            None => self.database_now().await?,
        };
        let mitras = rows
            .iter()
            .map(|r| {
                let seq: i64 = column(r, "capacity_seq")?;
                Ok(MitraTruth {
                    id: MitraId::new(column(r, "id")?),
                    active: column(r, "is_active")?,
                    online: column(r, "is_online")?,
                    open_sessions: count(r, "open_sessions")?,
                    last_heartbeat: column(r, "last_heartbeat_at")?,
                    capacity_seq: u64::try_from(seq).unwrap_or(0),
                    idle_rank: idle_rank(r)?,
                })
            })
            .collect::<Result<_, TruthError>>()?;
        Ok(TruthSnapshot { mitras, read_at })
    }

    async fn record_heartbeats(
        &self,
        beats: &[(MitraId, OffsetDateTime)],
    ) -> Result<u64, TruthError> {
        if beats.is_empty() {
            return Ok(0);
        }
        let (ids, stamps): (Vec<Uuid>, Vec<OffsetDateTime>) =
            beats.iter().map(|(id, at)| (id.uuid(), *at)).unzip();
        self.db
            .execute(&queries::RECORD_HEARTBEATS, &[&ids, &stamps])
            .await
    }
}

#[async_trait]
impl SettingsStore for PgTruth {
    async fn load_settings(&self) -> Result<AppSettings, TruthError> {
        settings_from(&self.db.query(&queries::LOAD_SETTINGS, &[]).await?)
    }

    async fn change_settings(
        &self,
        changes: &[(SettingKey, i64)],
        changed_by: Uuid,
    ) -> Result<Result<AppSettings, SettingError>, TruthError> {
        let mut client = self.db.client().await?;
        // Dropping the transaction without `commit` rolls it back.
        let tx = client.transaction().await.map_err(classify)?;
        let metrics = self.db.metrics();
        run(&tx, metrics, &queries::LOCK_SETTINGS, &[]).await?;
        let current = settings_from(&run(&tx, metrics, &queries::LOAD_SETTINGS, &[]).await?)?;
        let next = match current.with_changes(changes.iter().copied()) {
            Ok(next) => next,
            Err(invalid) => return Ok(Err(invalid)),
        };
        for (key, new) in next.pairs() {
            let old = current.get(key);
            if old == new {
                continue;
            }
            let (old, new) = (i64::from(old), i64::from(new));
            run(
                &tx,
                metrics,
                &queries::SAVE_SETTING,
                &[&key.as_str(), &new, &changed_by],
            )
            .await?;
            run(
                &tx,
                metrics,
                &queries::RECORD_SETTING_CHANGE,
                &[&key.as_str(), &old, &new, &changed_by],
            )
            .await?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(Ok(next))
    }

    async fn settings_history(&self, limit: u32) -> Result<Vec<SettingChange>, TruthError> {
        let rows = self
            .db
            .query(&queries::SETTINGS_HISTORY, &[&i64::from(limit)])
            .await?;
        rows.iter()
            .map(|row| {
                Ok(SettingChange {
                    key: column(row, "key")?,
                    old: json_integer(row, "old_value")?,
                    new: json_integer(row, "new_value")?,
                    changed_by: column(row, "changed_by")?,
                    changed_at: column(row, "changed_at")?,
                })
            })
            .collect()
    }
}

#[async_trait]
impl MitraDirectory for PgTruth {
    async fn create_mitra(&self, phone: &str, display_name: &str) -> Result<MitraRow, TruthError> {
        match self
            .db
            .query_one(&queries::CREATE_MITRA, &[&phone, &display_name])
            .await
        {
            Err(TruthError::Query(cause)) if is_unique_violation(cause.as_ref()) => Err(
                TruthError::Conflict(format!("a mitra with phone {phone} exists")),
            ),
            other => mitra_row(&other?),
        }
    }

    async fn list_mitras(
        &self,
        offset: u32,
        limit: u32,
    ) -> Result<(Vec<MitraRow>, u64), TruthError> {
        let rows = self
            .db
            .query(
                &queries::LIST_MITRAS,
                &[&i64::from(offset), &i64::from(limit)],
            )
            .await?;
        let total = count(
            &self.db.query_one(&queries::COUNT_MITRAS, &[]).await?,
            "count",
        )?;
        Ok((
            rows.iter().map(mitra_row).collect::<Result<_, _>>()?,
            u64::from(total),
        ))
    }

    async fn mitra_row(&self, id: MitraId) -> Result<Option<MitraRow>, TruthError> {
        let rows = self.db.query(&queries::MITRA_ROW, &[&id.uuid()]).await?;
        rows.first().map(mitra_row).transpose()
    }
}

/// SQLSTATE 23505: the row breaks a unique constraint.
fn is_unique_violation(cause: &(dyn std::error::Error + 'static)) -> bool {
    cause
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::code)
        .is_some_and(|code| *code == tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}
