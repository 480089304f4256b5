//! Offer rounds (SPEC §12.6): a round that ended unanswered goes to the next candidates, in
//! the candidate order, never to a mitra an earlier round of the same session reached.

use super::{Chat, TIMER_BATCH};
use crate::error::ChatError;
use std::collections::BTreeSet;

impl Chat {
    /// Starts every due round; returns how many it started (a round another instance started
    /// first is not counted).
    pub async fn next_rounds(&self) -> Result<usize, ChatError> {
        let settings = self.availability.settings().get();
        let due = self.store.due_rounds(TIMER_BATCH).await?;
        let mut started = 0;
        for round in &due {
            let offered: BTreeSet<_> = round.offered.iter().copied().collect();
            let notify = self
                .availability
                .offer_candidates(settings.blast_max_recipients() as usize, &offered)
                .await?;
            let Some(moved) = self
                .store
                .next_round(
                    round,
                    &notify,
                    self.timeouts(),
                    settings.missed_offers_before_away(),
                )
                .await?
            else {
                continue;
            };
            started += 1;
            self.announce();
            self.send_away(&moved.away).await;
        }
        Ok(started)
    }
}
