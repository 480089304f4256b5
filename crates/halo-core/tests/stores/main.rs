//! The availability library against a real Postgres and a real Valkey: seed, write-through,
//! fallbacks, capacity, sweeps, deactivation, beacon, budgets, faults and a model-based test.
//! Each test owns its database and its `valkey-server` process.

// Setup helpers outside `#[test]` functions panic on purpose: a broken fixture is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test code")]

mod budgets;
mod faults;
mod fixture;
mod model;
mod reads;
mod seed;
mod sweeps;
mod writes;
