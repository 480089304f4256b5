//! The adapters behind the ports: the Postgres pool (migrated, or its schema checked) and the
//! Valkey mirror with its pub/sub subscriber.

use crate::migrate::{check_schema_when_reachable, migrate_when_reachable};
use crate::{Service, StartupError};
use halo_config::Config;
use halo_metrics::Metrics;
use halo_postgres::{Pool, PoolSettings};
use halo_valkey::{Keys, Subscriber, ValkeyEventSignal, ValkeyMirror, ValkeySettings};
use std::sync::Arc;

/// Every store connection of one instance.
pub(crate) struct Stores {
    pub pool: Pool,
    pub mirror: Arc<ValkeyMirror>,
    /// The `config:invalidate` subscription's connection, and its channel.
    pub subscriber: Subscriber,
    pub config_channel: String,
    /// The app events' wake-up: published after commits, subscribed to on `events_channel`.
    pub events_signal: Arc<ValkeyEventSignal>,
    pub events_channel: String,
}

impl Stores {
    /// Connects both stores; Postgres is migrated (or, with `MIGRATE_ON_START=false`, checked)
    /// before anything else runs. Valkey is not waited for: the core starts degraded without it.
    pub async fn connect(
        config: &Config,
        service: Service,
        metrics: &Metrics,
    ) -> Result<Self, StartupError> {
        let pool = halo_postgres::connect_pool(
            config.database_url.expose(),
            &PoolSettings {
                max_size: config.pg_pool_size,
                timeout: config.pg_timeout,
            },
        )?;
        if config.migrate_on_start {
            migrate_when_reachable(&pool).await?;
        } else {
            check_schema_when_reachable(&pool, service).await?;
        }
        observe_pool(&pool, metrics);
        let valkey = ValkeySettings {
            url: config.valkey_url.expose().to_owned(),
            key_prefix: config.valkey_key_prefix.clone(),
            timeout: config.valkey_timeout,
            cluster: config.valkey_cluster,
            ca_cert: config.valkey_ca_cert.clone(),
        };
        let (subscriber, connection) = halo_valkey::connect(&valkey)?;
        let keys = Keys::new(valkey.key_prefix.clone());
        let config_channel = keys.config_channel();
        let events_channel = keys.events_channel();
        let events_signal = Arc::new(ValkeyEventSignal::new(
            connection.clone(),
            &keys,
            valkey.timeout,
            metrics.clone(),
        ));
        let mirror = Arc::new(ValkeyMirror::new(
            connection,
            keys,
            valkey.timeout,
            metrics.clone(),
        ));
        Ok(Self {
            pool,
            mirror,
            subscriber,
            config_channel,
            events_signal,
            events_channel,
        })
    }
}

/// The pool's size, idle and waiting counts, read when `/metrics` is rendered.
fn observe_pool(pool: &Pool, metrics: &Metrics) {
    let observed = pool.clone();
    metrics.before_render(move |metrics| {
        let status = observed.status();
        metrics.pg_pool(
            status.size,
            status.available,
            status.waiting,
            status.max_size,
        );
    });
}
