//! The use cases on the stores: availability, chat, the operators' mitra admin, auth and the
//! rate limiter.

use crate::stores::Stores;
use crate::StartupError;
use halo_auth::{Auth, AuthSettings, LogOtpSender, TokenKeys};
use halo_config::Config;
use halo_core::{
    Availability, AvailabilityStores, Chat, DevPayments, Events, Limiter, MitraAdmin, SettingsCache,
};
use halo_metrics::Metrics;
use halo_ports::{SettingsStore, SystemClock};
use halo_postgres::{PgAuth, PgChat, PgEvents, PgTruth};
use std::sync::Arc;

pub(crate) struct Services {
    pub availability: Arc<Availability>,
    pub chat: Arc<Chat>,
    pub events: Arc<Events>,
    pub admin: Arc<MitraAdmin>,
    pub auth: Arc<Auth>,
    pub limiter: Arc<Limiter>,
}

impl Services {
    /// Loads the operator settings (a start-up without them is refused), then builds every use
    /// case. Nothing is sent to Valkey yet.
    pub async fn build(
        config: &Config,
        stores: &Stores,
        metrics: &Metrics,
    ) -> Result<Self, StartupError> {
        let truth = Arc::new(PgTruth::new(stores.pool.clone(), metrics.clone()));
        let auth_store = Arc::new(PgAuth::new(stores.pool.clone(), metrics.clone()));
        let settings = SettingsCache::new(
            truth
                .load_settings()
                .await
                .map_err(StartupError::Settings)?,
        );
        let clock = instance_clock(config);
        let stores_of_availability = AvailabilityStores {
            truth: truth.clone(),
            settings: truth.clone(),
            mirror: stores.mirror.clone(),
            clock: clock.clone(),
        };
        let availability = Arc::new(
            Availability::new(stores_of_availability, settings, metrics.clone())
                .with_postgres_heartbeat_lag(config.heartbeat_mirror_interval),
        );
        let event_log = Arc::new(PgEvents::new(stores.pool.clone(), metrics.clone()));
        let events = Arc::new(Events::new(
            event_log.clone(),
            stores.events_signal.clone(),
            availability.clone(),
        ));
        let chat = Arc::new(
            Chat::new(
                Arc::new(PgChat::new(stores.pool.clone(), metrics.clone())),
                availability.clone(),
                Arc::new(DevPayments::default()),
            )
            .with_announcer(events.announcer())
            .with_event_log(event_log.clone()),
        );
        let admin = Arc::new(
            MitraAdmin::new(truth, auth_store.clone(), availability.clone())
                .with_event_log(event_log),
        );
        let auth = Arc::new(Auth::new(
            auth_store,
            Arc::new(LogOtpSender {
                reveal_code: config.app_env != halo_config::AppEnv::Production,
            }),
            TokenKeys::new(
                config.auth_jwt_secret.expose().as_bytes(),
                config.access_token_ttl,
            ),
            clock,
            AuthSettings {
                refresh_ttl: config.refresh_token_ttl,
                dev_code: config.otp_dev_code.clone(),
            },
        ));
        let limiter = Arc::new(Limiter::new(
            stores.mirror.clone(),
            availability.clone(),
            config.rate_limits.clone(),
        ));
        Ok(Self {
            availability,
            chat,
            events,
            admin,
            auth,
            limiter,
        })
    }
}

/// The wall clock, or (tests only, see `HALO_TEST_CLOCK_OFFSET_SECONDS`) a skewed one.
fn instance_clock(config: &Config) -> Arc<dyn halo_ports::Clock> {
    match config.clock_offset_seconds {
        0 => Arc::new(SystemClock),
        offset => {
            tracing::warn!(offset, "this instance's clock is skewed on purpose (test)");
            Arc::new(halo_ports::SkewedClock::by_seconds(offset))
        }
    }
}
