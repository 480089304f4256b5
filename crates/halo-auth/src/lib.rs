//! Authentication: phone OTP for apps, email + argon2 password for operators, HS256 access
//! tokens (`sub`, `role`, `sid`, `exp`) and refresh tokens stored hashed and rotated on use.
//! Stores are reached through `halo_ports::AuthStore`; codes leave through `OtpSender`.

mod secrets;
mod service;
mod tokens;

pub use secrets::{hash_password, verify_password, PasswordError};
pub use service::{Auth, AuthError, AuthSettings, LogOtpSender, Login, OTP_MAX_ATTEMPTS, OTP_TTL};
pub use tokens::{Principal, TokenError, TokenKeys, TokenPair};
