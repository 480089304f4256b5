//! The availability rules of SPEC §1: available = online ∧ active ∧ fresh ∧ under capacity;
//! reachable = online ∧ active ∧ fresh. Every store path (Valkey or Postgres fallback) feeds its
//! raw values through these functions, so both paths give the same answer by construction.

use time::{Duration, OffsetDateTime};

/// What the stores know about one mitra at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MitraState {
    pub online: bool,
    pub active: bool,
    pub last_heartbeat: Option<OffsetDateTime>,
    /// Sessions holding a slot: `active` + `pending_payment`.
    pub open_sessions: u32,
}

/// A heartbeat is fresh when it is at most `stale_after` old. A heartbeat from the future (clock
/// skew between instances) counts as fresh; a missing one never does.
pub fn is_fresh(
    last_heartbeat: Option<OffsetDateTime>,
    now: OffsetDateTime,
    stale_after: Duration,
) -> bool {
    last_heartbeat.is_some_and(|at| now - at <= stale_after)
}

/// The oldest heartbeat that is still fresh at `now`: a heartbeat before it is stale. Stores
/// that re-check staleness atomically (the auto-offline fence, the Postgres guard) compare with
/// this instant, which says exactly what [`is_fresh`] says.
pub fn stale_cutoff(now: OffsetDateTime, stale_after: Duration) -> OffsetDateTime {
    now - stale_after
}

/// True while the mitra has a free slot under `max_customers`.
pub const fn has_capacity(open_sessions: u32, max_customers: u32) -> bool {
    open_sessions < max_customers
}

/// The operator settings the availability rules read (`AppSettings::availability_rules`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvailabilityRules {
    /// A heartbeat older than this is stale (rule 3).
    pub stale_after: Duration,
    /// Open sessions a mitra may hold (rule 4).
    pub max_customers: u32,
}

impl MitraState {
    /// Can keep or extend a session it already has (rules 1–3).
    pub fn is_reachable(&self, now: OffsetDateTime, stale_after: Duration) -> bool {
        self.online && self.active && is_fresh(self.last_heartbeat, now, stale_after)
    }

    /// Can take a new customer (rules 1–4).
    pub fn is_available(&self, now: OffsetDateTime, rules: AvailabilityRules) -> bool {
        self.is_reachable(now, rules.stale_after)
            && has_capacity(self.open_sessions, rules.max_customers)
    }
}

/// The customer-facing beacon: is anyone available, and how many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Beacon {
    pub count: u32,
}

impl Beacon {
    pub fn from_count(count: usize) -> Self {
        Self {
            count: u32::try_from(count).unwrap_or(u32::MAX),
        }
    }

    pub const fn available(&self) -> bool {
        self.count > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-23 10:00:00 UTC);
    const STALE: Duration = Duration::seconds(90);

    fn state(online: bool, active: bool, age_secs: Option<i64>, open: u32) -> MitraState {
        MitraState {
            online,
            active,
            last_heartbeat: age_secs.map(|s| NOW - Duration::seconds(s)),
            open_sessions: open,
        }
    }

    fn rules(max_customers: u32) -> AvailabilityRules {
        AvailabilityRules {
            stale_after: STALE,
            max_customers,
        }
    }

    fn check(s: MitraState, reachable: bool, available: bool) {
        assert_eq!(s.is_reachable(NOW, STALE), reachable, "reachable {s:?}");
        assert_eq!(s.is_available(NOW, rules(3)), available, "available {s:?}");
    }

    #[test]
    fn rules_table() {
        check(state(true, true, Some(0), 0), true, true);
        check(state(true, true, Some(90), 2), true, true); // boundary: exactly stale_after is fresh
        check(state(true, true, Some(91), 0), false, false); // one second too old
        check(state(true, true, None, 0), false, false); // never pinged
        check(state(true, true, Some(-5), 0), true, true); // clock skew: future ping
        check(state(false, true, Some(0), 0), false, false); // offline
        check(state(true, false, Some(0), 0), false, false); // deactivated
        check(state(true, true, Some(0), 3), true, false); // at capacity, still reachable
        check(state(true, true, Some(0), 7), true, false); // above capacity after a limit change
    }

    #[test]
    fn capacity_math() {
        assert!(has_capacity(0, 1));
        assert!(!has_capacity(1, 1));
        assert!(!has_capacity(0, 0));
    }

    #[test]
    fn beacon_from_count() {
        assert!(!Beacon::from_count(0).available());
        assert_eq!(Beacon::from_count(4), Beacon { count: 4 });
        assert!(Beacon::from_count(4).available());
    }

    proptest! {
        #[test]
        fn available_implies_reachable(online: bool, active: bool, age in proptest::option::of(-100i64..500), open in 0u32..10, max in 0u32..10) {
            let s = state(online, active, age, open);
            if s.is_available(NOW, rules(max)) {
                prop_assert!(s.is_reachable(NOW, STALE));
                prop_assert!(open < max);
            }
        }

        #[test]
        fn freshness_is_monotonic_in_age(a in 0i64..1000, b in 0i64..1000) {
            let (young, old) = if a <= b { (a, b) } else { (b, a) };
            let fresh_old = is_fresh(Some(NOW - Duration::seconds(old)), NOW, STALE);
            let fresh_young = is_fresh(Some(NOW - Duration::seconds(young)), NOW, STALE);
            prop_assert!(!fresh_old || fresh_young);
        }

        #[test]
        fn stale_cutoff_agrees_with_is_fresh(age_ms in -10_000i64..200_000) {
            let at = NOW - Duration::milliseconds(age_ms);
            prop_assert_eq!(is_fresh(Some(at), NOW, STALE), at >= stale_cutoff(NOW, STALE));
        }
    }
}
