//! The availability domain: who can take a customer now, capacity math, operator settings and
//! the expected shape of the Valkey mirror. Pure functions over plain values — no I/O, no async.
//! Every item is exported at the crate root (one path each); the modules are private.

mod accounts;
mod availability;
mod chat;
mod idle_order;
mod ids;
mod limits;
mod mirror_image;
mod settings;

pub use accounts::{mask_phone_numbers, InvalidPhone, Phone, Role, UnknownRole};
pub use availability::{is_fresh, stale_cutoff, AvailabilityRules, Beacon, MitraState};
pub use chat::{validate_minutes, InvalidMinutes, SessionStatus};
pub use idle_order::{IdleRank, TIE_BREAK_SPAN};
pub use ids::{IdParseError, MitraId};
pub use limits::{InvalidRateLimit, LimitedAction, RateLimit, RateLimits};
pub use mirror_image::{
    DriftEntry, DriftKind, DriftReport, MirrorImage, MitraTruth, TruthSnapshot,
};
pub use settings::{AppSettings, SettingError, SettingKey};
