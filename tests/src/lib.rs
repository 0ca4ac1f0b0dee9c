//! Helpers shared by the workspace's integration tests.

use std::time::{Duration, Instant};

/// Waits until `done()` holds, checking every millisecond, and panics saying `what` did not
/// happen if it still does not hold after `limit`: a bounded wait on a condition, where a
/// sleep would be a guess.
pub async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not after {limit:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// [`wait_until`] with ten seconds: far more than anything these tests wait for takes.
pub async fn until(what: &str, done: impl FnMut() -> bool) {
    wait_until(what, Duration::from_secs(10), done).await;
}
