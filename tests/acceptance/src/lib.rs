//! The harness of the black-box acceptance suite (`tests/checklist`): the real `public-api` and
//! `internal-api` binaries, built once per test process ([`binaries`]), started as child
//! processes ([`Instance`]) over a fresh Postgres database and an own `valkey-server`
//! ([`Stack`]), driven over HTTP as the apps and the control centre do, with the stores
//! inspected directly as the checklist does. [`PgProxy`] lets a test cut Postgres without
//! touching the shared test cluster; [`OtlpReceiver`] stands in for an OpenTelemetry collector.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test harness")]

mod binaries;
mod http;
mod instance;
mod metrics;
mod otlp;
mod proxy;
mod sse;
mod stack;

pub use binaries::{binaries, Binaries};
pub use halo_testkit::{eventually, TestCerts, TlsTunnel, ValkeyCluster, ValkeyServer};
pub use http::{Http, Reply};
pub use instance::{run_to_exit, Instance, Kind};
pub use metrics::MetricsText;
pub use otlp::{OtlpReceiver, ReceivedSpan};
pub use proxy::PgProxy;
pub use sse::{EventStream, SseEvent};
pub use stack::{service_env, Customer, Mitra, Stack, StackOptions, DEV_CODE};
