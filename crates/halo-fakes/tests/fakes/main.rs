//! `InMemoryMirror`: the mirror contract (the same cases halo-valkey runs against a real
//! valkey-server), and the switches tests use.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test setup may panic

mod contract;
mod switches;
