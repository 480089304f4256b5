//! The durable chat timers: one tick applies every due timer (claimed with SKIP LOCKED, so
//! instances never double-process) and settles unsettled payments.

use super::{Chat, TIMER_BATCH};
use crate::error::ChatError;
use halo_domain::MitraId;
use std::collections::BTreeSet;

impl Chat {
    /// One tick of the chat timers (see `Cadences::chat_timers`): due timers applied, then
    /// unsettled payments refunded. Failures are logged; the next tick tries again.
    pub async fn timers_tick(&self) {
        match self.expire_due().await {
            Ok(0) => {}
            Ok(moved) => tracing::info!(moved, "chat timers applied"),
            Err(error) => tracing::warn!(error = %error, "chat timer tick failed"),
        }
        match self.settle_payments().await {
            Ok(0) => {}
            Ok(settled) => tracing::info!(settled, "unsettled payments refunded"),
            Err(error) => tracing::warn!(error = %error, "payment sweep failed"),
        }
    }

    /// One timer tick: applies every due timer (claimed with SKIP LOCKED, so instances never
    /// double-process) and re-derives the capacity of every mitra involved. Due by the
    /// database's clock, not this instance's (one that runs ahead must not end paid sessions
    /// early). Returns how many sessions it moved.
    pub async fn expire_due(&self) -> Result<usize, ChatError> {
        let settings = self.availability.settings().get();
        let now = self.store.database_now().await?;
        let mut moved = 0;
        loop {
            let batch = self
                .store
                .expire_due(
                    now,
                    settings.blast_timeout(),
                    settings.payment_timeout(),
                    TIMER_BATCH,
                )
                .await?;
            moved += batch.len();
            if !batch.is_empty() {
                self.announce();
            }
            self.availability
                .metrics()
                .timer_transitions_applied(batch.len());
            let mitras: BTreeSet<MitraId> = batch.iter().filter_map(|s| s.mitra_id).collect();
            for mitra in mitras {
                self.recount(Some(mitra)).await;
            }
            if batch.len() < TIMER_BATCH as usize {
                return Ok(moved);
            }
        }
    }
}
