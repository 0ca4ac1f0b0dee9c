//! The time the token cache reads. Injected, so that expiry and refresh can be tested without
//! waiting an hour.
//!
//! The cache knows two kinds of time, and reads each from one place only:
//!
//! - **Wall-clock time** — a token's `exp`, and from it when the token is refreshed and when it
//!   stops being sent — comes from the injected [`Clock`] ([`SystemClock`] unless a test or a
//!   user gives another). It is a point in time that the token endpoint agrees on.
//! - **Durations and waits** — how long a fetch took, its timeout, backoff after a failure, a
//!   caller's deadline — use Tokio's time (`tokio::time::Instant`, `sleep`, `timeout`), never
//!   `std::time::Instant`, so that a test on a paused runtime
//!   (`#[tokio::test(start_paused = true)]`) moves them with `tokio::time::advance` and waits
//!   for no real time.
//!
//! A test where both matter moves both: [`ManualClock::advance`] and `tokio::time::advance`.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::sync::lock;

/// A source of wall-clock time (token expiry is wall-clock: the JWT's `exp`).
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to; for tests.
///
/// ```
/// use std::time::Duration;
/// use cloud_run_grpc::token::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let before = clock.now();
/// clock.advance(Duration::from_secs(3600));
/// assert_eq!(clock.now().duration_since(before).unwrap(), Duration::from_secs(3600));
/// ```
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<SystemTime>,
}

impl ManualClock {
    /// A clock stopped at the current system time.
    pub fn new() -> Self {
        Self::at(SystemTime::now())
    }

    /// A clock stopped at `time`.
    pub fn at(time: SystemTime) -> Self {
        Self {
            now: Mutex::new(time),
        }
    }

    /// Moves the clock forward (to the latest representable time, at most).
    pub fn advance(&self, by: Duration) {
        let mut now = lock(&self.now);
        *now = now
            .checked_add(by)
            .unwrap_or_else(|| latest_time_after(*now));
    }

    /// Sets the clock.
    pub fn set(&self, time: SystemTime) {
        *lock(&self.now) = time;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *lock(&self.now)
    }
}

/// The latest time `SystemTime` can represent from `from`, found by halving the step: the
/// limit is platform-specific.
fn latest_time_after(from: SystemTime) -> SystemTime {
    let mut latest = from;
    let mut step = Duration::MAX;
    while !step.is_zero() {
        match latest.checked_add(step) {
            Some(later) => latest = later,
            None => step /= 2,
        }
    }
    latest
}
