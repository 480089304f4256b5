//! Chat sessions: their states, which ones hold a mitra's slot, and how long they may run.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SessionStatus {
    /// Nobody could take the request; it waits in line (SPEC §12.8).
    Queued,
    /// A blast is out; the first mitra to accept takes it.
    Searching,
    /// A targeted request holds the mitra's slot until the customer pays.
    PendingPayment,
    Active,
    Ended,
    /// Nobody accepted the blast in time (or nobody was available).
    Failed,
    /// Not paid in time, or withdrawn before it started.
    Cancelled,
}

impl SessionStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Searching => "searching",
            Self::PendingPayment => "pending_payment",
            Self::Active => "active",
            Self::Ended => "ended",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Counted in the mitra's capacity (SPEC §1 rule 4).
    pub const fn holds_slot(self) -> bool {
        matches!(self, Self::Active | Self::PendingPayment)
    }

    pub const fn is_final(self) -> bool {
        matches!(self, Self::Ended | Self::Failed | Self::Cancelled)
    }
}

impl fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown session status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for SessionStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::Queued,
            Self::Searching,
            Self::PendingPayment,
            Self::Active,
            Self::Ended,
            Self::Failed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
        .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// Minutes a customer may buy or add in one go.
pub const MINUTES_RANGE: (u32, u32) = (1, 240);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("minutes must be between {min} and {max}, got {0}", min = MINUTES_RANGE.0, max = MINUTES_RANGE.1)]
pub struct InvalidMinutes(pub i64);

pub fn validate_minutes(raw: i64) -> Result<u32, InvalidMinutes> {
    u32::try_from(raw)
        .ok()
        .filter(|m| (MINUTES_RANGE.0..=MINUTES_RANGE.1).contains(m))
        .ok_or(InvalidMinutes(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_and_finality() {
        use SessionStatus::*;
        // The names are the `chat_sessions.status` values and the API's `status` field.
        for (status, name, slot, done) in [
            (Queued, "queued", false, false),
            (Searching, "searching", false, false),
            (PendingPayment, "pending_payment", true, false),
            (Active, "active", true, false),
            (Ended, "ended", false, true),
            (Failed, "failed", false, true),
            (Cancelled, "cancelled", false, true),
        ] {
            assert_eq!(status.holds_slot(), slot, "{name}");
            assert_eq!(status.is_final(), done, "{name}");
            assert_eq!(status.as_str(), name);
            assert_eq!(status.to_string(), name);
            assert_eq!(name.parse::<SessionStatus>(), Ok(status));
        }
        assert_eq!(
            "paid".parse::<SessionStatus>(),
            Err(UnknownStatus("paid".to_owned()))
        );
    }

    #[test]
    fn minutes() {
        assert_eq!(validate_minutes(15), Ok(15));
        assert_eq!(validate_minutes(240), Ok(240));
        assert_eq!(validate_minutes(0), Err(InvalidMinutes(0)));
        assert_eq!(validate_minutes(241), Err(InvalidMinutes(241)));
        assert_eq!(validate_minutes(-3), Err(InvalidMinutes(-3)));
    }
}
