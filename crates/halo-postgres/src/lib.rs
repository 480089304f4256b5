//! The Postgres truth adapter: the pool (with the timeouts deadpool leaves off by default),
//! migrations applied under an advisory lock, and the named, prepared queries behind
//! `AvailabilityTruth`, `AuthStore`, `ChatStore` and `EventLog`. Only this crate knows tokio-postgres.

mod auth_queries;
mod auth_store;
mod chat_queries;
mod chat_store;
mod db;
mod error;
mod event_queries;
mod events_store;
mod pool;
mod queries;
mod tls;
mod truth;

pub use auth_store::PgAuth;
pub use chat_store::PgChat;
pub use deadpool_postgres::Pool;
pub use error::classify;
pub use events_store::PgEvents;
pub use pool::{
    connect_one, connect_pool, migrate, migrate_standalone, schema_status, ConnectError,
    MigrateError, PoolError, PoolSettings, SchemaStatus,
};
pub use truth::PgTruth;
