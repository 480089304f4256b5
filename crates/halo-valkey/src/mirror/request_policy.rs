//! The transport rules, in one place: every request goes through `call` (or `call_raw`): a
//! deadline, the in-flight and round-trip metrics, a dropped connection counted and never sent
//! again, and the driver's errors mapped to the port's.

use super::ValkeyMirror;
use crate::connection::Conn;
use halo_metrics::Metrics;
use halo_ports::MirrorError;
use redis::{Cmd, FromRedisValue, RedisError, ScriptInvocation};
use std::future::Future;
use tracing::Instrument;

/// The server answered, and the answer is a refusal of the command (ACL, unknown or disabled
/// command, read-only replica, aborted transaction) rather than an outage or a wrong-typed key.
pub(super) fn refused_by_server(error: &RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    error.code() != Some("WRONGTYPE")
        && matches!(
            error.kind(),
            ErrorKind::Server(
                ServerErrorKind::ResponseError
                    | ServerErrorKind::NoPerm
                    | ServerErrorKind::ExecAbort
                    | ServerErrorKind::ReadOnly
            ) | ErrorKind::Extension
        )
}

/// The login may not run the command at all (ACL, renamed or unknown command) — not a
/// transient refusal (read-only replica, aborted transaction), which must not be remembered.
pub(super) fn refuses_command(error: &RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    matches!(error.kind(), ErrorKind::Server(ServerErrorKind::NoPerm))
        || error.to_string().contains("unknown command")
}

/// The connection under the request went away (the peer closed or reset it): the manager
/// reconnects in the background. A refused connection (Valkey is down) or a timeout (hung) is
/// an outage instead, and the caller falls back.
fn dropped_connection(error: &RedisError) -> bool {
    error.is_connection_dropped() && !error.is_connection_refusal()
}

/// A cluster node answered that the slot is not (or no longer) its own, or that the cluster
/// is failing over: the primary changed under the mirror, like a dropped connection.
fn redirected(error: &RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    matches!(
        error.kind(),
        ErrorKind::Server(
            ServerErrorKind::Moved
                | ServerErrorKind::Ask
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
        )
    )
}

/// A Valkey call in flight: counted while it waits, timed when it ends — also when the
/// request's future is dropped (the client went away), which code after the await would miss.
struct InFlight<'a> {
    metrics: &'a Metrics,
    op: &'static str,
    started: std::time::Instant,
}

impl<'a> InFlight<'a> {
    fn new(metrics: &'a Metrics, op: &'static str) -> Self {
        metrics.valkey_in_flight(true);
        Self {
            metrics,
            op,
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.metrics.valkey_in_flight(false);
        self.metrics
            .valkey_call_took(self.op, self.started.elapsed());
    }
}

/// A command, pipeline or script call that can be sent (again) on a connection.
pub(super) trait Request: Sync {
    fn send<'a, T: FromRedisValue + Send + 'static>(
        &'a self,
        conn: &'a mut Conn,
    ) -> impl Future<Output = Result<T, RedisError>> + Send + 'a;
}

impl Request for Cmd {
    fn send<'a, T: FromRedisValue + Send + 'static>(
        &'a self,
        conn: &'a mut Conn,
    ) -> impl Future<Output = Result<T, RedisError>> + Send + 'a {
        self.query_async(conn)
    }
}

impl Request for redis::Pipeline {
    fn send<'a, T: FromRedisValue + Send + 'static>(
        &'a self,
        conn: &'a mut Conn,
    ) -> impl Future<Output = Result<T, RedisError>> + Send + 'a {
        self.query_async(conn)
    }
}

impl Request for ScriptInvocation<'_> {
    fn send<'a, T: FromRedisValue + Send + 'static>(
        &'a self,
        conn: &'a mut Conn,
    ) -> impl Future<Output = Result<T, RedisError>> + Send + 'a {
        self.invoke_async(conn)
    }
}

pub(super) fn classify(error: RedisError) -> MirrorError {
    let corrupt = matches!(
        error.kind(),
        redis::ErrorKind::UnexpectedReturnType | redis::ErrorKind::Parse
    ) || error.code() == Some("WRONGTYPE");
    if corrupt {
        MirrorError::Corrupt(error.to_string())
    } else {
        MirrorError::Unavailable(Box::new(error))
    }
}

impl ValkeyMirror {
    /// Sends one request under the deadline and counts it.
    pub(super) async fn call<T: FromRedisValue + Send + 'static>(
        &self,
        op: &'static str,
        request: &impl Request,
    ) -> Result<T, MirrorError> {
        self.call_raw(op, request).await?.map_err(classify)
    }

    /// `call` that hands back the server's error unclassified (the deadline is still an outage).
    ///
    /// A request that finds its connection dropped (Valkey restarted, or failed over) is
    /// counted as a drop (`Connections::note_drop`: other threads renew their connections) and
    /// is not sent again: the server may have come back with older data, so its answer could
    /// not be trusted, and a write may already have landed. The core stops using the mirror
    /// until a seed has rebuilt it.
    pub(super) async fn call_raw<T: FromRedisValue + Send + 'static>(
        &self,
        op: &'static str,
        request: &impl Request,
    ) -> Result<Result<T, RedisError>, MirrorError> {
        let started = tokio::time::Instant::now();
        let mut conn = self.conn.current();
        self.metrics.valkey_round_trip(op);
        let in_flight = InFlight::new(&self.metrics, op);
        let reply = tokio::time::timeout_at(started + self.timeout, request.send(&mut conn))
            .instrument(tracing::debug_span!("valkey", op))
            .await;
        drop(in_flight);
        let reply = reply.map_err(|_| {
            MirrorError::Unavailable(
                format!("valkey {op} timed out after {:?}", self.timeout).into(),
            )
        })?;
        match reply {
            Err(error) if dropped_connection(&error) || redirected(&error) => {
                self.conn.note_drop();
                Err(MirrorError::Unavailable(Box::new(error)))
            }
            reply => Ok(reply),
        }
    }
}
