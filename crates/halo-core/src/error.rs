//! Errors of the use cases, in one place. Mirror errors never fail an availability or chat use
//! case: they are absorbed (fallback or best-effort write). Only the truth can; the seed and the
//! drift report need both stores.

use halo_domain::SessionStatus;
use halo_ports::{ChatSession, MirrorError, PaymentError, TruthError};
use uuid::Uuid;

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

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("no bestie is available right now")]
    NoBestieAvailable { session: Box<ChatSession> },
    #[error("this bestie is not available right now")]
    BestieUnavailable,
    #[error("this bestie is not reachable right now")]
    BestieUnreachable,
    #[error("another bestie already took this request")]
    RequestTaken,
    #[error("you are at capacity")]
    AtCapacity,
    #[error("you already have an open request")]
    OpenRequestExists { session: Uuid },
    #[error("session not found")]
    NotFound,
    #[error("the session is {0}, which does not allow this")]
    InvalidState(SessionStatus),
    #[error("payment failed")]
    Payment(#[source] PaymentError),
    #[error(transparent)]
    Availability(#[from] AvailabilityError),
}

impl From<TruthError> for ChatError {
    fn from(error: TruthError) -> Self {
        Self::Availability(error.into())
    }
}

/// Why a seed or a drift report could not run: both need both stores.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("valkey unavailable for the seed")]
    Mirror(#[source] MirrorError),
    #[error("postgres unavailable for the seed")]
    Truth(#[source] TruthError),
    #[error("the staged seed vanished {attempts} times before its swap")]
    KeptRacing { attempts: usize },
}
