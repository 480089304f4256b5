//! The operator settings store (`app_config` and its audit history).

use crate::TruthError;
use async_trait::async_trait;
use halo_domain::{AppSettings, SettingError, SettingKey};
use time::OffsetDateTime;

/// One audited settings change (`app_config_history`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingChange {
    pub key: String,
    pub old: i64,
    pub new: i64,
    pub changed_by: Option<uuid::Uuid>,
    pub changed_at: OffsetDateTime,
}

/// # Errors
/// Every method returns `TruthError::Unavailable` when Postgres does not answer.
#[async_trait]
pub trait SettingsStore: Send + Sync + 'static {
    /// The operator settings from `app_config`, validated (defaults for missing keys).
    async fn load_settings(&self) -> Result<AppSettings, TruthError>;

    /// Applies `changes` to the settings as stored now, in one transaction that serializes
    /// with every other change: validated against the current values of the other keys (a
    /// cross-field rule cannot be broken by two changes racing), only the keys that change are
    /// written, each with an audit row (who, old, new). `Ok(Err(_))` when the result is not
    /// valid (nothing written).
    async fn change_settings(
        &self,
        changes: &[(SettingKey, i64)],
        changed_by: uuid::Uuid,
    ) -> Result<Result<AppSettings, SettingError>, TruthError>;

    /// The newest `limit` settings changes, newest first.
    async fn settings_history(&self, limit: u32) -> Result<Vec<SettingChange>, TruthError>;
}
