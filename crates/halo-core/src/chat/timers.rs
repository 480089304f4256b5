//! The durable chat timers: one tick applies every due timer (claimed with SKIP LOCKED, so
//! instances never double-process), starts the offer rounds that are due, offers freed
//! capacity to the line, and settles unsettled payments.

use super::{Chat, TIMER_BATCH};
use crate::error::ChatError;
use halo_domain::MitraId;
use std::collections::BTreeSet;
use std::time::Duration;

/// The lease name of the offer rounds and the line's dispatch.
const OFFER_CHORES: &str = "offer_rounds";

impl Chat {
    /// One tick of the chat timers (see `Cadences::chat_timers`). The offer rounds and the
    /// line run on one instance per tick (`lease`, see `Availability::leads`; `None`: on this
    /// one). Failures are logged; the next tick tries again.
    pub async fn timers_tick(&self, lease: Option<Duration>) {
        match self.expire_due().await {
            Ok(0) => {}
            Ok(moved) => tracing::info!(moved, "chat timers applied"),
            Err(error) => tracing::warn!(error = %error, "chat timer tick failed"),
        }
        if let Some(ttl) = lease {
            if !self.availability.leads(OFFER_CHORES, ttl).await {
                return self.settle_payments_logged().await;
            }
        }
        match self.next_rounds().await {
            Ok(0) => {}
            Ok(rounds) => tracing::debug!(rounds, "offer rounds started"),
            Err(error) => tracing::warn!(error = %error, "offer round tick failed"),
        }
        match self.dispatch_queue().await {
            Ok(0) => {}
            Ok(started) => tracing::info!(started, "queued requests offered"),
            Err(error) => tracing::warn!(error = %error, "queue dispatch failed"),
        }
        self.settle_payments_logged().await;
    }

    async fn settle_payments_logged(&self) {
        match self.settle_payments().await {
            Ok(0) => {}
            Ok(settled) => tracing::info!(settled, "unsettled payments refunded"),
            Err(error) => tracing::warn!(error = %error, "payment sweep failed"),
        }
    }

    /// Applies every due timer and re-derives the capacity of every mitra involved; sets
    /// offline the mitras whose expired offers made too many in a row. Due by the database's
    /// clock, not this instance's (one that runs ahead must not end paid sessions early).
    /// Returns how many sessions it moved.
    pub async fn expire_due(&self) -> Result<usize, ChatError> {
        let settings = self.availability.settings().get();
        let now = self.store.database_now().await?;
        let mut moved = 0;
        loop {
            let batch = self
                .store
                .expire_due(
                    now,
                    self.timeouts(),
                    settings.missed_offers_before_away(),
                    TIMER_BATCH,
                )
                .await?;
            let count = batch.sessions.len();
            moved += count;
            if count > 0 {
                self.announce();
            }
            self.availability.metrics().timer_transitions_applied(count);
            let mitras: BTreeSet<MitraId> =
                batch.sessions.iter().filter_map(|s| s.mitra_id).collect();
            for mitra in mitras {
                self.recount(Some(mitra)).await;
            }
            self.send_away(&batch.away).await;
            if count < TIMER_BATCH as usize {
                return Ok(moved);
            }
        }
    }
}
