//! The availability library: use cases that depend only on the store ports. Other backend crates
//! call `Availability`, `Chat` and `MitraAdmin` without the binaries; the binaries add HTTP and
//! pick the adapters.
//!
//! Semantics (SPEC §3): writes go to Postgres first, then best-effort to the mirror (a Valkey
//! error is logged, counted, marks the mirror behind, and is never returned); reads go to Valkey
//! first and fall back to an equivalent Postgres read through the same domain rules.

mod admin;
mod availability;
mod background;
mod chat;
mod error;
mod events;
mod limits;
mod mirror_health;
mod settings_cache;

pub use admin::{MitraAdmin, MitraPage, MitraView};
pub use availability::{
    Availability, AvailabilityStores, HeartbeatAck, MirrorWatch, SeedReason, SeedReport,
    StoreProbe, SweepOutcome,
};
pub use background::{spawn_background, Cadences};
pub use chat::{Blast, Chat, DevPayments};
pub use error::{AvailabilityError, ChatError, SeedError};
pub use events::{Announcer, Delivery, EventStream, Events};
pub use limits::{Limited, Limiter};
pub use mirror_health::{MirrorHealth, MirrorState};
pub use settings_cache::SettingsCache;
