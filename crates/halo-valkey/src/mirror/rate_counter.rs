//! The abuse limits' counters, kept in the mirror's Valkey so every instance counts the same
//! window.

use super::{millis, ValkeyMirror};
use async_trait::async_trait;
use halo_ports::MirrorError;
use std::time::Duration;

/// The abuse limits' counters: a window key that starts at the first hit and expires with the
/// window, counted in one atomic round trip.
#[async_trait]
impl halo_ports::RateCounter for ValkeyMirror {
    async fn hit(&self, bucket: &str, window: Duration) -> Result<(u64, Duration), MirrorError> {
        let key = self.keys.rate_window(bucket);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(&key)
            .arg(0)
            .arg("PX")
            .arg(millis(window))
            .arg("NX")
            .ignore()
            .incr(&key, 1)
            .pttl(&key);
        let (count, left_ms): (u64, i64) = self.call("rate_limit", &pipe).await?;
        let left = Duration::from_millis(u64::try_from(left_ms).unwrap_or(0));
        Ok((count, left))
    }
}
