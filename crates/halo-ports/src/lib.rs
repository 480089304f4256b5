//! Store ports: what the availability use cases need from the Postgres truth, the Valkey mirror
//! and the clock. Adapters implement these traits; the core depends on nothing else.
//!
//! The fallback design hangs on one distinction every adapter must keep: `Unavailable` means
//! "the store did not answer" (the core falls back or skips), any other variant is an answer.

mod auth;
mod chat;
mod directory;
mod events;
mod limits;
mod mirror;
mod settings;
mod truth;

pub use auth::{AuthStore, OtpCheck, OtpSendError, OtpSender, Rotation, SessionRef, UserRecord};
pub use chat::{
    AcceptOutcome, BlastOutcome, ChargeKey, ChatSession, ChatStore, DueRound, Moved, OpenLimit,
    Party, PaymentError, PaymentProvider, RerouteOutcome, TargetOutcome, Timeouts,
    UnsettledPayment, WhenNobody,
};
pub use directory::{MitraDirectory, MitraRow};
pub use events::{
    AppEvent, Audience, AudienceKind, EventBatch, EventLog, EventSignal, LoggedEvent, QueuePlace,
    SessionView, StateAt, WithdrawReason,
};
pub use limits::RateCounter;
pub use mirror::{
    AvailabilityMirror, BeaconClaim, BeaconLock, HeartbeatOutcome, MirrorCoordination, MirrorError,
    MirrorHotPath, MirrorMaintenance, SeedWrite,
};
pub use settings::{SettingChange, SettingsStore};
pub use truth::{
    AvailabilityTruth, CapacityCount, MitraFlags, OfflineSweep, OnlineReason, TruthError,
};

use time::OffsetDateTime;

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where "now" comes from, so tests can move time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
}

/// The wall clock, in UTC.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// The wall clock shifted by a fixed offset: an instance whose clock is wrong (tests).
#[derive(Debug, Clone, Copy)]
pub struct SkewedClock(pub time::Duration);

impl SkewedClock {
    pub fn by_seconds(offset: i64) -> Self {
        Self(time::Duration::seconds(offset))
    }
}

impl Clock for SkewedClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + self.0
    }
}
