//! The request paths' side of the mirror: one command, pipeline or script each (the heartbeat
//! of a mitra without a key takes a second, guarded, round trip).

use super::{ensure_seeded, format_time, ValkeyMirror};
use crate::{replies, scripts};
use async_trait::async_trait;
use halo_domain::{AvailabilityRules, MitraId, MitraState};
use halo_ports::{CapacityCount, HeartbeatOutcome, MirrorError, MirrorHotPath};
use redis::Value;
use std::collections::BTreeSet;
use time::OffsetDateTime;

impl ValkeyMirror {
    /// The heartbeat as one Lua script: guard and write in one atomic step, creating the key.
    async fn heartbeat_guarded(
        &self,
        member: String,
        heartbeat_key: String,
        at: String,
    ) -> Result<HeartbeatOutcome, MirrorError> {
        let mut invocation = self.writing(&scripts::HEARTBEAT);
        invocation
            .key(self.keys.generation())
            .key(self.keys.deactivated())
            .key(self.keys.online())
            .key(heartbeat_key)
            .arg(member)
            .arg(at);
        let code: i64 = self.call("heartbeat_guarded", &invocation).await?;
        match code {
            0 => Ok(HeartbeatOutcome::Deactivated),
            1 => Ok(HeartbeatOutcome::Recorded),
            2 => Ok(HeartbeatOutcome::Offline),
            3 => Err(MirrorError::Unseeded),
            other => Err(MirrorError::Corrupt(format!(
                "heartbeat script returned {other}"
            ))),
        }
    }
}

#[async_trait]
impl MirrorHotPath for ValkeyMirror {
    /// One command, no Lua (a script costs the server ~3 µs per call, more than a `SET`):
    /// `SET … XX` refreshes the heartbeat key only if it exists, and it exists exactly while
    /// the mitra is online and active (`mark_online`, `mark_offline`, `set_deactivated` and the
    /// seed keep it so), so a ping never creates a key nor refreshes a deactivated mitra. No
    /// key takes the guarded script, which tells an unseeded mirror (flushed or restarted
    /// empty), deactivated (403), offline (an app not yet told it was swept) and a lost key
    /// (recorded) apart; all are rare.
    async fn heartbeat(
        &self,
        id: MitraId,
        at: OffsetDateTime,
    ) -> Result<HeartbeatOutcome, MirrorError> {
        let heartbeat_key = self.keys.heartbeat(id);
        let at = format_time(at);
        let refresh = redis::cmd("SET")
            .arg(&heartbeat_key)
            .arg(&at)
            .arg("XX")
            .to_owned();
        let refreshed: Option<Value> = self.call("heartbeat", &refresh).await?;
        match refreshed {
            Some(_) => Ok(HeartbeatOutcome::Recorded),
            None => {
                self.heartbeat_guarded(id.to_string(), heartbeat_key, at)
                    .await
            }
        }
    }

    async fn mark_online(
        &self,
        id: MitraId,
        at: OffsetDateTime,
        capacity: CapacityCount,
    ) -> Result<(), MirrorError> {
        let mut invocation = self.writing(&scripts::MARK_ONLINE);
        invocation
            .key(self.keys.online())
            .key(self.keys.deactivated())
            .key(self.keys.heartbeat(id))
            .key(self.keys.capacity(id))
            .key(self.keys.capacity_order())
            .key(self.keys.idle_order())
            .key(self.keys.idle_rank())
            .arg(id.to_string())
            .arg(format_time(at))
            .arg(capacity.open)
            .arg(capacity.seq)
            .arg(capacity.idle_rank.value());
        self.call::<i64>("mark_online", &invocation).await.map(drop)
    }

    async fn mark_offline(&self, ids: &[MitraId]) -> Result<(), MirrorError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut invocation = self.writing(&scripts::MARK_OFFLINE);
        invocation
            .key(self.keys.online())
            .key(self.keys.idle_order());
        for id in ids {
            invocation.key(self.keys.heartbeat(*id)).arg(id.to_string());
        }
        self.call::<i64>("mark_offline", &invocation)
            .await
            .map(drop)
    }

    async fn set_deactivated(&self, id: MitraId, deactivated: bool) -> Result<(), MirrorError> {
        let mut invocation = self.writing(&scripts::SET_DEACTIVATED);
        invocation
            .key(self.keys.deactivated())
            .key(self.keys.online())
            .key(self.keys.heartbeat(id))
            .key(self.keys.idle_order())
            .key(self.keys.idle_rank())
            .arg(id.to_string())
            .arg(if deactivated { "1" } else { "0" });
        self.call::<i64>("set_deactivated", &invocation)
            .await
            .map(drop)
    }

    async fn set_capacity(&self, id: MitraId, capacity: CapacityCount) -> Result<(), MirrorError> {
        let mut invocation = self.writing(&scripts::SET_CAPACITY);
        invocation
            .key(self.keys.capacity(id))
            .key(self.keys.capacity_order())
            .key(self.keys.idle_order())
            .key(self.keys.idle_rank())
            .arg(id.to_string())
            .arg(capacity.open)
            .arg(capacity.seq)
            .arg(capacity.idle_rank.value());
        self.call::<i64>("set_capacity", &invocation)
            .await
            .map(drop)
    }

    async fn is_deactivated(&self, id: MitraId) -> Result<bool, MirrorError> {
        let mut pipe = redis::pipe();
        pipe.exists(self.keys.generation())
            .sismember(self.keys.deactivated(), id.to_string());
        let (seeded, deactivated): (bool, bool) = self.call("is_deactivated", &pipe).await?;
        ensure_seeded(seeded)?;
        Ok(deactivated)
    }

    async fn mitra_states(&self, ids: &[MitraId]) -> Result<Vec<MitraState>, MirrorError> {
        let mut pipe = redis::pipe();
        pipe.exists(self.keys.generation());
        for id in ids {
            let member = id.to_string();
            pipe.sismember(self.keys.online(), &member)
                .sismember(self.keys.deactivated(), &member)
                .get(self.keys.heartbeat(*id))
                .get(self.keys.capacity(*id));
        }
        let mut replies: Vec<Value> = self.call("mitra_state", &pipe).await?;
        if replies.len() != 1 + 4 * ids.len() {
            return Err(MirrorError::Corrupt(
                "mitra_state: short pipeline reply".into(),
            ));
        }
        let records = replies.split_off(1);
        ensure_seeded(replies.first().is_some_and(replies::truthy))?;
        Ok(records
            .chunks_exact(4)
            .map(|r| MitraState {
                online: replies::truthy(&r[0]),
                active: !replies::truthy(&r[1]),
                last_heartbeat: replies::time(&r[2]),
                open_sessions: replies::count(&r[3]),
            })
            .collect())
    }

    async fn candidate_states(&self) -> Result<Vec<(MitraId, MitraState)>, MirrorError> {
        Ok(self
            .candidate_records()
            .await?
            .into_iter()
            .map(|(id, last_heartbeat, open_sessions)| {
                let state = MitraState {
                    online: true,
                    active: true,
                    last_heartbeat,
                    open_sessions,
                };
                (id, state)
            })
            .collect())
    }

    async fn offer_candidates(
        &self,
        limit: usize,
        exclude: &BTreeSet<MitraId>,
        now: OffsetDateTime,
        rules: AvailabilityRules,
    ) -> Result<Vec<MitraId>, MirrorError> {
        self.walk_idle_order(limit, exclude, now, rules).await
    }

    async fn online_count(&self) -> Result<u64, MirrorError> {
        let mut pipe = redis::pipe();
        pipe.exists(self.keys.generation())
            .scard(self.keys.online());
        let (seeded, count): (bool, u64) = self.call("online_count", &pipe).await?;
        ensure_seeded(seeded)?;
        Ok(count)
    }
}
