//! Abuse limits: which actions are counted, per what, and how many a window allows. The
//! defaults are what a production marketplace uses: a few OTP codes per phone per quarter hour
//! (SMS costs money), more per address (carrier NAT puts many phones behind one), and a handful
//! of chat requests per customer per ten minutes.

use std::fmt;
use std::time::Duration;

/// An action counted against a limit, and what it is counted per.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LimitedAction {
    OtpRequestPerPhone,
    OtpRequestPerAddress,
    OtpVerifyPerPhone,
    OtpVerifyPerAddress,
    OperatorLoginPerEmail,
    OperatorLoginPerAddress,
    ChatRequestPerCustomer,
}

impl LimitedAction {
    pub const ALL: [LimitedAction; 7] = [
        Self::OtpRequestPerPhone,
        Self::OtpRequestPerAddress,
        Self::OtpVerifyPerPhone,
        Self::OtpVerifyPerAddress,
        Self::OperatorLoginPerEmail,
        Self::OperatorLoginPerAddress,
        Self::ChatRequestPerCustomer,
    ];

    /// The name in counters, keys and the `RATE_LIMIT_<NAME>` variable (upper-cased).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::OtpRequestPerPhone => "otp_request_per_phone",
            Self::OtpRequestPerAddress => "otp_request_per_address",
            Self::OtpVerifyPerPhone => "otp_verify_per_phone",
            Self::OtpVerifyPerAddress => "otp_verify_per_address",
            Self::OperatorLoginPerEmail => "operator_login_per_email",
            Self::OperatorLoginPerAddress => "operator_login_per_address",
            Self::ChatRequestPerCustomer => "chat_request_per_customer",
        }
    }

    pub const fn default_limit(self) -> RateLimit {
        const QUARTER_HOUR: Duration = Duration::from_secs(900);
        match self {
            Self::OtpRequestPerPhone => RateLimit::new(5, QUARTER_HOUR),
            Self::OtpRequestPerAddress => RateLimit::new(30, QUARTER_HOUR),
            Self::OtpVerifyPerPhone => RateLimit::new(10, QUARTER_HOUR),
            Self::OtpVerifyPerAddress => RateLimit::new(60, QUARTER_HOUR),
            Self::OperatorLoginPerEmail => RateLimit::new(10, QUARTER_HOUR),
            Self::OperatorLoginPerAddress => RateLimit::new(30, QUARTER_HOUR),
            Self::ChatRequestPerCustomer => RateLimit::new(10, Duration::from_secs(600)),
        }
    }
}

impl fmt::Display for LimitedAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// At most `max` per `window`; the window starts with the first hit (so a burst is paid for
/// by waiting out the window: the backoff).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    max: u32,
    window: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected <count>/<seconds> with both at least 1, got {0:?}")]
pub struct InvalidRateLimit(pub String);

impl RateLimit {
    /// `max` and the window are at least 1 (a limit of 0 would refuse everything).
    pub const fn new(max: u32, window: Duration) -> Self {
        let max = if max == 0 { 1 } else { max };
        let window = if window.is_zero() {
            Duration::from_secs(1)
        } else {
            window
        };
        Self { max, window }
    }

    /// `"<count>/<seconds>"`, e.g. `5/900`.
    pub fn parse(raw: &str) -> Result<Self, InvalidRateLimit> {
        let invalid = || InvalidRateLimit(raw.to_owned());
        let (max, seconds) = raw.trim().split_once('/').ok_or_else(invalid)?;
        let max: u32 = max.trim().parse().map_err(|_| invalid())?;
        let seconds: u64 = seconds.trim().parse().map_err(|_| invalid())?;
        if max == 0 || seconds == 0 {
            return Err(invalid());
        }
        Ok(Self::new(max, Duration::from_secs(seconds)))
    }

    pub const fn max(&self) -> u32 {
        self.max
    }

    pub const fn window(&self) -> Duration {
        self.window
    }

    /// Whether the `count`-th hit of a window is over the limit.
    pub const fn exceeded_by(&self, count: u64) -> bool {
        count > self.max as u64
    }
}

/// The limit of every action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimits {
    limits: [RateLimit; 7],
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            limits: LimitedAction::ALL.map(LimitedAction::default_limit),
        }
    }
}

impl RateLimits {
    pub fn get(&self, action: LimitedAction) -> RateLimit {
        self.limits[action as usize]
    }

    #[must_use]
    pub fn with(mut self, action: LimitedAction, limit: RateLimit) -> Self {
        self.limits[action as usize] = limit;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_as_count_per_seconds() {
        assert_eq!(
            RateLimit::parse("5/900"),
            Ok(RateLimit::new(5, Duration::from_secs(900)))
        );
        assert_eq!(
            RateLimit::parse(" 3 / 2 "),
            Ok(RateLimit::new(3, Duration::from_secs(2)))
        );
        for bad in ["", "5", "0/10", "5/0", "-1/10", "a/b", "5/10/2"] {
            assert!(RateLimit::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn actions_are_named_as_their_counters_and_variables() {
        use LimitedAction::*;
        // Valkey counter keys are `<name>:<who>` (Display) and halo-config reads
        // `RATE_LIMIT_<NAME>`: renaming one resets live counters and orphans a deployed setting.
        for (action, name) in [
            (OtpRequestPerPhone, "otp_request_per_phone"),
            (OtpRequestPerAddress, "otp_request_per_address"),
            (OtpVerifyPerPhone, "otp_verify_per_phone"),
            (OtpVerifyPerAddress, "otp_verify_per_address"),
            (OperatorLoginPerEmail, "operator_login_per_email"),
            (OperatorLoginPerAddress, "operator_login_per_address"),
            (ChatRequestPerCustomer, "chat_request_per_customer"),
        ] {
            assert_eq!(action.as_str(), name);
            assert_eq!(action.to_string(), name);
        }
    }

    #[test]
    fn the_hit_after_max_exceeds() {
        let limit = RateLimit::new(2, Duration::from_secs(1));
        assert!(!limit.exceeded_by(2));
        assert!(limit.exceeded_by(3));
    }

    #[test]
    fn defaults_and_overrides() {
        let limits = RateLimits::default().with(
            LimitedAction::OtpRequestPerPhone,
            RateLimit::new(1, Duration::from_secs(5)),
        );
        assert_eq!(limits.get(LimitedAction::OtpRequestPerPhone).max(), 1);
        assert_eq!(limits.get(LimitedAction::OtpVerifyPerPhone).max(), 10);
    }
}
