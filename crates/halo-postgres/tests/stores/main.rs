//! The stores against a real Postgres: the contracts the fakes pass too (`truth`: the truth's,
//! `sessions`: the refresh sessions'); OTP codes, accounts and refresh sessions;
//! every chat transition, the races it must win exactly once (accepts, capacity, timers) and the
//! timer sweep; the app-event log each transition appends to (order under concurrent commits);
//! TLS to a server of the test's own, the schema version check. Each test owns its
//! database.

// Setup helpers outside `#[test]` functions panic on purpose: a broken fixture is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test code")]

mod auth;
mod chat;
mod events;
mod fixture;
mod offers;
mod races;
mod schema;
mod sessions;
mod timers;
mod tls;
mod truth;
