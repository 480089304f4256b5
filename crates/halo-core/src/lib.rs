//! The availability library: use cases that depend only on the store ports. Other backend crates
//! call `Availability` without the binaries; the binaries add HTTP and pick the adapters.
//!
//! Semantics (CONTRACT §3): writes go to Postgres first, then best-effort to the mirror (a
//! Valkey error is logged, counted, marks the mirror dirty, and is never returned); reads go to
//! Valkey first and fall back to an equivalent Postgres read through the same domain rules.

mod availability;
mod background;
mod chat;
mod error;
mod limits;
mod mirror_health;
mod settings_cache;

pub use availability::{Availability, HeartbeatAck, SeedError, SeedReason, SeedReport, StoreProbe};
pub use background::{spawn_background, Cadences, MirrorWatch, SweepOutcome};
pub use chat::{Blast, Chat, ChatError, DevPayments};
pub use error::AvailabilityError;
pub use limits::{Limited, Limiter};
pub use mirror_health::{MirrorHealth, MirrorState};
pub use settings_cache::SettingsCache;
