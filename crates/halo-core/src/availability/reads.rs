//! Reads: the mirror while it is trusted, the same domain rules over Postgres otherwise.

use super::{Availability, Read};
use crate::error::AvailabilityError;
use halo_domain::{stale_cutoff, MitraId, MitraState};
use std::collections::{BTreeSet, HashMap};

impl Availability {
    // ---- reads: Valkey first, the same rules over Postgres otherwise ------------------------

    /// Online, active and fresh: may keep or extend a session it already has.
    pub async fn is_mitra_reachable(&self, id: MitraId) -> Result<bool, AvailabilityError> {
        let settings = self.settings.get();
        let now = self.clock.now();
        let state = self
            .mitra_state(id, "is_mitra_reachable", Read::Decide)
            .await?;
        Ok(state.is_some_and(|s| s.is_reachable(now, settings.stale_after())))
    }

    /// Online, active, fresh and under capacity: may take a new customer ("chat again").
    pub async fn is_mitra_available(&self, id: MitraId) -> Result<bool, AvailabilityError> {
        let state = self
            .mitra_state(id, "is_mitra_available", Read::Decide)
            .await?;
        Ok(state.is_some_and(|s| self.available(&s)))
    }

    /// The availability rule with this instance's settings and clock.
    pub(super) fn available(&self, state: &MitraState) -> bool {
        state.is_available(self.clock.now(), self.settings.get().availability_rules())
    }

    /// What the status screen and the operator list show about one mitra.
    pub async fn mitra_status(&self, id: MitraId) -> Result<MitraState, AvailabilityError> {
        self.mitra_state(id, "mitra_status", Read::Show)
            .await?
            .ok_or(AvailabilityError::MitraNotFound)
    }

    /// One mitra's state (`None` = unknown).
    async fn mitra_state(
        &self,
        id: MitraId,
        op: &'static str,
        read: Read,
    ) -> Result<Option<MitraState>, AvailabilityError> {
        Ok(self
            .mitra_states_for(&[id], op, read)
            .await?
            .pop()
            .flatten())
    }

    /// Live states of many mitras (an operator's page): one mirror round trip, or one Postgres
    /// statement. In the order of `ids`; `None` = unknown.
    pub async fn mitra_statuses(
        &self,
        ids: &[MitraId],
    ) -> Result<Vec<Option<MitraState>>, AvailabilityError> {
        self.mitra_states_for(ids, "mitra_statuses", Read::Show)
            .await
    }

    async fn mitra_states_for(
        &self,
        ids: &[MitraId],
        op: &'static str,
        read: Read,
    ) -> Result<Vec<Option<MitraState>>, AvailabilityError> {
        self.read_or_fallback(
            op,
            |m| {
                Box::pin(
                    async move { Ok(m.mitra_states(ids).await?.into_iter().map(Some).collect()) },
                )
            },
            || async {
                let known: HashMap<MitraId, MitraState> =
                    self.truth.mitra_states(ids).await?.into_iter().collect();
                let as_read = |state: MitraState| match read {
                    Read::Decide => self.allowing_lag(state),
                    Read::Show => state,
                };
                Ok(ids
                    .iter()
                    .map(|id| known.get(id).copied().map(as_read))
                    .collect())
            },
        )
        .await
    }

    /// The mitras a blast reaches: available by every rule, capacity included.
    pub async fn find_available_mitras(&self) -> Result<Vec<MitraId>, AvailabilityError> {
        let candidates = self.candidate_states("find_available_mitras").await?;
        Ok(candidates
            .into_iter()
            .filter(|(_, s)| self.available(s))
            .map(|(id, _)| id)
            .collect())
    }

    /// Who one offer round reaches: at most `limit` available mitras not in `exclude`, longest
    /// idle first (SPEC §12.5). The mirror walks its idle order; the Postgres fallback walks
    /// the same order (the same ranks) with the same rules. Either way the work grows with
    /// `limit` and the mitras passed over, not with the number online.
    pub async fn offer_candidates(
        &self,
        limit: usize,
        exclude: &BTreeSet<MitraId>,
    ) -> Result<Vec<MitraId>, AvailabilityError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rules = self.settings.get().availability_rules();
        let now = self.clock.now();
        self.read_or_fallback(
            "offer_candidates",
            |m| m.offer_candidates(limit, exclude, now, rules),
            || async {
                // `allowing_lag` counts a heartbeat that much newer: the cutoff moves back by it.
                let fresh_since =
                    stale_cutoff(now, rules.stale_after) - self.postgres_heartbeat_lag;
                let found = self
                    .truth
                    .offer_candidates(limit, exclude, fresh_since, rules.max_customers)
                    .await?;
                // The statement applied the rules; the domain has the last word on each row.
                Ok(found
                    .into_iter()
                    .filter(|(_, state)| self.allowing_lag(*state).is_available(now, rules))
                    .map(|(id, _)| id)
                    .collect())
            },
        )
        .await
    }

    pub(super) async fn candidate_states(
        &self,
        op: &'static str,
    ) -> Result<Vec<(MitraId, MitraState)>, AvailabilityError> {
        self.read_or_fallback(
            op,
            |m| m.candidate_states(),
            || self.candidates_in_postgres(),
        )
        .await
    }

    /// The fallback of the blast and the beacon, as a decision reads Postgres.
    pub(super) async fn candidates_in_postgres(
        &self,
    ) -> Result<Vec<(MitraId, MitraState)>, AvailabilityError> {
        let states = self.truth.candidate_states().await?;
        Ok(states
            .into_iter()
            .map(|(id, state)| (id, self.allowing_lag(state)))
            .collect())
    }

    /// The dashboard's online count: `SCARD mitras:online`, Postgres when not trusted.
    pub async fn dashboard_online_count(&self) -> Result<u64, AvailabilityError> {
        self.read_or_fallback(
            "dashboard_online_count",
            |m| m.online_count(),
            || async { Ok(self.truth.count_online().await?) },
        )
        .await
    }
}
