//! A Cloud-Run-like front end: serves tonic routes over TLS behind the ID-token check.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use cloud_run_grpc::token::{Clock, SystemClock};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::service::Routes;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::auth::CloudRunAuthLayer;
use crate::sync::lock;
use crate::tls::{ServerCertificate, TestCa};
use crate::verifier::{Claims, Verifier};

/// A stand-in for Cloud Run's front end: a tonic server on `127.0.0.1` that serves your
/// routes over TLS (a certificate for the service's host name, from a [`TestCa`]) behind a
/// [`CloudRunAuthLayer`], answering as Cloud Run does: HTTP 401 with an HTML page for a token
/// it refuses, 403 for a missing token or a caller that is not an invoker, and the pages of
/// its 429/503/404/504 failures on demand ([`fail_next`](FrontEnd::fail_next)).
///
/// Dial [`addr`](FrontEnd::addr) while using [`host`](FrontEnd::host) as the TLS name and
/// `:authority`, trusting [`ca_certificate_pem`](FrontEnd::ca_certificate_pem); send ID tokens
/// for [`audience`](FrontEnd::audience) (`https://{host}`). [`CloudRun`](crate::CloudRun) does
/// all of that for a `CloudRunChannel`.
///
/// ```no_run
/// # async fn run(routes: tonic::service::Routes) -> std::io::Result<()> {
/// use cloud_run_grpc_testkit::{FrontEnd, MetadataEmulator};
///
/// let metadata = MetadataEmulator::start().await?;
/// let front = FrontEnd::builder("bookstore.test.run.app")
///     .verifier(metadata.verifier())
///     .serve(routes)
///     .await?;
/// // Connect to front.addr() as "bookstore.test.run.app", trusting front.ca_certificate_pem().
/// assert_eq!(front.audience(), "https://bookstore.test.run.app");
/// front.reject_next(1); // the next valid token is refused: HTTP 401
/// front.fail_next(2, 503); // the next two calls find no instance ready: HTTP 503
/// front.set_invokers(Some(["ci@p.iam.gserviceaccount.com"])); // others: HTTP 403
/// front.restart().await?; // in-flight calls fail, later ones reconnect to the same port
/// front.goaway().await?; // GOAWAY: in-flight calls finish, new ones use a new connection
/// # Ok(()) }
/// ```
pub struct FrontEnd {
    host: String,
    addr: SocketAddr,
    ca: TestCa,
    certificate: Option<ServerCertificate>,
    auth: CloudRunAuthLayer,
    routes: Routes,
    connections: Arc<AtomicUsize>,
    running: tokio::sync::Mutex<Option<Running>>,
    runtime: Handle,
}

/// A serving front end: one accept loop feeding connections to the current generation of
/// tonic servers; [`FrontEnd::goaway`] starts a new generation and drains the old one.
struct Running {
    kill: watch::Sender<bool>,
    accept: JoinHandle<()>,
    current: Arc<Mutex<Generation>>,
    retired: Vec<JoinHandle<()>>,
}

struct Generation {
    connections: mpsc::UnboundedSender<KillableIo>,
    drain: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Configures a [`FrontEnd`]; [`serve`](FrontEndBuilder::serve) runs it.
#[derive(Debug)]
pub struct FrontEndBuilder {
    clock: Arc<dyn Clock>,
    host: String,
    verifier: Verifier,
    audiences: Vec<String>,
    invokers: Option<Vec<String>>,
    plaintext: bool,
    addr: SocketAddr,
    ca: Option<TestCa>,
}

impl FrontEnd {
    /// A front end for the service at `host` (e.g. `bookstore.test.run.app`).
    pub fn builder(host: impl Into<String>) -> FrontEndBuilder {
        let host = host.into();
        FrontEndBuilder {
            clock: Arc::new(SystemClock),
            audiences: vec![format!("https://{host}")],
            invokers: None,
            host,
            verifier: Verifier::new(),
            plaintext: false,
            addr: (std::net::Ipv4Addr::LOCALHOST, 0).into(),
            ca: None,
        }
    }
}

impl FrontEndBuilder {
    /// The verifier for tokens (default [`Verifier::new`], trusting every testkit issuer).
    pub fn verifier(mut self, verifier: Verifier) -> Self {
        self.verifier = verifier;
        self
    }

    /// Also accepts tokens for this audience (Cloud Run's custom audiences). `https://{host}`
    /// is always accepted.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Judges token expiry by `clock` (default the system's; see
    /// [`CloudRunAuthLayer::with_clock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Lets only this caller (the `email` of its token) through, and any other added this way,
    /// as `roles/run.invoker` does; others get HTTP 403. Without it every valid token passes.
    pub fn invoker(mut self, email: impl Into<String>) -> Self {
        self.invokers
            .get_or_insert_with(Vec::new)
            .push(email.into());
        self
    }

    /// Serves cleartext HTTP/2 instead of TLS.
    pub fn plaintext(mut self) -> Self {
        self.plaintext = true;
        self
    }

    /// Listens on this address instead of `127.0.0.1:0`.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Issues the server certificate from this CA instead of a new one, so several front ends
    /// share one trusted root.
    pub fn ca(mut self, ca: TestCa) -> Self {
        self.ca = Some(ca);
        self
    }

    /// Binds and starts serving `routes` on the current Tokio runtime, which it keeps running
    /// on (restarts and GOAWAY generations included) until dropped; an error outside a
    /// runtime.
    ///
    /// Build `routes` with `tonic::service::Routes::new(FooServer::new(my_impl))` and
    /// `.add_service(..)` for more.
    pub async fn serve(self, routes: Routes) -> io::Result<FrontEnd> {
        let ca = match self.ca {
            Some(ca) => ca,
            None => TestCa::new()?,
        };
        let certificate = if self.plaintext {
            None
        } else {
            Some(ca.issue(&self.host)?)
        };
        let runtime = crate::runtime::current()?;
        let listener = crate::runtime::bind(&runtime, self.addr)?;
        let auth =
            CloudRunAuthLayer::with_audiences(self.verifier, self.audiences).with_clock(self.clock);
        auth.set_invokers(self.invokers);
        let mut front = FrontEnd {
            addr: listener.local_addr()?,
            host: self.host,
            ca,
            certificate,
            auth,
            routes,
            connections: Arc::new(AtomicUsize::new(0)),
            running: tokio::sync::Mutex::new(None),
            runtime,
        };
        let running = front.launch(listener)?;
        *front.running.get_mut() = Some(running);
        Ok(front)
    }
}

impl FrontEnd {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The service's host name (the TLS name and `:authority` clients should use).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `https://{host}` (or `http://` when plaintext): the service URL, without the port.
    pub fn url(&self) -> String {
        let scheme = if self.certificate.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.host)
    }

    pub(crate) fn is_tls(&self) -> bool {
        self.certificate.is_some()
    }

    /// The default audience it accepts: `https://{host}`.
    pub fn audience(&self) -> &str {
        self.auth.audiences().first().map_or("", String::as_str)
    }

    /// The CA certificate (PEM) its server certificate chains to.
    pub fn ca_certificate_pem(&self) -> String {
        self.ca.certificate_pem()
    }

    /// The CA that issued its certificate.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// Its ID-token check, with the counters and knobs below.
    pub fn auth(&self) -> &CloudRunAuthLayer {
        &self.auth
    }

    /// How many requests passed the ID-token check.
    pub fn accepted(&self) -> usize {
        self.auth.accepted()
    }

    /// How many tokens it refused (HTTP 401).
    pub fn rejected(&self) -> usize {
        self.auth.rejected()
    }

    /// How many requests came without a token or from a caller that is not an invoker (HTTP
    /// 403).
    pub fn forbidden(&self) -> usize {
        self.auth.forbidden()
    }

    /// How many requests got a failure injected by [`fail_next`](FrontEnd::fail_next).
    pub fn failed(&self) -> usize {
        self.auth.failed()
    }

    /// How many TCP connections it accepted (across restarts).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Why the latest request was refused (HTTP 401 or 403); the client never sees this, as
    /// Cloud Run's pages do not say.
    pub fn last_rejection(&self) -> Option<String> {
        self.auth.last_rejection()
    }

    /// The audiences of the ID tokens it was sent (see
    /// [`CloudRunAuthLayer::audiences_seen`]).
    pub fn audiences_seen(&self) -> Vec<String> {
        self.auth.audiences_seen()
    }

    /// The claims of the latest token it accepted.
    pub fn last_claims(&self) -> Option<Claims> {
        self.auth.last_claims()
    }

    /// Refuses the next `n` otherwise valid tokens (HTTP 401).
    pub fn reject_next(&self, n: usize) {
        self.auth.reject_next(n);
    }

    /// Answers the next `n` requests that pass the token check with `status` (429, 503, 404,
    /// 504, ...) and Cloud Run's page for it (see [`CloudRunAuthLayer::fail_next`]).
    pub fn fail_next(&self, n: usize, status: u16) {
        self.auth.fail_next(n, status);
    }

    /// Lets only these callers through (see [`CloudRunAuthLayer::set_invokers`]).
    pub fn set_invokers<I, S>(&self, invokers: Option<I>)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.auth.set_invokers(invokers);
    }

    /// Makes its clock run `skew` ahead, so it rejects tokens the client still thinks valid.
    pub fn set_clock_skew(&self, skew: Duration) {
        self.auth.set_clock_skew(skew);
    }

    /// Stops serving at once, like a crashed instance: the port is closed and every connection
    /// dropped, so in-flight calls fail (`UNAVAILABLE` or `UNKNOWN: transport error` on a tonic
    /// client, depending on when the connection broke).
    pub async fn stop(&self) {
        let running = self.running.lock().await.take();
        if let Some(running) = running {
            running.stop().await;
        }
    }

    /// [`stop`](FrontEnd::stop)s if it runs, then serves again on the same port with the same
    /// certificate, routes, counters and settings.
    pub async fn restart(&self) -> io::Result<()> {
        let mut running = self.running.lock().await;
        if let Some(old) = running.take() {
            old.stop().await;
        }
        let listener = crate::runtime::bind(&self.runtime, self.addr)?;
        *running = Some(self.launch(listener)?);
        Ok(())
    }

    /// Sends HTTP/2 `GOAWAY` on every open connection, as a Cloud Run instance does when it is
    /// replaced: calls in flight finish, new calls need a new connection, which the port keeps
    /// accepting (served by a fresh server) without interruption.
    pub async fn goaway(&self) -> io::Result<()> {
        let mut running = self.running.lock().await;
        let Some(running) = running.as_mut() else {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the front end is stopped",
            ));
        };
        let fresh = self.generation(running.kill.subscribe())?;
        let mut old = std::mem::replace(&mut *lock(&running.current), fresh);
        if let Some(drain) = old.drain.take() {
            let _ = drain.send(());
        }
        running.retired.extend(old.task.take());
        Ok(())
    }

    /// Stops it for good (the same as [`stop`](FrontEnd::stop)); dropping it does too.
    pub async fn shutdown(self) {
        self.stop().await;
    }

    fn launch(&self, listener: TcpListener) -> io::Result<Running> {
        let (kill, killed) = watch::channel(false);
        let current = Arc::new(Mutex::new(self.generation(killed.clone())?));
        let accept = self.runtime.spawn(accept_loop(
            listener,
            current.clone(),
            self.connections.clone(),
            killed,
        ));
        Ok(Running {
            kill,
            accept,
            current,
            retired: Vec::new(),
        })
    }

    /// A tonic server serving the connections sent to it until drained or killed.
    fn generation(&self, killed: watch::Receiver<bool>) -> io::Result<Generation> {
        let mut server = tonic::transport::Server::builder();
        if let Some(certificate) = &self.certificate {
            let tls = tonic::transport::ServerTlsConfig::new().identity(certificate.identity());
            server = server.tls_config(tls).map_err(io::Error::other)?;
        }
        let router = server
            .layer(self.auth.clone())
            .add_routes(self.routes.clone());
        let (connections, incoming) = mpsc::unbounded_channel();
        let incoming = UnboundedReceiverStream::new(incoming).map(Ok::<_, io::Error>);
        let (drain, drained) = oneshot::channel::<()>();
        let signal = async move {
            let mut killed = killed;
            tokio::select! {
                _ = drained => {}
                _ = killed.wait_for(|kill| *kill) => {}
            }
        };
        let task = self.runtime.spawn(async move {
            let _ = router.serve_with_incoming_shutdown(incoming, signal).await;
        });
        Ok(Generation {
            connections,
            drain: Some(drain),
            task: Some(task),
        })
    }
}

impl Running {
    /// Kills every connection and waits for every task to end.
    async fn stop(self) {
        self.kill.send_replace(true);
        let _ = self.accept.await;
        let current = lock(&self.current).task.take();
        for task in self.retired.into_iter().chain(current) {
            let _ = task.await;
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    current: Arc<Mutex<Generation>>,
    count: Arc<AtomicUsize>,
    mut killed: watch::Receiver<bool>,
) {
    // Ends when the front end is stopped or dropped.
    loop {
        let accepted = tokio::select! {
            _ = killed.wait_for(|kill| *kill) => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                count.fetch_add(1, Ordering::SeqCst);
                let _ = stream.set_nodelay(true);
                let io = KillableIo::new(stream, killed.clone());
                let generation = lock(&current);
                let _ = generation.connections.send(io);
            }
            // Out of file descriptors and the like: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

impl Drop for FrontEnd {
    fn drop(&mut self) {
        if let Some(running) = self.running.get_mut().take() {
            running.kill.send_replace(true);
        }
    }
}

impl fmt::Debug for FrontEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrontEnd")
            .field("host", &self.host)
            .field("addr", &self.addr)
            .field("tls", &self.certificate.is_some())
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// A connection that fails every read and write once the front end is stopped, so that a
/// stop drops connections at once instead of draining them.
struct KillableIo {
    io: TcpStream,
    killed: Pin<Box<dyn Future<Output = ()> + Send + Sync>>,
    dead: bool,
}

impl KillableIo {
    fn new(io: TcpStream, mut killed: watch::Receiver<bool>) -> Self {
        KillableIo {
            io,
            killed: Box::pin(async move {
                let _ = killed.wait_for(|kill| *kill).await;
            }),
            dead: false,
        }
    }

    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if !self.dead && self.killed.as_mut().poll(cx).is_ready() {
            self.dead = true;
        }
        if self.dead {
            Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "front end stopped",
            ))
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for KillableIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl Connected for KillableIo {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.connect_info()
    }
}
