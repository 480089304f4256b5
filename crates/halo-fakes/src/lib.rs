//! In-memory implementations of the store ports (`InMemoryMirror` for the Valkey mirror,
//! `InMemoryTruth` for the Postgres truth, settings and directory), for unit tests of the core's
//! decisions that run without Postgres or Valkey, and (feature `contract`) the mirror contract
//! suite that keeps them honest: the same cases run against `InMemoryMirror` here and against `ValkeyMirror` on a
//! real valkey-server in halo-valkey's tests.
//!
//! Depends on the ports and the domain only, never on the core or an adapter.

mod clock;
mod mirror;
mod truth;

#[cfg(feature = "contract")]
pub mod contract;

pub use clock::ManualClock;
pub use mirror::InMemoryMirror;
pub use truth::InMemoryTruth;
