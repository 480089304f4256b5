//! Every background loop of an instance, started from one place (`spawn_background`): the three
//! sweeps (`availability::sweeps`), the mirror watcher (`availability::watch`), the settings
//! safety-net reload, and the chat timers. Each stops when the shutdown signal turns true.

use crate::availability::{Availability, MirrorWatch};
use crate::chat::Chat;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

#[derive(Debug, Clone)]
pub struct Cadences {
    pub auto_offline: Duration,
    pub heartbeat_mirror: Duration,
    /// `None` disables the reconciliation sweep.
    pub reconciliation: Option<Duration>,
    pub mirror_watch: Duration,
    pub settings_refresh: Duration,
    /// How often due chat timers (blast, payment, session end) are applied and unsettled
    /// payments refunded. Every instance runs them; the store claims due rows with SKIP LOCKED,
    /// so none is processed twice (refunds are idempotent per charge key anyway).
    pub chat_timers: Duration,
}

/// The lease lives a little less than the cadence, so the next tick (on any instance) can run.
fn lease_ttl(cadence: Duration) -> Duration {
    (cadence * 9 / 10).max(Duration::from_millis(100))
}

/// Spawns every background loop; each stops when `shutdown` turns true.
pub fn spawn_background(
    availability: Arc<Availability>,
    chat: Arc<Chat>,
    cadences: &Cadences,
    shutdown: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    let av = availability.clone();
    let ttl = lease_ttl(cadences.auto_offline);
    tasks.push(every(cadences.auto_offline, shutdown.clone(), move || {
        let av = av.clone();
        async move {
            av.auto_offline_tick(Some(ttl)).await;
        }
    }));
    let av = availability.clone();
    let ttl = lease_ttl(cadences.heartbeat_mirror);
    tasks.push(every(
        cadences.heartbeat_mirror,
        shutdown.clone(),
        move || {
            let av = av.clone();
            async move {
                av.heartbeat_mirror_tick(Some(ttl)).await;
            }
        },
    ));
    if let Some(cadence) = cadences.reconciliation {
        let av = availability.clone();
        let ttl = lease_ttl(cadence);
        tasks.push(every(cadence, shutdown.clone(), move || {
            let av = av.clone();
            async move {
                av.reconciliation_tick(Some(ttl)).await;
            }
        }));
    }
    tasks.push(spawn_watcher(
        availability.clone(),
        cadences.mirror_watch,
        shutdown.clone(),
    ));
    let av = availability;
    tasks.push(every(
        cadences.settings_refresh,
        shutdown.clone(),
        move || {
            let av = av.clone();
            async move {
                if let Err(error) = av.reload_settings().await {
                    tracing::warn!(error = %error, "periodic settings reload failed");
                }
            }
        },
    ));
    // At once, then every tick: timers that fell due while no instance ran are applied first.
    let first = Duration::ZERO;
    let ttl = lease_ttl(cadences.chat_timers);
    tasks.push(every_from(
        first,
        cadences.chat_timers,
        shutdown.clone(),
        move || {
            let chat = chat.clone();
            async move { chat.timers_tick(Some(ttl)).await }
        },
    ));
    tasks
}

/// The watcher checks every `period`, and at once when the mirror stops being trusted.
fn spawn_watcher(
    availability: Arc<Availability>,
    period: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut watch = MirrorWatch::default();
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                () = availability.health().woken() => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            watch.tick(&availability).await;
        }
    })
}

/// Runs `tick` every `period` (first run after one period) until shutdown.
fn every<F, Fut>(period: Duration, shutdown: watch::Receiver<bool>, tick: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    every_from(period, period, shutdown, tick)
}

/// Runs `tick` after `first`, then every `period`, until shutdown.
fn every_from<F, Fut>(
    first: Duration,
    period: Duration,
    mut shutdown: watch::Receiver<bool>,
    mut tick: F,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + first, period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => tick().await,
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    })
}
