//! A TCP proxy whose connections can go silent without closing.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::listen;
use crate::runtime::serve_until_stopped;
use crate::sync::lock;

/// How long the proxy tries to reach its target for a new connection before closing it, as a
/// proxy whose backend is down does.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP proxy on `127.0.0.1` in front of an address, that can make its connections **silent**:
/// they stop forwarding in both directions, but their sockets stay open and are never closed —
/// a proxy that hung, a NAT that forgot the flow, a peer that vanished without a word. A
/// client finds out only through its own liveness checks (HTTP/2 keep-alive PINGs that go
/// unanswered, deadlines).
///
/// [`silence`](TcpProxy::silence) silences the connections open at that moment;
/// [`silence_new_connections`](TcpProxy::silence_new_connections) also every connection
/// accepted afterwards (the TCP handshake completes, nothing else ever does);
/// [`heal`](TcpProxy::heal) forwards new connections again. A silenced connection stays
/// silent until the proxy is dropped, as a dead flow does.
///
/// Silence is above TCP: the proxy's kernel still acknowledges what fits in its socket
/// buffers, so a client sees no TCP error, only an HTTP/2 peer that never answers. (A host
/// that stops acknowledging altogether, which `TCP_USER_TIMEOUT` detects, cannot be emulated
/// without privileges.)
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use cloud_run_grpc_testkit::{FrontEnd, TcpProxy};
///
/// let front = FrontEnd::builder("bookstore.test.run.app")
///     .serve(tonic::service::Routes::default())
///     .await?;
/// let proxy = TcpProxy::start(front.addr()).await?;
/// // Dial proxy.addr() instead of front.addr() (TLS still names the front end's host) ...
/// proxy.silence(); // ... the calls in flight now hang until the client notices
/// proxy.heal(); // new connections get through
/// assert_eq!(proxy.connections(), 0);
/// # Ok(()) }
/// ```
pub struct TcpProxy {
    addr: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

struct Shared {
    connections: AtomicUsize,
    silenced: AtomicUsize,
    silence_new: AtomicBool,
    /// Bumped by every `silence()`; each forwarding connection watches it.
    silence: watch::Sender<u64>,
    /// The sockets of silenced connections, kept open until the proxy goes.
    held: Mutex<Vec<TcpStream>>,
}

impl Shared {
    fn hold(&self, client: TcpStream, upstream: Option<TcpStream>) {
        self.silenced.fetch_add(1, Ordering::SeqCst);
        let mut held = lock(&self.held);
        held.push(client);
        held.extend(upstream);
    }
}

impl TcpProxy {
    /// Starts forwarding `127.0.0.1:PORT` to `target`, on the current Tokio runtime.
    pub async fn start(target: SocketAddr) -> io::Result<TcpProxy> {
        let (runtime, listener, addr) = listen()?;
        let shared = Arc::new(Shared {
            connections: AtomicUsize::new(0),
            silenced: AtomicUsize::new(0),
            silence_new: AtomicBool::new(false),
            silence: watch::channel(0).0,
            held: Mutex::default(),
        });
        let (stop, stopping) = watch::channel(false);
        runtime.spawn(accept_loop(listener, target, shared.clone(), stopping));
        Ok(TcpProxy {
            addr,
            target,
            shared,
            stop,
        })
    }

    /// The address clients dial.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address it forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Makes every connection open now silent: nothing is forwarded either way any more, and
    /// nothing is closed.
    pub fn silence(&self) {
        self.shared
            .silence
            .send_modify(|generation| *generation += 1);
    }

    /// Silences the open connections, and every new one from now on: the TCP connection is
    /// accepted, then nothing (a TLS handshake never completes).
    pub fn silence_new_connections(&self) {
        self.shared.silence_new.store(true, Ordering::SeqCst);
        self.silence();
    }

    /// Forwards new connections again. Connections already silenced stay silent.
    pub fn heal(&self) {
        self.shared.silence_new.store(false, Ordering::SeqCst);
    }

    /// How many connections it accepted.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// How many of them are silent.
    pub fn silenced(&self) -> usize {
        self.shared.silenced.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

impl fmt::Debug for TcpProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpProxy")
            .field("addr", &self.addr)
            .field("target", &self.target)
            .field("connections", &self.connections())
            .field("silenced", &self.silenced())
            .finish()
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    // Ends when the proxy is dropped.
    serve_until_stopped(listener, stop, |client| {
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let _ = client.set_nodelay(true);
        if shared.silence_new.load(Ordering::SeqCst) {
            shared.hold(client, None);
            return None;
        }
        // Subscribed before the connection starts, so no `silence()` is missed.
        let silence = shared.silence.subscribe();
        Some(forward(client, target, shared.clone(), silence))
    })
    .await;
    lock(&shared.held).clear();
}

async fn forward(
    mut client: TcpStream,
    target: SocketAddr,
    shared: Arc<Shared>,
    mut silence: watch::Receiver<u64>,
) {
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target));
    // An unreachable target closes the client's connection.
    let Ok(Ok(mut upstream)) = connect.await else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    let silenced = {
        let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
        tokio::select! {
            _ = copy => false,
            changed = silence.changed() => changed.is_ok(),
        }
    };
    if silenced {
        shared.hold(client, Some(upstream));
    }
}
