//! The Valkey mirror port, split by concern so a fake or a new adapter implements only what it
//! needs: the request paths (`MirrorHotPath`), the instances' coordination
//! (`MirrorCoordination`) and the seed, drift and sweep work (`MirrorMaintenance`).
//! `AvailabilityMirror` is all three, for the core's `Arc<dyn AvailabilityMirror>`. Every method
//! is one round trip unless its doc says otherwise.
//!
//! Common to every method: `MirrorError::Unavailable` when Valkey does not answer in time, or
//! when the connection was found dropped (the server may have come back with older data: the
//! request is not sent again). Each trait's `# Errors` names the reads that also answer
//! `MirrorError::Unseeded`.

mod coordination;
mod hot_path;
mod maintenance;

use crate::BoxError;

pub use coordination::{BeaconClaim, BeaconLock, MirrorCoordination};
pub use hot_path::{HeartbeatOutcome, MirrorHotPath};
pub use maintenance::{MirrorMaintenance, SeedWrite};

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// Valkey did not answer in time, refused the connection, or dropped it.
    #[error("valkey unavailable")]
    Unavailable(#[source] BoxError),
    /// Valkey answered with data the adapter cannot read (a corrupted key, a bug).
    #[error("valkey returned unreadable data: {0}")]
    Corrupt(String),
    /// The generation marker is missing (flushed, or restarted empty): the mirror's answers
    /// are not derived from Postgres until the next seed. Found in the same round trip as the
    /// read that returns it.
    #[error("valkey holds no seeded mirror (generation marker missing)")]
    Unseeded,
}

/// The whole mirror: what the core holds (`Arc<dyn AvailabilityMirror>`). Implemented for
/// every type that implements the three parts.
pub trait AvailabilityMirror: MirrorHotPath + MirrorCoordination + MirrorMaintenance {}

impl<T: MirrorHotPath + MirrorCoordination + MirrorMaintenance> AvailabilityMirror for T {}
