//! The mirror on the request paths: heartbeats, toggles, deactivation, capacity and the reads
//! the availability rules answer from.

use super::MirrorError;
use crate::CapacityCount;
use async_trait::async_trait;
use halo_domain::{AvailabilityRules, MitraId, MitraState};
use std::collections::BTreeSet;
use time::OffsetDateTime;

/// What the heartbeat guard found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatOutcome {
    /// The mitra is in `mitras:deactivated`: refuse the ping.
    Deactivated,
    /// The ping was recorded (the mitra is online).
    Recorded,
    /// The mitra is not online: nothing recorded (a heartbeat never sets a mitra online).
    Offline,
}

/// # Errors
/// Every method: `MirrorError::Unavailable` as described in the module. The reads that answer
/// about availability (`is_deactivated`, `mitra_states`, `candidate_states`,
/// `offer_candidates`, `online_count`, and `heartbeat` when the key is missing) return
/// `MirrorError::Unseeded` when the generation marker is missing.
#[async_trait]
pub trait MirrorHotPath: Send + Sync + 'static {
    /// Refuses deactivated mitras, records the ping only for online ones: one round trip for an
    /// online active mitra, two otherwise.
    async fn heartbeat(
        &self,
        id: MitraId,
        at: OffsetDateTime,
    ) -> Result<HeartbeatOutcome, MirrorError>;

    /// Adds to `mitras:online`, sets the capacity and the idle rank (unless a newer count
    /// landed, see `set_capacity`), and unless the mitra is deactivated stamps the heartbeat
    /// and puts it in the idle order at the rank of the newest count (heartbeat keys and the
    /// idle order are for online, active mitras only).
    async fn mark_online(
        &self,
        id: MitraId,
        at: OffsetDateTime,
        capacity: CapacityCount,
    ) -> Result<(), MirrorError>;

    /// Removes from `mitras:online` and the idle order, and drops the heartbeats of all `ids`.
    async fn mark_offline(&self, ids: &[MitraId]) -> Result<(), MirrorError>;

    /// Adds to or removes from `mitras:deactivated`; adding also takes the mitra out of
    /// `mitras:online` and the idle order and drops its heartbeat key; removing puts a mitra
    /// still in `mitras:online` back in the idle order at the rank of its newest count.
    async fn set_deactivated(&self, id: MitraId, deactivated: bool) -> Result<(), MirrorError>;

    /// Writes the count and the idle rank (moving the mitra in the idle order if it is there)
    /// unless a count with a higher `seq` already landed: recounts that finish out of order
    /// leave the newest count and rank, as in Postgres.
    async fn set_capacity(&self, id: MitraId, capacity: CapacityCount) -> Result<(), MirrorError>;

    async fn is_deactivated(&self, id: MitraId) -> Result<bool, MirrorError>;

    /// Everything the availability rules need about these mitras, in their order: one round
    /// trip however many (an operator's page of mitras).
    async fn mitra_states(&self, ids: &[MitraId]) -> Result<Vec<MitraState>, MirrorError>;

    /// Everything the availability rules need about one mitra.
    async fn mitra_state(&self, id: MitraId) -> Result<MitraState, MirrorError> {
        self.mitra_states(&[id])
            .await?
            .pop()
            .ok_or_else(|| MirrorError::Corrupt("no state for the mitra asked about".into()))
    }

    /// States of the online, non-deactivated mitras: one round trip whatever their number.
    async fn candidate_states(&self) -> Result<Vec<(MitraId, MitraState)>, MirrorError>;

    /// Who an offer round reaches (SPEC §12.5): up to `limit` mitras not in `exclude` that are
    /// available by `MitraState::is_available` at `now` under `rules`, longest idle first (idle
    /// rank, then id). Walks the idle order from its front and stops once it has `limit`: the
    /// work grows with `limit` and the mitras it passes over (excluded or unavailable), not
    /// with the number online. Usually one round trip; more when many are passed over.
    async fn offer_candidates(
        &self,
        limit: usize,
        exclude: &BTreeSet<MitraId>,
        now: OffsetDateTime,
        rules: AvailabilityRules,
    ) -> Result<Vec<MitraId>, MirrorError>;

    /// `SCARD mitras:online`.
    async fn online_count(&self) -> Result<u64, MirrorError>;
}
