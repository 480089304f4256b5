//! The heartbeat and the activity guard of every mitra route: Valkey only while the mirror is
//! trusted (zero Postgres queries), one guarded Postgres statement otherwise.

use super::Availability;
use crate::error::AvailabilityError;
use halo_domain::MitraId;
use halo_ports::HeartbeatOutcome;

/// The heartbeat's answer to the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatAck {
    /// False when the mitra is offline (e.g. swept while the app slept): the app shows it.
    pub online: bool,
    pub interval_seconds: u32,
}

impl Availability {
    // ---- the heartbeat: Valkey only, Postgres guard when Valkey is not trusted -------------

    pub async fn heartbeat(&self, id: MitraId) -> Result<HeartbeatAck, AvailabilityError> {
        let now = self.clock.now();
        let interval_seconds = self.settings.get().heartbeat_interval_seconds();
        let outcome = self
            .read_or_fallback(
                "heartbeat",
                |m| m.heartbeat(id, now),
                || async {
                    let flags = self
                        .truth
                        .heartbeat_fallback(id, now)
                        .await?
                        .ok_or(AvailabilityError::MitraNotFound)?;
                    Ok(match (flags.active, flags.online) {
                        (false, _) => HeartbeatOutcome::Deactivated,
                        (true, true) => HeartbeatOutcome::Recorded,
                        (true, false) => HeartbeatOutcome::Offline,
                    })
                },
            )
            .await?;
        let online = match outcome {
            HeartbeatOutcome::Deactivated => return Err(AvailabilityError::Deactivated),
            HeartbeatOutcome::Recorded => true,
            HeartbeatOutcome::Offline => false,
        };
        Ok(HeartbeatAck {
            online,
            interval_seconds,
        })
    }

    /// Refuses a deactivated mitra: mirror first, Postgres when it is not trusted.
    pub async fn ensure_active(&self, id: MitraId) -> Result<(), AvailabilityError> {
        let deactivated = self
            .read_or_fallback(
                "is_deactivated",
                |m| m.is_deactivated(id),
                || async {
                    let flags = self
                        .truth
                        .mitra_flags(id)
                        .await?
                        .ok_or(AvailabilityError::MitraNotFound)?;
                    Ok(!flags.active)
                },
            )
            .await?;
        if deactivated {
            return Err(AvailabilityError::Deactivated);
        }
        Ok(())
    }
}
