//! Where the emulators run: on the Tokio runtime they were started on, for their whole life
//! (restarts included), or on the testkit's own runtime, which outlives every test.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The handle of the runtime the caller is on, or an error saying an emulator needs one.
pub(crate) fn current() -> io::Result<Handle> {
    Handle::try_current().map_err(|_| {
        io::Error::other(
            "the testkit's emulators start on a Tokio runtime: call this from within one \
             (e.g. a #[tokio::test]), or use CloudRun, which brings its own",
        )
    })
}

/// Binds `addr` and registers the listener with `handle`'s runtime, so that it keeps working
/// whichever runtime asked for it (a restart may be called from a test's runtime that ends
/// before the emulator does).
pub(crate) fn bind(handle: &Handle, addr: SocketAddr) -> io::Result<TcpListener> {
    let _runtime = handle.enter();
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restart rebinds its port while old connections linger in
    // TIME_WAIT. Windows' SO_REUSEADDR means something else (sharing a bound port).
    #[cfg(not(windows))]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accepts connections on `listener` until `stop` says stop (or its sender is dropped), handing
/// each to `on_accept`: the task it returns serves that connection, `None` serves none (the
/// callback kept or dropped it). Then closes the listener and aborts every connection task,
/// waiting until they are gone.
pub(crate) async fn serve_until_stopped<F, Fut>(
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
    mut on_accept: F,
) where
    F: FnMut(TcpStream) -> Option<Fut>,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if let Some(connection) = on_accept(stream) {
                        connections.spawn(connection);
                    }
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

/// Resolves once the owner says stop or is dropped. (A function of its own: the guard
/// `wait_for` returns must not live in a `select!`.)
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender was dropped: stop as well.
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Runs `future` on the testkit's own Tokio runtime — the one [`CloudRun`](crate::CloudRun)
/// serves on, which outlives every test's runtime — and blocks until it is done, returning its
/// output. Emulators started this way keep serving after the runtime of the test that started
/// them is gone: for setups the fixture does not cover (several front ends sharing a metadata
/// emulator, say) kept in a `static` for a whole test binary.
///
/// ```
/// use std::sync::LazyLock;
/// use cloud_run_grpc_testkit::{MetadataEmulator, run_on_testkit_runtime};
///
/// static METADATA: LazyLock<MetadataEmulator> = LazyLock::new(|| {
///     run_on_testkit_runtime(MetadataEmulator::start())
///         .and_then(|started| started)
///         .expect("the metadata emulator starts")
/// });
/// assert!(METADATA.host().starts_with("127.0.0.1:"));
/// ```
///
/// Blocks the calling thread, so in async code it is for short setups only; it fails (instead
/// of blocking for ever) if the runtime cannot start or `future` panics.
pub fn run_on_testkit_runtime<F>(future: F) -> io::Result<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (done, output) = std::sync::mpsc::channel();
    background()?.spawn(async move {
        // The receiver waits for exactly this value.
        let _ = done.send(future.await);
    });
    output
        .recv()
        .map_err(|_| io::Error::other("the task on the testkit's runtime panicked"))
}

/// The testkit's own multi-threaded runtime, started on first use and never shut down: what
/// runs on it outlives every test's runtime, as a process-wide channel does.
pub(crate) fn background() -> io::Result<Handle> {
    static BACKGROUND: OnceLock<Result<Runtime, String>> = OnceLock::new();
    let runtime = BACKGROUND.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            // Emulators do little work per request; two threads serve parallel tests on a
            // two-core machine without taking a thread per core on a large one.
            .worker_threads(2)
            .thread_name("cloud-run-grpc-testkit")
            .enable_all()
            .build()
            .map_err(|error| error.to_string())
    });
    match runtime {
        Ok(runtime) => Ok(runtime.handle().clone()),
        Err(error) => Err(io::Error::other(format!(
            "cannot start the testkit's background Tokio runtime: {error}"
        ))),
    }
}
