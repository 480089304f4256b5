//! The subscriptions (`config:invalidate`, and the app events' wake-up channel). The dedicated
//! pub/sub stream just ends when Valkey goes away, so this loop reconnects and resubscribes by
//! itself, pings to notice a dead peer, and
//! reports every (re)subscription: messages published while it was away are lost (pub/sub is
//! at-most-once), so the listener must treat a resubscription as an invalidation too.
//!
//! On a cluster the channel is a sharded one (`SSUBSCRIBE`, served by the primary of the
//! channel's slot, which the key prefix's hash tag makes the mirror's slot). The cluster client
//! resubscribes after a reconnect (an `ssubscribe` push says so); when the server itself drops
//! the subscription (`sunsubscribe`: the slot moved in a failover) the loop subscribes anew.

use crate::connection::{ClusterSpec, Subscriber, SubscriberTarget};
use futures_util::StreamExt;
use redis::{ProtocolVersion, PushKind};
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidationEvent {
    /// (Re)subscribed: anything may have changed while we were not listening.
    Subscribed,
    /// A message arrived on the channel.
    Invalidated,
}

const PING_EVERY: Duration = Duration::from_secs(5);
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Runs until `shutdown` turns true, calling `on_event` for each event.
pub fn spawn_invalidation_listener<F>(
    subscriber: Subscriber,
    channel: String,
    timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
    on_event: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(InvalidationEvent) + Send + Sync + 'static,
{
    tokio::spawn(async move {
        let mut retry = RETRY_MIN;
        while !*shutdown.borrow() {
            let life = match &subscriber.target {
                SubscriberTarget::Standalone(client) => {
                    listen(client, &channel, timeout, &mut shutdown, &on_event).await
                }
                SubscriberTarget::Cluster(spec) => {
                    listen_sharded(spec, &channel, timeout, &mut shutdown, &on_event).await
                }
            };
            match life {
                Ok(()) => return,
                Err(error) => {
                    tracing::debug!(%error, channel, "subscription lost; retrying");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = shutdown.changed() => return,
            }
            retry = (retry * 2).min(RETRY_MAX);
        }
    })
}

/// One subscription's life: returns Ok on shutdown, Err when the connection is lost.
async fn listen<F>(
    client: &redis::Client,
    channel: &str,
    timeout: Duration,
    shutdown: &mut watch::Receiver<bool>,
    on_event: &F,
) -> Result<(), String>
where
    F: Fn(InvalidationEvent),
{
    let pubsub = within(timeout, "connect", client.get_async_pubsub()).await?;
    let (mut sink, stream) = pubsub.split();
    within(timeout, "subscribe", sink.subscribe(channel)).await?;
    tracing::info!(channel, "subscribed");
    let mut subscription = Standalone { sink, stream };
    serve(&mut subscription, timeout, shutdown, on_event).await
}

/// What a subscribed connection delivered.
enum Delivery {
    Message,
    /// The client subscribed again by itself (a reconnect or a failover on a cluster).
    Resubscribed,
    /// Nothing to report (another kind of push).
    Nothing,
    /// The subscription is gone: subscribe again from scratch.
    Lost(&'static str),
}

/// A subscribed connection of either kind.
trait Subscription {
    async fn next(&mut self) -> Delivery;
    async fn ping(&mut self) -> redis::RedisResult<redis::Value>;
}

/// Once subscribed: reports it, then every message, and pings every `PING_EVERY` to notice a
/// dead peer, until shutdown (Ok) or the connection is lost (Err).
async fn serve<S, F>(
    subscription: &mut S,
    timeout: Duration,
    shutdown: &mut watch::Receiver<bool>,
    on_event: &F,
) -> Result<(), String>
where
    S: Subscription,
    F: Fn(InvalidationEvent),
{
    on_event(InvalidationEvent::Subscribed);
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            delivery = subscription.next() => match delivery {
                Delivery::Message => on_event(InvalidationEvent::Invalidated),
                Delivery::Resubscribed => on_event(InvalidationEvent::Subscribed),
                Delivery::Nothing => {}
                Delivery::Lost(why) => return Err(why.into()),
            },
            _ = ping.tick() => {
                let pong = tokio::time::timeout(timeout * 4, subscription.ping()).await;
                if !matches!(pong, Ok(Ok(_))) {
                    return Err("ping failed".into());
                }
            }
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

/// A standalone server's dedicated pub/sub connection.
struct Standalone {
    sink: redis::aio::PubSubSink,
    stream: redis::aio::PubSubStream,
}

impl Subscription for Standalone {
    async fn next(&mut self) -> Delivery {
        match self.stream.next().await {
            Some(_) => Delivery::Message,
            None => Delivery::Lost("stream ended"),
        }
    }

    async fn ping(&mut self) -> redis::RedisResult<redis::Value> {
        self.sink.ping().await
    }
}

/// A cluster connection whose sharded-subscription pushes arrive on a channel.
struct Sharded {
    connection: redis::cluster_async::ClusterConnection,
    pushes: tokio::sync::mpsc::UnboundedReceiver<redis::PushInfo>,
}

impl Subscription for Sharded {
    async fn next(&mut self) -> Delivery {
        match self.pushes.recv().await.map(|push| push.kind) {
            Some(PushKind::SMessage) => Delivery::Message,
            // The client resubscribed after a reconnect or a failover: anything published in
            // between is lost.
            Some(PushKind::SSubscribe) => Delivery::Resubscribed,
            // The server dropped the subscription (its slot moved away in a failover, the old
            // primary still alive): subscribe again from scratch.
            Some(PushKind::SUnsubscribe) => Delivery::Lost("unsubscribed by the server"),
            Some(_) => Delivery::Nothing,
            None => Delivery::Lost("push channel closed"),
        }
    }

    async fn ping(&mut self) -> redis::RedisResult<redis::Value> {
        redis::cmd("PING").query_async(&mut self.connection).await
    }
}

/// `step` of a subscription's set-up, under a generous multiple of the call deadline.
async fn within<T>(
    timeout: Duration,
    step: &str,
    future: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    tokio::time::timeout(timeout * 4, future)
        .await
        .map_err(|_| format!("{step} timed out"))?
        .map_err(|e| e.to_string())
}

/// `listen` on a cluster: one sharded subscription whose pushes arrive on a channel.
async fn listen_sharded<F>(
    spec: &ClusterSpec,
    channel: &str,
    timeout: Duration,
    shutdown: &mut watch::Receiver<bool>,
    on_event: &F,
) -> Result<(), String>
where
    F: Fn(InvalidationEvent),
{
    let (sender, pushes) = tokio::sync::mpsc::unbounded_channel();
    let client = spec
        .builder(true)
        .use_protocol(ProtocolVersion::RESP3)
        .push_sender(sender)
        .build()
        .map_err(|e| e.to_string())?;
    let mut connection = within(timeout, "connect", client.get_async_connection()).await?;
    within(timeout, "subscribe", connection.ssubscribe(channel)).await?;
    tracing::info!(channel, "subscribed (sharded)");
    let mut subscription = Sharded { connection, pushes };
    serve(&mut subscription, timeout, shutdown, on_event).await
}
