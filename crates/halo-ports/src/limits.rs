//! The shared counters of the abuse limits (Valkey): N instances enforce one limit.

use crate::MirrorError;
use async_trait::async_trait;
use std::time::Duration;

/// # Errors
/// `MirrorError::Unavailable` when Valkey does not answer (the caller limits locally).
#[async_trait]
pub trait RateCounter: Send + Sync + 'static {
    /// Counts one hit in `bucket`'s window (started by its first hit, `window` long) and
    /// returns the hits so far in it and how long until it ends. One round trip.
    async fn hit(&self, bucket: &str, window: Duration) -> Result<(u64, Duration), MirrorError>;
}
