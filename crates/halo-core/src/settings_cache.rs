//! Operator settings cached in-process, so hot paths never read `app_config`. Reloaded on
//! `config:invalidate`, on every (re)subscription, and periodically as a safety net for
//! invalidations lost while pub/sub was down.

use halo_domain::AppSettings;
use halo_ports::{SettingsStore, TruthError};
use std::sync::{Arc, RwLock};

#[derive(Clone)]
pub struct SettingsCache {
    current: Arc<RwLock<AppSettings>>,
}

impl SettingsCache {
    pub fn new(initial: AppSettings) -> Self {
        Self {
            current: Arc::new(RwLock::new(initial)),
        }
    }

    /// The cached settings (a copy: the lock is held for nanoseconds).
    pub fn get(&self) -> AppSettings {
        match self.current.read() {
            Ok(guard) => *guard,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    pub fn set(&self, settings: AppSettings) {
        match self.current.write() {
            Ok(mut guard) => *guard = settings,
            Err(poisoned) => *poisoned.into_inner() = settings,
        }
    }

    /// Reads `app_config` again; on failure keeps the previous values.
    pub async fn reload(&self, truth: &dyn SettingsStore) -> Result<AppSettings, TruthError> {
        let settings = truth.load_settings().await?;
        self.set(settings);
        Ok(settings)
    }
}
