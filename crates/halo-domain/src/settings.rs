//! Operator-tunable settings (`app_config`), their defaults and the ranges an operator may set.
//! Constructed only through validation, so a loaded `AppSettings` is always usable.

use crate::AvailabilityRules;
use std::fmt;
use std::str::FromStr;
use time::Duration;

/// One `app_config` key. The string forms are the database keys and the API field names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SettingKey {
    MaxCustomersPerMitra,
    StaleAfterSeconds,
    BeaconCacheTtlSeconds,
    BlastTimeoutSeconds,
    PaymentTimeoutSeconds,
    HeartbeatIntervalSeconds,
    /// Open requests (searching or awaiting payment) one customer may hold at once, so one
    /// account cannot squat the capacity everybody else needs.
    MaxOpenRequestsPerCustomer,
    /// How many mitras one offer round reaches, longest idle first (SPEC §12.5).
    BlastMaxRecipients,
    /// One offer round's lifetime; the next round goes to the next candidates, until the blast
    /// timeout (0: one round, as long as the blast; SPEC §12.6).
    OfferTimeoutSeconds,
    /// Offers in a row a mitra may let expire before it is set offline (0: never; SPEC §12.7).
    MissedOffersBeforeAway,
    /// 1: a request with nobody available waits in line instead of failing (SPEC §12.8).
    QueueWhenUnavailable,
    /// How long a request may wait in line before it fails with `queue_timeout`.
    QueueMaxWaitSeconds,
}

impl SettingKey {
    pub const ALL: [SettingKey; 12] = [
        Self::MaxCustomersPerMitra,
        Self::StaleAfterSeconds,
        Self::BeaconCacheTtlSeconds,
        Self::BlastTimeoutSeconds,
        Self::PaymentTimeoutSeconds,
        Self::HeartbeatIntervalSeconds,
        Self::MaxOpenRequestsPerCustomer,
        Self::BlastMaxRecipients,
        Self::OfferTimeoutSeconds,
        Self::MissedOffersBeforeAway,
        Self::QueueWhenUnavailable,
        Self::QueueMaxWaitSeconds,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MaxCustomersPerMitra => "max_customers_per_mitra",
            Self::StaleAfterSeconds => "stale_after_seconds",
            Self::BeaconCacheTtlSeconds => "beacon_cache_ttl_seconds",
            Self::BlastTimeoutSeconds => "blast_timeout_seconds",
            Self::PaymentTimeoutSeconds => "payment_timeout_seconds",
            Self::HeartbeatIntervalSeconds => "heartbeat_interval_seconds",
            Self::MaxOpenRequestsPerCustomer => "max_open_requests_per_customer",
            Self::BlastMaxRecipients => "blast_max_recipients",
            Self::OfferTimeoutSeconds => "offer_timeout_seconds",
            Self::MissedOffersBeforeAway => "missed_offers_before_away",
            Self::QueueWhenUnavailable => "queue_when_unavailable",
            Self::QueueMaxWaitSeconds => "queue_max_wait_seconds",
        }
    }

    /// Inclusive range an operator may set. Lower bounds stay small so tests can run fast cycles.
    pub const fn range(self) -> (u32, u32) {
        match self {
            Self::MaxCustomersPerMitra => (1, 50),
            Self::StaleAfterSeconds => (5, 3_600),
            Self::BeaconCacheTtlSeconds => (1, 300),
            Self::BlastTimeoutSeconds => (5, 3_600),
            Self::PaymentTimeoutSeconds => (5, 86_400),
            Self::HeartbeatIntervalSeconds => (5, 600),
            Self::MaxOpenRequestsPerCustomer => (1, 10),
            Self::BlastMaxRecipients => (1, 10_000),
            Self::OfferTimeoutSeconds => (0, 3_600),
            Self::MissedOffersBeforeAway => (0, 100),
            Self::QueueWhenUnavailable => (0, 1),
            Self::QueueMaxWaitSeconds => (30, 86_400),
        }
    }

    pub const fn default_value(self) -> u32 {
        match self {
            Self::MaxCustomersPerMitra => 3,
            Self::StaleAfterSeconds => 90,
            Self::BeaconCacheTtlSeconds => 10,
            Self::BlastTimeoutSeconds => 60,
            Self::PaymentTimeoutSeconds => 300,
            Self::HeartbeatIntervalSeconds => 30,
            Self::MaxOpenRequestsPerCustomer => 1,
            Self::BlastMaxRecipients => 50,
            // One round as long as the blast, whatever the blast timeout is set to.
            Self::OfferTimeoutSeconds => 0,
            Self::MissedOffersBeforeAway => 0,
            Self::QueueWhenUnavailable => 0,
            Self::QueueMaxWaitSeconds => 600,
        }
    }
}

impl fmt::Display for SettingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SettingKey {
    type Err = SettingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| SettingError::UnknownKey(s.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    #[error("unknown setting {0:?}")]
    UnknownKey(String),
    #[error("{key} must be between {min} and {max}, got {got}")]
    OutOfRange {
        key: SettingKey,
        min: u32,
        max: u32,
        got: i64,
    },
    #[error("stale_after_seconds ({stale}) must be at least twice heartbeat_interval_seconds ({interval}): one late or lost ping must not take a mitra offline")]
    StaleWithoutSlack { stale: u32, interval: u32 },
}

impl SettingError {
    /// The field an API error should name.
    pub fn field(&self) -> String {
        match self {
            Self::UnknownKey(k) => k.clone(),
            Self::OutOfRange { key, .. } => key.as_str().to_owned(),
            Self::StaleWithoutSlack { .. } => format!(
                "{}, {}",
                SettingKey::StaleAfterSeconds.as_str(),
                SettingKey::HeartbeatIntervalSeconds.as_str()
            ),
        }
    }
}

/// `raw` if it is in `key`'s range.
fn checked(key: SettingKey, raw: i64) -> Result<u32, SettingError> {
    let (min, max) = key.range();
    u32::try_from(raw)
        .ok()
        .filter(|v| (min..=max).contains(v))
        .ok_or(SettingError::OutOfRange {
            key,
            min,
            max,
            got: raw,
        })
}

/// A validated set of all operator settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppSettings {
    values: [u32; SettingKey::ALL.len()],
}

impl Default for AppSettings {
    fn default() -> Self {
        Self {
            values: SettingKey::ALL.map(SettingKey::default_value),
        }
    }
}

impl AppSettings {
    /// Builds settings from (key, value) pairs on top of the defaults; every value is range-checked.
    pub fn from_pairs<I>(pairs: I) -> Result<Self, SettingError>
    where
        I: IntoIterator<Item = (SettingKey, i64)>,
    {
        Self::default().with_changes(pairs)
    }

    /// Settings read back from storage: every value range-checked, but a combination that
    /// breaks a cross-field rule added since it was saved is repaired the safe way (staleness
    /// raised to twice the interval) rather than refused, so an upgrade cannot stop a service
    /// from starting. Returns the rule that was repaired, for a warning.
    pub fn from_stored<I>(pairs: I) -> Result<(Self, Option<SettingError>), SettingError>
    where
        I: IntoIterator<Item = (SettingKey, i64)>,
    {
        let mut settings = Self::default();
        for (key, raw) in pairs {
            settings.values[key as usize] = checked(key, raw)?;
        }
        match settings.check_consistency() {
            Ok(()) => Ok((settings, None)),
            Err(broken) => {
                let interval = settings.get(SettingKey::HeartbeatIntervalSeconds);
                let (_, max) = SettingKey::StaleAfterSeconds.range();
                settings.values[SettingKey::StaleAfterSeconds as usize] =
                    interval.saturating_mul(2).min(max);
                Ok((settings, Some(broken)))
            }
        }
    }

    /// Returns a copy with `changes` applied, or the first validation error.
    pub fn with_changes<I>(mut self, changes: I) -> Result<Self, SettingError>
    where
        I: IntoIterator<Item = (SettingKey, i64)>,
    {
        for (key, raw) in changes {
            self.values[key as usize] = checked(key, raw)?;
        }
        self.check_consistency()?;
        Ok(self)
    }

    fn check_consistency(&self) -> Result<(), SettingError> {
        let stale = self.get(SettingKey::StaleAfterSeconds);
        let interval = self.get(SettingKey::HeartbeatIntervalSeconds);
        if u64::from(stale) < 2 * u64::from(interval) {
            return Err(SettingError::StaleWithoutSlack { stale, interval });
        }
        Ok(())
    }

    pub const fn get(&self, key: SettingKey) -> u32 {
        self.values[key as usize]
    }

    pub fn pairs(&self) -> impl Iterator<Item = (SettingKey, u32)> + '_ {
        SettingKey::ALL.into_iter().map(|k| (k, self.get(k)))
    }

    pub const fn max_customers_per_mitra(&self) -> u32 {
        self.get(SettingKey::MaxCustomersPerMitra)
    }

    pub fn stale_after(&self) -> Duration {
        Duration::seconds(self.get(SettingKey::StaleAfterSeconds).into())
    }

    /// What `MitraState::is_available` reads.
    pub fn availability_rules(&self) -> AvailabilityRules {
        AvailabilityRules {
            stale_after: self.stale_after(),
            max_customers: self.max_customers_per_mitra(),
        }
    }

    pub const fn beacon_ttl_seconds(&self) -> u32 {
        self.get(SettingKey::BeaconCacheTtlSeconds)
    }

    pub const fn max_open_requests_per_customer(&self) -> u32 {
        self.get(SettingKey::MaxOpenRequestsPerCustomer)
    }

    pub const fn heartbeat_interval_seconds(&self) -> u32 {
        self.get(SettingKey::HeartbeatIntervalSeconds)
    }

    pub fn blast_timeout(&self) -> Duration {
        Duration::seconds(self.get(SettingKey::BlastTimeoutSeconds).into())
    }

    pub fn payment_timeout(&self) -> Duration {
        Duration::seconds(self.get(SettingKey::PaymentTimeoutSeconds).into())
    }

    pub const fn blast_max_recipients(&self) -> u32 {
        self.get(SettingKey::BlastMaxRecipients)
    }

    /// One offer round's lifetime, never longer than the blast it belongs to (0 = as long).
    pub fn offer_timeout(&self) -> Duration {
        match self.get(SettingKey::OfferTimeoutSeconds) {
            0 => self.blast_timeout(),
            round => Duration::seconds(round.into()).min(self.blast_timeout()),
        }
    }

    /// `None`: missed offers never take a mitra offline.
    pub fn missed_offers_before_away(&self) -> Option<u32> {
        Some(self.get(SettingKey::MissedOffersBeforeAway)).filter(|n| *n > 0)
    }

    pub const fn queue_when_unavailable(&self) -> bool {
        self.get(SettingKey::QueueWhenUnavailable) == 1
    }

    pub fn queue_max_wait(&self) -> Duration {
        Duration::seconds(self.get(SettingKey::QueueMaxWaitSeconds).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_spec() {
        let s = AppSettings::default();
        assert_eq!(s.max_customers_per_mitra(), 3);
        assert_eq!(s.stale_after(), Duration::seconds(90));
        assert_eq!(s.beacon_ttl_seconds(), 10);
        assert_eq!(s.blast_timeout(), Duration::seconds(60));
        assert_eq!(s.payment_timeout(), Duration::seconds(300));
        assert_eq!(s.heartbeat_interval_seconds(), 30);
        assert_eq!(s.max_open_requests_per_customer(), 1);
        assert_eq!(s.blast_max_recipients(), 50);
        assert_eq!(s.offer_timeout(), Duration::seconds(60));
        assert_eq!(s.missed_offers_before_away(), None);
        assert!(!s.queue_when_unavailable());
        assert_eq!(s.queue_max_wait(), Duration::seconds(600));
    }

    #[test]
    fn from_pairs_sets_the_given_keys_over_the_defaults() {
        use SettingKey::*;
        let s = AppSettings::from_pairs([(MaxCustomersPerMitra, 7), (BlastTimeoutSeconds, 45)])
            .unwrap();
        assert_eq!(s.max_customers_per_mitra(), 7);
        assert_eq!(s.blast_timeout(), Duration::seconds(45));
        assert_eq!(s.stale_after(), Duration::seconds(90), "untouched: default");
        assert_eq!(
            AppSettings::from_pairs([(StaleAfterSeconds, 45)]),
            Err(SettingError::StaleWithoutSlack {
                stale: 45,
                interval: 30
            }),
            "checked against the default interval"
        );
    }

    #[test]
    fn every_getter_reads_its_own_key() {
        use SettingKey::*;
        // Every value differs from its default and from the others.
        let values = [
            (MaxCustomersPerMitra, 4),
            (StaleAfterSeconds, 120),
            (BeaconCacheTtlSeconds, 7),
            (BlastTimeoutSeconds, 45),
            (PaymentTimeoutSeconds, 600),
            (HeartbeatIntervalSeconds, 20),
            (MaxOpenRequestsPerCustomer, 2),
            (BlastMaxRecipients, 9),
            (OfferTimeoutSeconds, 15),
            (MissedOffersBeforeAway, 3),
            (QueueWhenUnavailable, 1),
            (QueueMaxWaitSeconds, 90),
        ];
        let s = AppSettings::from_pairs(values.map(|(k, v)| (k, i64::from(v)))).unwrap();
        assert_eq!(s.max_customers_per_mitra(), 4);
        assert_eq!(s.stale_after(), Duration::seconds(120));
        assert_eq!(s.beacon_ttl_seconds(), 7);
        assert_eq!(s.blast_timeout(), Duration::seconds(45));
        assert_eq!(s.payment_timeout(), Duration::seconds(600));
        assert_eq!(s.heartbeat_interval_seconds(), 20);
        assert_eq!(s.max_open_requests_per_customer(), 2);
        assert_eq!(s.blast_max_recipients(), 9);
        assert_eq!(s.offer_timeout(), Duration::seconds(15));
        assert_eq!(s.missed_offers_before_away(), Some(3));
        assert!(s.queue_when_unavailable());
        assert_eq!(s.queue_max_wait(), Duration::seconds(90));
        assert_eq!(
            s.availability_rules(),
            crate::AvailabilityRules {
                stale_after: Duration::seconds(120),
                max_customers: 4,
            }
        );
        // `pairs` lists every key once, in `ALL` order: a settings change saves key by key from it.
        assert_eq!(s.pairs().collect::<Vec<_>>(), values);
    }

    #[test]
    fn an_offer_round_never_outlasts_its_blast() {
        use SettingKey::*;
        let s = AppSettings::from_pairs([(BlastTimeoutSeconds, 30), (OfferTimeoutSeconds, 45)])
            .unwrap();
        assert_eq!(s.offer_timeout(), Duration::seconds(30));
        let s = AppSettings::from_pairs([(BlastTimeoutSeconds, 30), (OfferTimeoutSeconds, 30)])
            .unwrap();
        assert_eq!(s.offer_timeout(), Duration::seconds(30));
        let s =
            AppSettings::from_pairs([(BlastTimeoutSeconds, 90), (OfferTimeoutSeconds, 0)]).unwrap();
        assert_eq!(
            s.offer_timeout(),
            Duration::seconds(90),
            "0: as long as the blast"
        );
        let s = AppSettings::from_pairs([(QueueWhenUnavailable, 0), (MissedOffersBeforeAway, 1)])
            .unwrap();
        assert!(!s.queue_when_unavailable());
        assert_eq!(s.missed_offers_before_away(), Some(1));
        check(
            &[(QueueWhenUnavailable, 2)],
            Err(SettingError::OutOfRange {
                key: QueueWhenUnavailable,
                min: 0,
                max: 1,
                got: 2,
            }),
        );
    }

    #[test]
    fn errors_name_the_field_to_fix() {
        use SettingKey::*;
        let field = |e: SettingError| e.field();
        assert_eq!(field("bogus".parse::<SettingKey>().unwrap_err()), "bogus");
        assert_eq!(
            field(AppSettings::from_pairs([(BeaconCacheTtlSeconds, 0)]).unwrap_err()),
            "beacon_cache_ttl_seconds"
        );
        assert_eq!(
            field(AppSettings::from_pairs([(HeartbeatIntervalSeconds, 60)]).unwrap_err()),
            "stale_after_seconds, heartbeat_interval_seconds",
            "a cross-field rule names both fields"
        );
    }

    fn check(changes: &[(SettingKey, i64)], expected: Result<(), SettingError>) {
        let got = AppSettings::default()
            .with_changes(changes.iter().copied())
            .map(|_| ());
        assert_eq!(got, expected, "{changes:?}");
    }

    #[test]
    fn validation_table() {
        use SettingKey::*;
        check(&[(MaxCustomersPerMitra, 5)], Ok(()));
        check(
            &[(MaxCustomersPerMitra, 0)],
            Err(SettingError::OutOfRange {
                key: MaxCustomersPerMitra,
                min: 1,
                max: 50,
                got: 0,
            }),
        );
        check(
            &[(BeaconCacheTtlSeconds, -1)],
            Err(SettingError::OutOfRange {
                key: BeaconCacheTtlSeconds,
                min: 1,
                max: 300,
                got: -1,
            }),
        );
        check(
            &[(PaymentTimeoutSeconds, i64::MAX)],
            Err(SettingError::OutOfRange {
                key: PaymentTimeoutSeconds,
                min: 5,
                max: 86_400,
                got: i64::MAX,
            }),
        );
        check(
            &[(StaleAfterSeconds, 15), (HeartbeatIntervalSeconds, 30)],
            Err(SettingError::StaleWithoutSlack {
                stale: 15,
                interval: 30,
            }),
        );
        check(
            &[(HeartbeatIntervalSeconds, 10), (StaleAfterSeconds, 19)],
            Err(SettingError::StaleWithoutSlack {
                stale: 19,
                interval: 10,
            }),
        );
        check(
            &[(HeartbeatIntervalSeconds, 10), (StaleAfterSeconds, 20)],
            Ok(()),
        );
    }

    #[test]
    fn stored_settings_that_break_a_newer_rule_are_repaired_not_refused() {
        use SettingKey::{HeartbeatIntervalSeconds, StaleAfterSeconds};
        let (settings, repaired) =
            AppSettings::from_stored([(StaleAfterSeconds, 45), (HeartbeatIntervalSeconds, 30)])
                .unwrap();
        assert_eq!(settings.get(StaleAfterSeconds), 60);
        assert!(matches!(
            repaired,
            Some(SettingError::StaleWithoutSlack { .. })
        ));
        assert!(AppSettings::from_stored([(StaleAfterSeconds, 0)]).is_err());
        assert_eq!(
            AppSettings::from_stored([]).unwrap(),
            (AppSettings::default(), None)
        );
    }

    #[test]
    fn keys_round_trip_through_their_names() {
        for key in SettingKey::ALL {
            assert_eq!(key.as_str().parse::<SettingKey>(), Ok(key));
            assert_eq!(key.to_string(), key.as_str());
        }
        assert!(matches!(
            "bogus".parse::<SettingKey>(),
            Err(SettingError::UnknownKey(_))
        ));
    }
}
