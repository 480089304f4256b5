//! The Valkey mirror adapter. Only this crate knows the redis crate. Every hot-path operation is
//! one round trip (a pipeline or a Lua script), every call has a deadline, and the connection
//! reconnects by itself (the core watches for reconnects: the crate has no callback for them).

mod connection;
mod keys;
mod mirror;
mod pubsub;
mod replies;
mod scripts;

pub use connection::{connect, Connections, ValkeySettings};
pub use keys::Keys;
pub use mirror::ValkeyMirror;
pub use pubsub::{spawn_invalidation_listener, InvalidationEvent};
