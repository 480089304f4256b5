//! The fakes against the contracts their real adapters pass too: `InMemoryMirror` the mirror
//! contract (halo-valkey runs it on a real valkey-server), `InMemoryTruth` the truth contract
//! (halo-postgres runs it on a real Postgres), `InMemoryAuth` the session contract (and
//! `PgAuth` there); the switches tests use, and the gate.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test setup may panic

mod auth;
mod contract;
mod gate;
mod switches;
mod truth;
