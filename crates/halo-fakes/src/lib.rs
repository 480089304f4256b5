//! In-memory implementations of the store ports (`InMemoryMirror` for the Valkey mirror,
//! `InMemoryTruth` for the Postgres truth, settings and directory, `InMemoryAuth` for the
//! refresh sessions of the auth store), for unit tests of the core's
//! decisions that run without Postgres or Valkey, and (feature `contract`) the contract suites
//! that keep them honest: the mirror's (`contract`) runs against `InMemoryMirror` here and
//! against `ValkeyMirror` on a real valkey-server in halo-valkey's tests; the truth's
//! (`truth_contract`) against `InMemoryTruth` here and `PgTruth` on a real Postgres in
//! halo-postgres' tests, as the sessions' (`auth_contract`) against `InMemoryAuth` and `PgAuth`.
//!
//! `Gated` puts any port (a fake, or a real adapter in a store-backed test) behind a `Gate`
//! that fails its calls on command and journals their order.
//!
//! Depends on the ports and the domain only, never on the core or an adapter.

mod auth;
mod clock;
mod gate;
mod mirror;
mod truth;

#[cfg(feature = "contract")]
pub mod auth_contract;
#[cfg(feature = "contract")]
pub mod contract;
#[cfg(feature = "contract")]
pub mod truth_contract;

pub use auth::InMemoryAuth;
pub use clock::ManualClock;
pub use gate::{Gate, Gated};
pub use mirror::InMemoryMirror;
pub use truth::InMemoryTruth;
