//! Operator settings: validated, audited changes, made visible to every instance.

use super::Availability;
use crate::error::AvailabilityError;

impl Availability {
    // ---- operator settings --------------------------------------------------------------

    /// Validates and saves a settings change against the values stored now (two operators
    /// changing different keys at once both keep theirs; each change is audited), then makes
    /// every instance see it: this one at once, the others through `config:invalidate` (and
    /// their periodic reload if it is lost).
    pub async fn update_settings(
        &self,
        changes: Vec<(halo_domain::SettingKey, i64)>,
        updated_by: uuid::Uuid,
    ) -> Result<halo_domain::AppSettings, AvailabilityError> {
        let next = self
            .settings_store
            .change_settings(&changes, updated_by)
            .await??;
        self.settings.set(next);
        self.bust_beacon().await;
        self.side_effect("publish_config_invalidate", |m| {
            m.publish_config_invalidate()
        })
        .await;
        Ok(next)
    }

    /// The settings as stored now (the control centre's view, not this instance's cache).
    pub async fn stored_settings(&self) -> Result<halo_domain::AppSettings, AvailabilityError> {
        Ok(self.settings_store.load_settings().await?)
    }

    /// The newest `limit` settings changes, newest first.
    pub async fn settings_history(
        &self,
        limit: u32,
    ) -> Result<Vec<halo_ports::SettingChange>, AvailabilityError> {
        Ok(self.settings_store.settings_history(limit).await?)
    }

    /// Reloads the settings cache from the store; on failure the cached values stay.
    pub async fn reload_settings(
        &self,
    ) -> Result<halo_domain::AppSettings, halo_ports::TruthError> {
        self.settings.reload(self.settings_store.as_ref()).await
    }

    /// Reloads settings and drops the beacon snapshot (a `config:invalidate` arrived, or the
    /// subscription was re-established and may have missed one).
    pub async fn on_config_invalidated(&self) {
        if let Err(error) = self.reload_settings().await {
            tracing::warn!(error = %error, "settings reload failed; keeping the cached values");
        }
        self.bust_beacon().await;
    }
}
