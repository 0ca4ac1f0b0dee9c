//! The refresh policy: when a token is refreshed, when it stops being sent, how failed fetches
//! and refused tokens back off (exponentially, with jitter), and how long a caller waits.
//!
//! All arithmetic here saturates: any setting, `Duration::MAX` included, gives a schedule and
//! never a panic.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::token::JwtError;

/// When to refresh and how to retry. The defaults suit Google's one-hour ID tokens.
///
/// ```
/// use std::time::Duration;
/// use cloud_run_grpc::token::RefreshPolicy;
///
/// let policy = RefreshPolicy::default()
///     .margin(Duration::from_secs(300))
///     .max_backoff(Duration::from_secs(10));
/// assert_eq!(policy.refresh_margin(), Duration::from_secs(300));
/// ```
#[derive(Debug, Clone)]
pub struct RefreshPolicy {
    pub(super) margin: Duration,
    pub(super) jitter: Duration,
    pub(super) expiry_skew: Duration,
    pub(super) min_backoff: Duration,
    pub(super) max_backoff: Duration,
    pub(super) fetch_timeout: Duration,
    pub(super) max_wait: Duration,
    pub(super) min_refusal_backoff: Duration,
    pub(super) max_refusal_backoff: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            // The metadata server hands out its cached token until 4–5 minutes before `exp`;
            // refreshing later than that gets a new token on the first try.
            margin: Duration::from_secs(225),
            jitter: Duration::from_secs(15),
            expiry_skew: Duration::from_secs(10),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            fetch_timeout: Duration::from_secs(15),
            // Long enough to ride out a metadata server restarting or a token endpoint's brief
            // 5xx streak, short enough that a caller without a deadline hears why soon.
            max_wait: Duration::from_secs(30),
            // Refusals come from a misconfiguration (a wrong audience) or a clock problem: one
            // second heals a one-off, a minute keeps a persistent one cheap.
            min_refusal_backoff: Duration::from_secs(1),
            max_refusal_backoff: Duration::from_secs(60),
        }
    }
}

impl RefreshPolicy {
    /// How long before `exp` a background refresh starts (default 3m45s). For tokens that live
    /// less than three times this, a third of their lifetime is used instead, so short-lived
    /// tokens are fetched once per lifetime, never in a loop.
    pub fn margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// The refresh starts up to this much later than `margin` says, at random (default 15s),
    /// so that many processes do not all refresh at once.
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// A token this close to `exp` is no longer sent (default 10s, at most a tenth of the
    /// token's lifetime): it could expire on the way.
    pub fn expiry_skew(mut self, skew: Duration) -> Self {
        self.expiry_skew = skew;
        self
    }

    /// The first retry delay after a failed fetch (default 100ms); it doubles on each failure.
    pub fn min_backoff(mut self, backoff: Duration) -> Self {
        self.min_backoff = backoff;
        self
    }

    /// The longest retry delay (default 5s).
    pub fn max_backoff(mut self, backoff: Duration) -> Self {
        self.max_backoff = backoff;
        self
    }

    /// How long one fetch may take before it counts as failed (default 15s).
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// How long a caller with no deadline of its own waits for a token while fetches fail
    /// with transient errors (5xx, timeouts, connection errors) and are retried (default 30s).
    /// A caller's own deadline replaces it. Permanent errors fail at once.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// The pause after the service first refused a token (HTTP 401) before it is sent again or
    /// a new one is asked for (default 1s); it doubles with each consecutive refusal. A
    /// first refusal may still be healed at once by a new token, if the source has one.
    pub fn min_refusal_backoff(mut self, backoff: Duration) -> Self {
        self.min_refusal_backoff = backoff;
        self
    }

    /// The longest pause between refused tokens (default 60s): how often a persistently
    /// misconfigured client (a wrong audience) asks its source for a token.
    pub fn max_refusal_backoff(mut self, backoff: Duration) -> Self {
        self.max_refusal_backoff = backoff;
        self
    }

    /// The configured refresh margin.
    pub fn refresh_margin(&self) -> Duration {
        self.margin
    }

    /// The delay before the next fetch after `failures` consecutive failed ones.
    pub(super) fn backoff(&self, failures: u32) -> Duration {
        exponential(self.min_backoff, self.max_backoff, failures)
    }

    /// The pause after `refusals` consecutive refusals of our tokens.
    pub(super) fn refusal_backoff(&self, refusals: u32) -> Duration {
        exponential(self.min_refusal_backoff, self.max_refusal_backoff, refusals)
    }
}

/// When a token is refreshed and until when it is sent, on the clock its `exp` was read by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Schedule {
    /// The token is no longer sent from then on: it could expire on the way.
    pub(super) usable_until: SystemTime,
    /// A read from then on starts a background refresh.
    pub(super) refresh_at: SystemTime,
}

impl RefreshPolicy {
    /// The schedule of a token expiring at `exp`, fetched at `now` in `fetch_took`, so that the
    /// next fetch starts early enough to end before this token stops being sent.
    pub(super) fn schedule(
        &self,
        exp: SystemTime,
        now: SystemTime,
        fetch_took: Duration,
    ) -> Result<Schedule, JwtError> {
        let lifetime = exp.duration_since(now).unwrap_or_default();
        if lifetime.is_zero() {
            return Err(JwtError::Expired);
        }
        // Every time below lies between `now` and `exp`, so no arithmetic here can overflow.
        let skew = self.expiry_skew.min(lifetime / 10);
        let usable_until = exp - skew;
        let margin = self.margin.min(lifetime / 3);
        let jitter = self.jitter.min(margin / 4).mul_f64(random_unit());
        let scheduled = exp - margin + jitter;
        // A slow source and a short token: start early enough for a fetch twice as slow as the
        // last one to end in time, but never before half the lifetime (no fetch loop).
        let in_time = usable_until
            .checked_sub(fetch_took.saturating_mul(2))
            .unwrap_or(now);
        let refresh_at = scheduled.min(in_time).max(now + lifetime / 2);
        Ok(Schedule {
            usable_until,
            refresh_at,
        })
    }
}

/// `min` doubled for each of `attempts` after the first, capped at `max`, with "equal jitter":
/// half fixed, half random, so that retries neither stampede nor starve.
fn exponential(min: Duration, max: Duration, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(30);
    let full = min.saturating_mul(1 << doublings).min(max);
    let half = full / 2;
    // `mul_f64` of a value at most half of a `Duration` cannot overflow.
    half.saturating_add(half.mul_f64(random_unit()))
}

/// A number in [0, 1) that differs between calls and processes; jitter needs no more.
fn random_unit() -> f64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    // `RandomState` keys are random per process and per thread, and change with each call.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}
