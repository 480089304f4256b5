//! Every route of both services against real stores: happy paths, each error code, the
//! authorization matrix, concurrency, durable timers and the edges (malformed input); and the
//! deploy files against the routes and the configuration (no stores).

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test code")]

mod harness;

mod auth;
mod authz;
mod chat;
mod concurrency;
mod config;
mod deploy;
mod edges;
mod openapi;
mod operator;
mod smoke;
mod timers;
mod version;
