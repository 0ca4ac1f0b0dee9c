//! A server that accepts connections and never answers.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::io::AsyncReadExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::listen;
use crate::runtime::serve_until_stopped;

/// A server on `127.0.0.1` that accepts TCP connections, reads everything sent to it and never
/// sends a byte: a TLS handshake with it never completes (the ClientHello is read, no
/// ServerHello comes), and neither does anything else. Its connections stay open until the
/// client closes them or the server is dropped.
///
/// For testing that a client bounds its connect and handshake time.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use std::time::Duration;
/// use tokio::io::AsyncWriteExt as _;
///
/// let silent = cloud_run_grpc_testkit::SilentServer::start().await?;
/// let mut socket = tokio::net::TcpStream::connect(silent.addr()).await?;
/// socket.write_all(b"hello?").await?;
/// let mut answer = [0; 1];
/// let read = tokio::time::timeout(
///     Duration::from_millis(100),
///     tokio::io::AsyncReadExt::read(&mut socket, &mut answer),
/// );
/// assert!(read.await.is_err(), "no answer, ever");
/// assert_eq!(silent.connections(), 1);
/// # Ok(()) }
/// ```
pub struct SilentServer {
    addr: SocketAddr,
    counts: Arc<Counts>,
    stop: watch::Sender<bool>,
}

#[derive(Default)]
struct Counts {
    connections: AtomicUsize,
    bytes: AtomicU64,
}

impl SilentServer {
    /// Starts listening on `127.0.0.1:0`, on the current Tokio runtime.
    pub async fn start() -> io::Result<SilentServer> {
        let (runtime, listener, addr) = listen()?;
        let counts = Arc::new(Counts::default());
        let (stop, stopping) = watch::channel(false);
        runtime.spawn(accept_loop(listener, counts.clone(), stopping));
        Ok(SilentServer { addr, counts, stop })
    }

    /// The address to dial.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections it accepted.
    pub fn connections(&self) -> usize {
        self.counts.connections.load(Ordering::SeqCst)
    }

    /// How many bytes it read, over all connections.
    pub fn bytes_received(&self) -> u64 {
        self.counts.bytes.load(Ordering::SeqCst)
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

impl fmt::Debug for SilentServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SilentServer")
            .field("addr", &self.addr)
            .field("connections", &self.connections())
            .field("bytes_received", &self.bytes_received())
            .finish()
    }
}

async fn accept_loop(listener: TcpListener, counts: Arc<Counts>, stop: watch::Receiver<bool>) {
    // Ends when the server is dropped.
    serve_until_stopped(listener, stop, |socket| {
        counts.connections.fetch_add(1, Ordering::SeqCst);
        Some(swallow(socket, counts.clone()))
    })
    .await;
}

/// Reads until the client closes, answering nothing.
async fn swallow(mut socket: TcpStream, counts: Arc<Counts>) {
    let mut buffer = vec![0; 16 * 1024];
    // Ends when the client closes or the connection fails; the server's drop aborts it sooner.
    while let Ok(read @ 1..) = socket.read(&mut buffer).await {
        counts.bytes.fetch_add(read as u64, Ordering::SeqCst);
    }
}
