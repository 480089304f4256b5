//! The mirror watcher's check: the only caller that sends to Valkey while the mirror is down,
//! and the only way back to `Trusted` (its seed).

use super::{Availability, SeedReason};
use crate::mirror_health::MirrorState;

/// The background probe of the mirror's health (`MirrorHealth`): it is the only one that
/// sends to Valkey while the mirror is down, and the only way back to `Trusted` is its seed.
#[derive(Debug, Default)]
pub struct MirrorWatch {
    /// `AvailabilityMirror::connection_drops` at the last check.
    drops_seen: u64,
}

impl MirrorWatch {
    /// One check: probes the generation marker, then reseeds unless the mirror is trusted —
    /// after an outage or a dropped connection (`reconnect`: the server may have come back with
    /// older data, which still has its generation marker), when the marker is gone (`flushed`),
    /// or after a failed write (`write_failed`). Returns the reason of the seed it ran, if any.
    pub async fn tick(&mut self, availability: &Availability) -> Option<SeedReason> {
        let health = &availability.health;
        let probe = availability.mirror.is_seeded().await;
        // After the probe: it may be the call that found the connection dropped.
        let drops = availability.mirror.connection_drops();
        if drops != self.drops_seen {
            self.drops_seen = drops;
            health.down(&"a valkey connection was dropped");
        }
        match probe {
            Err(error) => {
                health.down(&error);
                return None;
            }
            Ok(false) => health.unseeded(),
            Ok(true) => {}
        }
        // Down lasts until a seed ends it, so a server that came back empty after an outage is
        // still a reconnect here, not a flush.
        let reason = match health.state() {
            MirrorState::Trusted => return None,
            MirrorState::Down => SeedReason::Reconnect,
            MirrorState::Unseeded => SeedReason::Flushed,
            MirrorState::Behind => SeedReason::WriteFailed,
        };
        match availability.seed_from_postgres(reason).await {
            Ok(_) => Some(reason),
            Err(error) => {
                tracing::warn!(error = %error, reason = reason.as_str(), "reseed failed; retrying on the next check");
                None
            }
        }
    }
}
