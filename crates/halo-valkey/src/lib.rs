//! The Valkey mirror adapter. Only this crate knows the redis crate. Every hot-path operation is
//! one round trip (a command, a pipeline or a Lua script), every call has a deadline, and the
//! connections (one shared, one per actix worker) reconnect by themselves; dropped connections
//! are counted so the core's watcher can reseed (the crate has no reconnect callback).

mod connection;
mod events;
mod keys;
mod mirror;
mod pubsub;
mod replies;
mod scripts;

pub use connection::{connect, ConnectError, Connections, Subscriber, ValkeySettings};
pub use events::ValkeyEventSignal;
pub use keys::Keys;
pub use mirror::ValkeyMirror;
pub use pubsub::{spawn_invalidation_listener, InvalidationEvent};
