//! The availability library: use cases that depend only on the store ports. Other backend crates
//! call `Availability`, `Chat` and `MitraAdmin` without the binaries; the binaries add HTTP and
//! pick the adapters.
//!
//! Semantics (SPEC §3): writes go to Postgres first, then best-effort to the mirror (a Valkey
//! error is logged, counted, marks the mirror behind, and is never returned); reads go to Valkey
//! first and fall back to an equivalent Postgres read through the same domain rules.
//!
//! # Embedding the core
//!
//! A backend crate builds `Availability` over any implementation of the ports: the Postgres
//! and Valkey adapters in production (see `halo-app`'s `services.rs`), or the in-memory stores
//! of `halo-fakes` in its own unit tests:
//!
//! ```
//! use halo_core::{Availability, AvailabilityStores, SeedReason, SettingsCache};
//! use halo_domain::AppSettings;
//! use halo_fakes::{InMemoryMirror, InMemoryTruth, ManualClock};
//! use std::sync::Arc;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! let clock = Arc::new(ManualClock::default());
//! let truth = Arc::new(InMemoryTruth::new(clock.clone()));
//! let mirror = Arc::new(InMemoryMirror::with_clock(clock.clone()));
//! let stores = AvailabilityStores {
//!     truth: truth.clone(),
//!     settings: truth.clone(),
//!     mirror: mirror.clone(),
//!     clock,
//! };
//! let availability = Availability::new(
//!     stores,
//!     SettingsCache::new(AppSettings::default()),
//!     halo_metrics::Metrics::new(),
//! );
//! availability.seed_from_postgres(SeedReason::Startup).await?;
//!
//! let mitra = truth.add_mitra();
//! availability.set_online(mitra).await?;
//! assert!(availability.heartbeat(mitra).await?.online);
//! assert_eq!(availability.count_available().await?.count, 1);
//!
//! mirror.go_down(); // Valkey is gone: the same answers, from the truth
//! assert_eq!(availability.find_available_mitras().await?, vec![mitra]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })
//! # }
//! ```

mod admin;
#[cfg(test)]
mod admin_tests;
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
