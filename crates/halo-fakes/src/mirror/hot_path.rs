//! The request paths, as the adapter's commands and scripts do them (`heartbeat.lua`,
//! `mark_online.lua`, `mark_offline.lua`, `set_deactivated.lua`, `set_capacity.lua`,
//! `offer_walk.lua`).

use super::{stored, InMemoryMirror};
use async_trait::async_trait;
use halo_domain::{AvailabilityRules, IdleRank, MitraId, MitraState};
use halo_ports::{CapacityCount, HeartbeatOutcome, MirrorError, MirrorHotPath};
use std::collections::BTreeSet;
use time::OffsetDateTime;

#[async_trait]
impl MirrorHotPath for InMemoryMirror {
    /// A key that exists is refreshed without any other check and without a journal entry (the
    /// adapter's `SET … XX`); only a missing key looks at the marker and the sets.
    async fn heartbeat(
        &self,
        id: MitraId,
        at: OffsetDateTime,
    ) -> Result<HeartbeatOutcome, MirrorError> {
        let mut s = self.enter("heartbeat")?;
        if let Some(held) = s.heartbeat.get_mut(&id) {
            *held = stored(at);
            return Ok(HeartbeatOutcome::Recorded);
        }
        s.ensure_seeded()?;
        if s.deactivated.contains(&id) {
            return Ok(HeartbeatOutcome::Deactivated);
        }
        if !s.online.contains(&id) {
            return Ok(HeartbeatOutcome::Offline);
        }
        s.heartbeat.insert(id, stored(at));
        s.touch([id]);
        Ok(HeartbeatOutcome::Recorded)
    }

    async fn mark_online(
        &self,
        id: MitraId,
        at: OffsetDateTime,
        capacity: CapacityCount,
    ) -> Result<(), MirrorError> {
        let mut s = self.enter("mark_online")?;
        s.online.insert(id);
        s.write_count_in_order(id, capacity);
        if !s.deactivated.contains(&id) {
            s.heartbeat.insert(id, stored(at));
            // The rank of the newest count: this one, or a newer recount's that landed first.
            let rank = s.idle_rank.get(&id).copied().unwrap_or(capacity.idle_rank);
            s.idle.insert(id, rank);
        }
        s.touch([id]);
        Ok(())
    }

    async fn mark_offline(&self, ids: &[MitraId]) -> Result<(), MirrorError> {
        if ids.is_empty() {
            self.count("mark_offline");
            return Ok(());
        }
        let mut s = self.enter("mark_offline")?;
        for id in ids {
            s.online.remove(id);
            s.idle.remove(id);
            s.heartbeat.remove(id);
        }
        s.touch(ids.iter().copied());
        Ok(())
    }

    async fn set_deactivated(&self, id: MitraId, deactivated: bool) -> Result<(), MirrorError> {
        let mut s = self.enter("set_deactivated")?;
        if deactivated {
            s.deactivated.insert(id);
            s.online.remove(&id);
            s.idle.remove(&id);
            s.heartbeat.remove(&id);
        } else {
            s.deactivated.remove(&id);
            // Still online (a toggle raced the deactivation): back in the order.
            if let Some(rank) = s.idle_rank.get(&id).copied() {
                if s.online.contains(&id) {
                    s.idle.insert(id, rank);
                }
            }
        }
        s.touch([id]);
        Ok(())
    }

    /// Ordered by `seq`, not journaled (as in the adapter).
    async fn set_capacity(&self, id: MitraId, capacity: CapacityCount) -> Result<(), MirrorError> {
        let mut s = self.enter("set_capacity")?;
        if s.write_count_in_order(id, capacity) && s.idle.contains_key(&id) {
            s.idle.insert(id, capacity.idle_rank);
        }
        Ok(())
    }

    async fn is_deactivated(&self, id: MitraId) -> Result<bool, MirrorError> {
        let s = self.enter("is_deactivated")?;
        s.ensure_seeded()?;
        Ok(s.deactivated.contains(&id))
    }

    async fn mitra_states(&self, ids: &[MitraId]) -> Result<Vec<MitraState>, MirrorError> {
        let s = self.enter("mitra_states")?;
        s.ensure_seeded()?;
        Ok(ids.iter().map(|id| s.state_of(*id)).collect())
    }

    async fn candidate_states(&self) -> Result<Vec<(MitraId, MitraState)>, MirrorError> {
        let s = self.enter("candidate_states")?;
        s.ensure_seeded()?;
        Ok(s.online
            .difference(&s.deactivated)
            .map(|id| {
                let state = MitraState {
                    online: true,
                    active: true,
                    last_heartbeat: s.heartbeat.get(id).copied(),
                    open_sessions: s.capacity.get(id).copied().unwrap_or(0),
                };
                (*id, state)
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
        let s = self.enter("offer_candidates")?;
        s.ensure_seeded()?;
        let mut order: Vec<(IdleRank, MitraId)> = s.idle.iter().map(|(id, r)| (*r, *id)).collect();
        order.sort();
        // A member of the order is online and active; the walk reads its heartbeat and count.
        let state = |id: &MitraId| MitraState {
            online: true,
            active: true,
            ..s.state_of(*id)
        };
        Ok(order
            .into_iter()
            .map(|(_, id)| id)
            .filter(|id| !exclude.contains(id))
            .filter(|id| state(id).is_available(now, rules))
            .take(limit)
            .collect())
    }

    async fn online_count(&self) -> Result<u64, MirrorError> {
        let s = self.enter("online_count")?;
        s.ensure_seeded()?;
        Ok(s.online.len() as u64)
    }
}
