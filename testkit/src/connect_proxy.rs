//! An HTTPS proxy (HTTP `CONNECT`), for testing clients that honour `HTTPS_PROXY`.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::sync::lock;

/// The longest request head read, and how long the client gets to send it.
const MAX_HEAD: usize = 8 * 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// An HTTP proxy on `127.0.0.1` that answers `CONNECT host:port` by tunnelling to the address
/// its routes give that host — a stand-in for a corporate proxy in front of the internet,
/// where the hosts are your emulators. It records every `CONNECT` it was asked for; a host
/// with no route gets `502 Bad Gateway`, anything but `CONNECT` gets `405`.
///
/// Point a client at it with `HTTPS_PROXY={proxy.url()}`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use cloud_run_grpc_testkit::ConnectProxy;
///
/// let proxy = ConnectProxy::start([("bookstore.test.run.app", "127.0.0.1:8443".parse().unwrap())]).await?;
/// assert!(proxy.url().starts_with("http://127.0.0.1:"));
/// assert!(proxy.requests().is_empty());
/// # Ok(()) }
/// ```
pub struct ConnectProxy {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    stop: watch::Sender<bool>,
}

impl ConnectProxy {
    /// Starts it on the current runtime; `routes` maps host names (without port) to where
    /// their tunnels go.
    pub async fn start<H: Into<String>>(
        routes: impl IntoIterator<Item = (H, SocketAddr)>,
    ) -> io::Result<ConnectProxy> {
        let routes: HashMap<String, SocketAddr> = routes
            .into_iter()
            .map(|(host, addr)| (host.into().to_ascii_lowercase(), addr))
            .collect();
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(accept(
            listener,
            Arc::new(routes),
            requests.clone(),
            stopped,
        ));
        Ok(ConnectProxy {
            addr,
            requests,
            stop,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the form `HTTPS_PROXY` takes.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `host:port` of every `CONNECT`, in order.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.requests).clone()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

impl fmt::Debug for ConnectProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectProxy")
            .field("addr", &self.addr)
            .field("requests", &self.requests())
            .finish()
    }
}

async fn accept(
    listener: TcpListener,
    routes: Arc<HashMap<String, SocketAddr>>,
    requests: Arc<Mutex<Vec<String>>>,
    stopped: watch::Receiver<bool>,
) {
    // Ends when the proxy is dropped; the tunnels end with it.
    crate::runtime::serve_until_stopped(listener, stopped, |client| {
        Some(tunnel(client, routes.clone(), requests.clone()))
    })
    .await;
}

async fn tunnel(
    mut client: TcpStream,
    routes: Arc<HashMap<String, SocketAddr>>,
    requests: Arc<Mutex<Vec<String>>>,
) {
    let Ok(Some(head)) = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut client)).await else {
        return;
    };
    let mut words = head.split_whitespace();
    let (Some(method), Some(target)) = (words.next(), words.next()) else {
        return;
    };
    if !method.eq_ignore_ascii_case("CONNECT") {
        let _ = client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    }
    lock(&requests).push(target.to_owned());
    let host = target.rsplit_once(':').map_or(target, |(host, _)| host);
    let Some(addr) = routes.get(&host.to_ascii_lowercase()) else {
        let _ = client
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    let Ok(mut server) = TcpStream::connect(addr).await else {
        let _ = client
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_ok()
    {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }
}

/// The request head, up to the blank line; `None` if the client stops or sends too much.
async fn read_head(client: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // One byte at a time: nothing past the head may be consumed, it belongs to the tunnel.
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD || client.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).ok()
}
