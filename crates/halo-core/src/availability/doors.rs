//! The three doors every Valkey call goes through. Each asks the `MirrorHealth` first (nothing
//! is sent while Valkey is known to be down) and reports what the call found.

use super::Availability;
use crate::error::AvailabilityError;
use halo_domain::MitraId;
use halo_ports::{AvailabilityMirror, MirrorError};
use std::future::Future;
use std::pin::Pin;

/// What an `async_trait` mirror method returns.
type MirrorFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, MirrorError>> + Send + 'a>>;

impl Availability {
    // ---- the three doors to Valkey ---------------------------------------------------------

    /// A read from the mirror while it is trusted, else from Postgres without touching Valkey.
    /// A failed mirror read falls back too, and tells the health what it found.
    pub(super) async fn read_or_fallback<'a, T, F>(
        &'a self,
        op: &'static str,
        mirror_read: impl FnOnce(&'a dyn AvailabilityMirror) -> MirrorFuture<'a, T>,
        truth_read: impl FnOnce() -> F,
    ) -> Result<T, AvailabilityError>
    where
        F: Future<Output = Result<T, AvailabilityError>>,
    {
        if self.health.is_trusted() {
            match mirror_read(self.mirror.as_ref()).await {
                Ok(answer) => return Ok(answer),
                Err(error) => self.mirror_read_failed(op, &error),
            }
        } else {
            // The breaker is open: no log per request, the state change was logged once.
            self.metrics.valkey_fallback(op);
        }
        truth_read().await
    }

    pub(super) fn mirror_read_failed(&self, op: &'static str, error: &MirrorError) {
        self.metrics.valkey_fallback(op);
        tracing::warn!(event = "mirror.fallback", op, error = %error, "mirror.fallback");
        self.observe(error);
    }

    /// What a failed call says about the mirror's health.
    pub(super) fn observe(&self, error: &MirrorError) {
        match error {
            MirrorError::Unavailable(_) => self.health.down(error),
            MirrorError::Unseeded => self.health.unseeded(),
            MirrorError::Corrupt(_) => {}
        }
    }

    /// A best-effort mirror write after a Postgres commit. Not sent while Valkey is down (it
    /// would only wait out the deadline); either way a write that did not land marks the
    /// mirror behind until a seed heals it.
    pub(super) async fn write_mirror<'a>(
        &'a self,
        op: &'static str,
        write: impl FnOnce(&'a dyn AvailabilityMirror) -> MirrorFuture<'a, ()>,
    ) {
        if self.health.is_down() {
            // Not an incident of its own (the outage was reported once): a seed that began
            // before it must still be able to end the outage; this write is healed by the next.
            self.metrics.mirror_write_failed(op);
            self.health.write_failed();
            tracing::warn!(
                event = "mirror.write_failed",
                op,
                error = "valkey down; not sent",
                "mirror.write_failed"
            );
            return;
        }
        if let Err(error) = write(self.mirror.as_ref()).await {
            self.metrics.mirror_write_failed(op);
            self.health.write_failed();
            self.observe(&error);
            tracing::warn!(event = "mirror.write_failed", op, error = %error, "mirror.write_failed");
        }
    }

    /// A Valkey side effect that is not mirror data (the beacon cache, a publish): skipped
    /// while Valkey is down; a failure is logged and counted, the mirror stays as trusted as
    /// it was.
    pub(super) async fn side_effect<'a>(
        &'a self,
        op: &'static str,
        effect: impl FnOnce(&'a dyn AvailabilityMirror) -> MirrorFuture<'a, ()>,
    ) {
        if self.health.is_down() {
            return;
        }
        if let Err(error) = effect(self.mirror.as_ref()).await {
            self.metrics.mirror_write_failed(op);
            if matches!(error, MirrorError::Unavailable(_)) {
                self.health.down(&error);
            }
            tracing::warn!(event = "mirror.write_failed", op, error = %error, "mirror.write_failed");
        }
    }

    /// Puts back mitras the auto-offline sweep found fresh in Postgres, unless written since
    /// `token`.
    pub(super) async fn mirror_restore(
        &self,
        beats: &[(MitraId, time::OffsetDateTime)],
        token: u64,
    ) {
        if !beats.is_empty() {
            tracing::info!(
                sweep = "auto_offline",
                kept = beats.len(),
                "postgres held fresh heartbeats; kept online"
            );
            self.write_mirror("restore_online", |m| m.restore_online(beats, token))
                .await;
        }
    }
}
