//! Errors of the use cases. Mirror errors never appear here: they are absorbed (fallback or
//! best-effort write). Only the truth can fail a use case.

use halo_ports::TruthError;

#[derive(Debug, thiserror::Error)]
pub enum AvailabilityError {
    #[error("mitra not found")]
    MitraNotFound,
    #[error("mitra account is deactivated")]
    Deactivated,
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    InvalidSetting(#[from] halo_domain::SettingError),
    /// Postgres did not answer: the caller should retry later (HTTP 503).
    #[error("postgres unavailable")]
    StoreUnavailable(#[source] TruthError),
    /// Postgres answered something unusable: a bug or schema mismatch (HTTP 500).
    #[error("store failure")]
    Store(#[source] TruthError),
}

impl From<TruthError> for AvailabilityError {
    fn from(error: TruthError) -> Self {
        match error {
            TruthError::MitraNotFound => Self::MitraNotFound,
            TruthError::Conflict(what) => Self::Conflict(what),
            TruthError::Unavailable(_) => Self::StoreUnavailable(error),
            TruthError::Query(_) => Self::Store(error),
        }
    }
}
