//! Writes: Postgres first, then best-effort to the mirror (a failed mirror write marks it
//! behind until a seed heals it; it is never the caller's error).

use super::Availability;
use crate::error::AvailabilityError;
use halo_domain::MitraId;
use halo_ports::{CapacityCount, OnlineReason};

impl Availability {
    // ---- writes: Postgres first, then the mirror ------------------------------------------

    /// The mitra's own toggle to online. Refused for a deactivated mitra.
    pub async fn set_online(&self, id: MitraId) -> Result<(), AvailabilityError> {
        self.ensure_active(id).await?;
        self.truth
            .set_online(id, true, OnlineReason::Manual)
            .await?;
        // The toggle committed: a recount that fails now leaves the mirror behind, the caller
        // is told it is online.
        let Some(capacity) = self.count_or_mark_behind(id, "mark_online").await else {
            return Ok(());
        };
        let now = self.clock.now();
        self.write_mirror("mark_online", |m| m.mark_online(id, now, capacity))
            .await;
        Ok(())
    }

    /// Sets the mitra offline (own toggle, operator force, deactivation).
    pub async fn set_offline(
        &self,
        id: MitraId,
        reason: OnlineReason,
    ) -> Result<(), AvailabilityError> {
        self.truth.set_online(id, false, reason).await?;
        self.write_mirror("mark_offline", |m| {
            m.mark_offline(std::slice::from_ref(&id))
        })
        .await;
        Ok(())
    }

    /// Deactivate or reactivate the mitra's availability: Postgres, then the mirror;
    /// deactivation also sets it offline. Its auth sessions are not touched: the operators'
    /// deactivation is `MitraAdmin::set_active`, which revokes them in between (SPEC §3.6).
    pub async fn update_mitra_status(
        &self,
        id: MitraId,
        active: bool,
    ) -> Result<(), AvailabilityError> {
        self.set_active_flag(id, active).await?;
        if !active {
            self.set_offline(id, OnlineReason::Deactivated).await?;
        }
        Ok(())
    }

    /// `mitras.is_active`, then the mirror's deactivated set (which also takes a deactivated
    /// mitra out of the online set). The first step of a (de)activation.
    pub(crate) async fn set_active_flag(
        &self,
        id: MitraId,
        active: bool,
    ) -> Result<(), AvailabilityError> {
        self.truth.set_active(id, active).await?;
        self.write_mirror("set_deactivated", |m| m.set_deactivated(id, !active))
            .await;
        Ok(())
    }

    /// Re-derives the mitra's capacity from Postgres (a count, never INCR/DECR) and mirrors it.
    /// Counts are ordered (see `CapacityCount`): of two racing recounts the later one stays.
    /// A count that fails in Postgres leaves the mirror behind, like a failed mirror write.
    pub async fn recompute_capacity_for_mitra(
        &self,
        id: MitraId,
    ) -> Result<u32, AvailabilityError> {
        let capacity = self
            .truth
            .count_open_sessions(id)
            .await
            .inspect_err(|_| self.mirror_missed("set_capacity"))?;
        self.write_mirror("set_capacity", |m| m.set_capacity(id, capacity))
            .await;
        Ok(capacity.open)
    }

    /// The open-session count for a mirror write; `None` (the mirror marked behind) when
    /// Postgres cannot count.
    async fn count_or_mark_behind(&self, id: MitraId, op: &'static str) -> Option<CapacityCount> {
        match self.truth.count_open_sessions(id).await {
            Ok(capacity) => Some(capacity),
            Err(error) => {
                tracing::warn!(event = "mirror.write_failed", op, error = %error, "recount failed; mirror behind");
                self.mirror_missed(op);
                None
            }
        }
    }

    /// A mirror write that could not even be prepared: the mirror misses a change.
    fn mirror_missed(&self, op: &'static str) {
        self.metrics.mirror_write_failed(op);
        self.health.write_failed();
    }
}
