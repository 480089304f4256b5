//! The abuse limits (`RateLimits`): counted in Valkey so every instance enforces one limit;
//! while the mirror is down (or a count fails) each instance limits on its own with an
//! in-process limiter of the same quota, so an outage makes the limit at most N times looser,
//! never absent.

use crate::Availability;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use halo_domain::{LimitedAction, RateLimits};
use halo_ports::{MirrorError, RateCounter};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The caller is over a limit: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many {action} attempts; retry in {} s", retry_after.as_secs().max(1))]
pub struct Limited {
    pub action: LimitedAction,
    pub retry_after: Duration,
}

/// How often the local limiters forget keys they have not seen for a window.
const LOCAL_CLEANUP_EVERY: u64 = 10_000;

pub struct Limiter {
    counter: Arc<dyn RateCounter>,
    availability: Arc<Availability>,
    limits: RateLimits,
    local: Vec<DefaultKeyedRateLimiter<String>>,
    local_checks: AtomicU64,
}

impl Limiter {
    pub fn new(
        counter: Arc<dyn RateCounter>,
        availability: Arc<Availability>,
        limits: RateLimits,
    ) -> Self {
        let local = LimitedAction::ALL
            .iter()
            .map(|action| RateLimiter::keyed(quota(limits.get(*action))))
            .collect();
        Self {
            counter,
            availability,
            limits,
            local,
            local_checks: AtomicU64::new(0),
        }
    }

    /// Counts one `action` by `who` (a phone, an address, an email, a customer id).
    pub async fn check(&self, action: LimitedAction, who: &str) -> Result<(), Limited> {
        let limit = self.limits.get(action);
        if !self.availability.health().is_down() {
            let bucket = format!("{action}:{who}");
            match self.counter.hit(&bucket, limit.window()).await {
                Ok((count, left)) if limit.exceeded_by(count) => {
                    return Err(Limited {
                        action,
                        retry_after: left,
                    })
                }
                Ok(_) => return Ok(()),
                Err(error) => self.count_failed(&error),
            }
        }
        self.check_locally(action, who)
    }

    fn count_failed(&self, error: &MirrorError) {
        tracing::warn!(error = %error, "rate counter unavailable; limiting in this instance");
        if matches!(error, MirrorError::Unavailable(_)) {
            self.availability.health().down(error);
        }
    }

    fn check_locally(&self, action: LimitedAction, who: &str) -> Result<(), Limited> {
        let limiter = &self.local[action as usize];
        if self
            .local_checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(LOCAL_CLEANUP_EVERY)
        {
            limiter.retain_recent();
        }
        limiter
            .check_key(&who.to_owned())
            .map_err(|not_until| Limited {
                action,
                retry_after: not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                )),
            })
    }
}

/// The same allowance as the shared window: `max` at once, refilled over the window.
fn quota(limit: halo_domain::RateLimit) -> Quota {
    let max = NonZeroU32::new(limit.max()).unwrap_or(NonZeroU32::MIN);
    let per_hit = limit.window() / limit.max().max(1);
    Quota::with_period(per_hit.max(Duration::from_millis(1)))
        .unwrap_or_else(|| Quota::per_second(max))
        .allow_burst(max)
}
