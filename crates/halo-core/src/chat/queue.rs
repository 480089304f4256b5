//! The waiting line (SPEC §12.8): requests nobody could take wait, oldest first, and leave it
//! as soon as capacity frees up — the oldest first, each to mitras no other request is
//! offered to at that moment.

use super::Chat;
use crate::error::ChatError;
use std::collections::BTreeSet;

/// Queued requests one dispatch looks at.
const DISPATCH_BATCH: u32 = 100;

impl Chat {
    /// A slot may have freed (a session ended) or the line grew: the line is offered what is
    /// free now rather than at the next timer tick. Best effort: the tick retries.
    pub(super) async fn offer_freed_capacity(&self) {
        if !self.availability.settings().get().queue_when_unavailable() {
            return;
        }
        if let Err(error) = self.dispatch_queue().await {
            tracing::warn!(error = %error, "queue dispatch failed; the timer tick retries");
        }
    }

    /// Offers available capacity to the line. Returns how many requests left it.
    pub async fn dispatch_queue(&self) -> Result<usize, ChatError> {
        let queued = self.store.queued(DISPATCH_BATCH).await?;
        if queued.is_empty() {
            return Ok(0);
        }
        let busy: BTreeSet<_> = self
            .store
            .mitras_with_open_offers(self.timeouts())
            .await?
            .into_iter()
            .collect();
        let per_request = self.availability.settings().get().blast_max_recipients() as usize;
        let candidates = self
            .availability
            .offer_candidates(per_request.saturating_mul(queued.len()), &busy)
            .await?;
        if candidates.is_empty() {
            return Ok(0);
        }
        let assignments: Vec<_> = queued
            .into_iter()
            .zip(candidates.chunks(per_request).map(<[_]>::to_vec))
            .collect();
        let started = self.store.dispatch(&assignments, self.timeouts()).await?;
        if !started.is_empty() {
            self.announce();
        }
        Ok(started.len())
    }
}
