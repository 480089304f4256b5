//! An offer round's walk of `mitras:idle_order` (SPEC §12.5), which holds exactly the online,
//! active mitras: each step reads the next members' heartbeat and open sessions from where the
//! last one stopped — `SORT idle_order BY nosort LIMIT … GET # GET … GET …` (native code; the
//! server reads only that range of the sorted set), or `offer_walk.lua` when the server refuses
//! SORT or the key prefix holds a `*` (see `bulk_reads`) — and the availability rules are
//! applied here, through `MitraState::is_available`. The walk stops once `limit` mitras passed.
//! Usually one round trip: the first step asks for a little more than `limit` (and room for the
//! excluded, most likely at the front: earlier rounds took the longest idle), each further step
//! (only when many were passed over) for twice as many as the last.

use super::{ensure_seeded, ValkeyMirror};
use crate::{replies, scripts};
use halo_domain::{AvailabilityRules, MitraId, MitraState};
use halo_ports::MirrorError;
use redis::Value;
use std::collections::{BTreeSet, HashSet};
use time::OffsetDateTime;

/// Records asked for by one step, at most (a bigger round asks for itself).
const MAX_STEP: usize = 1_000;

/// The first step's size: the round's, and some room for mitras that do not pass (a stale
/// heartbeat the sweep has not taken offline yet, one at capacity).
fn first_step(limit: usize) -> usize {
    let room = limit.saturating_add(limit / 4).saturating_add(4);
    room.min(MAX_STEP.max(limit))
}

/// What one step of the walk read.
struct Step {
    /// The rank the next step starts from.
    next: usize,
    /// The order ended: nothing is left to read.
    ended: bool,
    /// id, heartbeat, open sessions, id, ...
    records: Vec<Value>,
}

impl ValkeyMirror {
    /// `count` members from rank `from`, excluded ones included (the caller skips them); `None`
    /// when the server refuses SORT.
    async fn sorted_step(
        &self,
        from: usize,
        count: usize,
        (heartbeat, capacity): (String, String),
    ) -> Result<Option<Step>, MirrorError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .exists(self.keys.generation())
            .cmd("SORT")
            .arg(self.keys.idle_order())
            .arg("BY")
            .arg("nosort")
            .arg("LIMIT")
            .arg(from)
            .arg(count)
            .arg("GET")
            .arg("#")
            .arg("GET")
            .arg(heartbeat)
            .arg("GET")
            .arg(capacity);
        let Some((seeded, flat)) = self
            .sorted_read::<(bool, Value)>("offer_candidates", &pipe)
            .await?
        else {
            return Ok(None);
        };
        ensure_seeded(seeded)?;
        let records = replies::array(flat).map_err(MirrorError::Corrupt)?;
        let read = records.len() / 3;
        Ok(Some(Step {
            next: from + read,
            ended: read < count,
            records,
        }))
    }

    /// `want` members from rank `from` that are not excluded (`offer_walk.lua`).
    async fn scripted_step(
        &self,
        from: usize,
        want: usize,
        exclude: &BTreeSet<MitraId>,
    ) -> Result<Step, MirrorError> {
        let mut invocation = scripts::OFFER_WALK.prepare_invoke();
        invocation
            .key(self.keys.generation())
            .key(self.keys.idle_order())
            .arg(self.keys.prefix())
            .arg(from)
            .arg(want);
        for id in exclude {
            invocation.arg(id.to_string());
        }
        let reply: Value = self.call("offer_candidates", &invocation).await?;
        ensure_seeded(!matches!(reply, Value::Int(0)))?;
        let mut flat = replies::array(reply).map_err(MirrorError::Corrupt)?;
        if flat.len() < 2 {
            return Err(MirrorError::Corrupt("offer_walk: short reply".into()));
        }
        let records = flat.split_off(2);
        Ok(Step {
            next: usize::try_from(replies::count(&flat[0])).unwrap_or(usize::MAX),
            ended: replies::truthy(&flat[1]),
            records,
        })
    }

    async fn walk_step(
        &self,
        from: usize,
        want: usize,
        exclude: &BTreeSet<MitraId>,
    ) -> Result<Step, MirrorError> {
        if let Some(patterns) = self.sort_patterns() {
            let count = want.saturating_add(exclude.len()).min(MAX_STEP.max(want));
            if let Some(step) = self.sorted_step(from, count, patterns).await? {
                return Ok(step);
            }
        }
        self.scripted_step(from, want, exclude).await
    }

    /// Up to `limit` available mitras not in `exclude`, longest idle first (see the module).
    pub(super) async fn walk_idle_order(
        &self,
        limit: usize,
        exclude: &BTreeSet<MitraId>,
        now: OffsetDateTime,
        rules: AvailabilityRules,
    ) -> Result<Vec<MitraId>, MirrorError> {
        let mut found = Vec::with_capacity(limit.min(MAX_STEP));
        if limit == 0 {
            return Ok(found);
        }
        // Between two steps a member may move (a recount) and be read twice: once is enough.
        let mut passed_over: HashSet<MitraId> = exclude.iter().copied().collect();
        let (mut from, mut want) = (0, first_step(limit));
        loop {
            let step = self.walk_step(from, want, exclude).await?;
            for (id, last_heartbeat, open_sessions) in
                replies::candidates(&step.records, &passed_over)
            {
                passed_over.insert(id);
                let state = MitraState {
                    online: true,
                    active: true,
                    last_heartbeat,
                    open_sessions,
                };
                if state.is_available(now, rules) {
                    found.push(id);
                    if found.len() == limit {
                        return Ok(found);
                    }
                }
            }
            if step.ended {
                return Ok(found);
            }
            from = step.next;
            want = want.saturating_mul(2).min(MAX_STEP.max(limit));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_step_leaves_room_for_some_that_do_not_pass() {
        assert_eq!(first_step(1), 5);
        assert_eq!(first_step(50), 66);
        assert_eq!(first_step(800), 1_000);
        assert_eq!(
            first_step(5_000),
            5_000,
            "a round bigger than a step asks for all"
        );
    }
}
