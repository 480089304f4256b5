//! The availability domain: who can take a customer now, capacity math, operator settings and
//! the expected shape of the Valkey mirror. Pure functions over plain values — no I/O, no async.

pub mod accounts;
pub mod availability;
pub mod chat;
pub mod ids;
pub mod limits;
pub mod mirror_image;
pub mod settings;

pub use accounts::{mask_phone_numbers, InvalidPhone, Phone, Role, UnknownRole};
pub use availability::{Beacon, MitraState};
pub use chat::{validate_minutes, InvalidMinutes, SessionStatus};
pub use ids::{IdParseError, MitraId};
pub use limits::{InvalidRateLimit, LimitedAction, RateLimit, RateLimits};
pub use mirror_image::{
    DriftEntry, DriftKind, DriftReport, MirrorImage, MitraTruth, TruthSnapshot,
};
pub use settings::{AppSettings, SettingError, SettingKey};
