//! The candidate order of an offer round (SPEC §12.5): longest idle first. A mitra's place is
//! its *idle rank*, one number both stores keep alike, so the mirror's walk and the Postgres
//! fallback order the same mitras the same way.

use std::cmp::Ordering;
use time::OffsetDateTime;

/// How much of a millisecond the tie-break may take: the fraction stays clear of the next
/// millisecond after rounding to an `f64` (at today's epoch values an `f64` holds a
/// millisecond count to about 1/4096), so the whole part is always the millisecond.
pub const TIE_BREAK_SPAN: f64 = 0.99;

/// When the mitra last became idle — it came online (offline → online), or a session of its
/// started or ended — in whole milliseconds since the Unix epoch, plus a tie-break fraction in
/// `[0, TIE_BREAK_SPAN)` drawn at random when that happened. Lower ranks come first; equal
/// ranks (practically never) by mitra id, in both stores.
#[derive(Clone, Copy, Debug)]
pub struct IdleRank(f64);

impl IdleRank {
    /// The rank of becoming idle at `since`, with `tie_break` in `[0, 1)` (clamped) scaled into
    /// the tie-break span.
    pub fn new(since: OffsetDateTime, tie_break: f64) -> Self {
        let millis = since.unix_timestamp_nanos().div_euclid(1_000_000);
        let tie = if tie_break.is_finite() {
            tie_break.clamp(0.0, 1.0)
        } else {
            0.0
        };
        // Millisecond counts of any real instant are far below 2^53: exact as an f64.
        let whole = millis as f64;
        Self(whole + tie * TIE_BREAK_SPAN)
    }

    /// A rank as a store keeps it; `None` for a value that is not a finite number.
    pub fn from_value(value: f64) -> Option<Self> {
        value.is_finite().then_some(Self(value))
    }

    /// The number both stores order by (a sorted-set score, a `double precision` column).
    pub const fn value(self) -> f64 {
        self.0
    }

    /// The millisecond the mitra became idle.
    pub fn since(self) -> OffsetDateTime {
        // Finite by construction; a value beyond the representable range clamps.
        let millis = self.0.floor() as i128;
        OffsetDateTime::from_unix_timestamp_nanos(millis * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

impl PartialEq for IdleRank {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for IdleRank {}

impl PartialOrd for IdleRank {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IdleRank {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;
    use time::Duration;

    const AT: OffsetDateTime = datetime!(2026-11-23 10:00:00.123456 UTC);

    #[test]
    fn the_whole_part_is_the_millisecond_whatever_the_tie_break() {
        for tie in [0.0, 0.25, 0.5, 0.999_999_999, 1.0, 7.0, -1.0, f64::NAN] {
            let rank = IdleRank::new(AT, tie);
            assert_eq!(
                rank.since(),
                datetime!(2026-11-23 10:00:00.123 UTC),
                "{tie}"
            );
            assert!(rank.value().fract() < TIE_BREAK_SPAN, "{tie}");
        }
    }

    #[test]
    fn earlier_is_lower_and_the_tie_break_orders_within_a_millisecond() {
        let a = IdleRank::new(AT, 0.9);
        let b = IdleRank::new(AT + Duration::milliseconds(1), 0.0);
        assert!(a < b, "a millisecond earlier wins whatever its tie-break");
        assert!(IdleRank::new(AT, 0.1) < IdleRank::new(AT, 0.2));
        assert_eq!(IdleRank::new(AT, 0.3), IdleRank::new(AT, 0.3));
    }

    #[test]
    fn stored_values_round_trip_and_non_numbers_are_refused() {
        let rank = IdleRank::new(AT, 0.42);
        assert_eq!(IdleRank::from_value(rank.value()), Some(rank));
        assert_eq!(IdleRank::from_value(f64::NAN), None);
        assert_eq!(IdleRank::from_value(f64::INFINITY), None);
    }

    proptest! {
        #[test]
        fn rank_order_is_time_order_to_the_millisecond(a in 0i64..10_000_000, b in 0i64..10_000_000, ta in 0.0f64..1.0, tb in 0.0f64..1.0) {
            let ra = IdleRank::new(AT + Duration::milliseconds(a), ta);
            let rb = IdleRank::new(AT + Duration::milliseconds(b), tb);
            if a < b {
                prop_assert!(ra < rb);
            }
            prop_assert_eq!(ra.since(), datetime!(2026-11-23 10:00:00.123 UTC) + Duration::milliseconds(a));
        }
    }
}
