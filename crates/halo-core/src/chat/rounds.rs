//! Offer rounds (SPEC §12.6): a round that ended unanswered goes to the next candidates, in
//! the candidate order, never to a mitra an earlier round of the same session reached.

use super::{Chat, TIMER_BATCH};
use crate::error::ChatError;
use halo_ports::DueRound;
use std::collections::BTreeSet;

impl Chat {
    /// Starts every due round; returns how many it started (a round another instance started
    /// first is not counted). One round that fails is logged and the others go on; the
    /// next tick retries it.
    pub async fn next_rounds(&self) -> Result<usize, ChatError> {
        let due = self.store.due_rounds(TIMER_BATCH).await?;
        let mut started = 0;
        for round in &due {
            match self.next_round(round).await {
                Ok(true) => started += 1,
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(session = %round.session, error = %error, "offer round not started");
                }
            }
        }
        Ok(started)
    }

    /// One round: the next candidates, then the store's round change (false: another caller
    /// made it first).
    async fn next_round(&self, round: &DueRound) -> Result<bool, ChatError> {
        let settings = self.availability.settings().get();
        let offered: BTreeSet<_> = round.offered.iter().copied().collect();
        let notify = self
            .availability
            .offer_candidates(settings.blast_max_recipients() as usize, &offered)
            .await?;
        let moved = self
            .store
            .next_round(
                round,
                &notify,
                self.timeouts(),
                settings.missed_offers_before_away(),
            )
            .await?;
        let Some(moved) = moved else {
            return Ok(false);
        };
        self.announce();
        self.send_away(&moved.away).await;
        Ok(true)
    }
}
