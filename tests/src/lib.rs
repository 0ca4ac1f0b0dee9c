//! Helpers shared by the workspace's integration tests.

use std::future::Future;

/// Runs `start` on a Tokio runtime of its own that lives as long as the process, and returns
/// what it made: emulators started this way outlive every test's runtime, as the process-wide
/// channels they serve do.
pub fn on_own_runtime<T, F, Fut>(start: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("a Tokio runtime for the emulators");
        runtime.block_on(async move {
            // The receiver waits for exactly this value; if the test is gone, nobody needs it.
            let _ = tx.send(start().await);
            std::future::pending::<()>().await
        })
    });
    rx.recv().expect("the emulators' runtime started them")
}
