//! An h2c proxy that enforces grpc-go's server keepalive policy.

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::listen;
use crate::runtime::serve_until_stopped;
use crate::sync::lock;

/// grpc-go's `defaultKeepalivePolicyMinTime`.
const DEFAULT_MIN_TIME: Duration = Duration::from_secs(5 * 60);
/// grpc-go's `defaultPingTimeout`: with no stream open and `PermitWithoutStream` false, a PING
/// within this long of the previous one is a strike.
const NO_STREAM_MIN_TIME: Duration = Duration::from_secs(2 * 60 * 60);
/// grpc-go's `maxPingStrikes`: one strike more and the connection is sent `GOAWAY`.
const MAX_PING_STRIKES: u32 = 2;

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// A cleartext HTTP/2 proxy on `127.0.0.1` that polices a client's PINGs exactly as a grpc-go
/// server does (its keepalive `EnforcementPolicy`, `handlePing` in
/// `internal/transport/http2_server.go`), in front of a server that does not (a plaintext
/// [`FrontEnd`](crate::FrontEnd), whose hyper server answers every PING):
///
/// - a PING that comes after the server sent `HEADERS` or `DATA` since the previous PING clears
///   the strikes and is not judged;
/// - otherwise, with streams open (or with none, when `permit_without_stream`), a PING within
///   [`min_time`](KeepaliveEnforcerBuilder::min_time) of the previous one is a strike;
/// - with no stream open and `permit_without_stream` false, a PING within two hours of the
///   previous one is a strike;
/// - on the third strike the client is sent `GOAWAY` with `ENHANCE_YOUR_CALM` and the debug
///   data `too_many_pings`, naming the last stream the server took, and the connection is
///   closed: calls still in flight on it fail.
///
/// The first PING of a connection is never a strike. Everything else passes through untouched.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use std::time::Duration;
/// use cloud_run_grpc_testkit::{FrontEnd, KeepaliveEnforcer};
///
/// let front = FrontEnd::builder("bookstore.test.run.app")
///     .plaintext()
///     .serve(tonic::service::Routes::default())
///     .await?;
/// let enforcer = KeepaliveEnforcer::builder(front.addr())
///     .min_time(Duration::from_millis(500))
///     .start()
///     .await?;
/// // A client dialling enforcer.addr() over h2c that pings more often than every 500ms
/// // while its calls wait gets GOAWAY too_many_pings at the third such PING.
/// assert_eq!(enforcer.goaways(), 0);
/// # Ok(()) }
/// ```
pub struct KeepaliveEnforcer {
    addr: SocketAddr,
    counts: Arc<Counts>,
    stop: watch::Sender<bool>,
}

/// Configures a [`KeepaliveEnforcer`]; [`start`](KeepaliveEnforcerBuilder::start) runs it.
#[derive(Clone, Debug)]
pub struct KeepaliveEnforcerBuilder {
    target: SocketAddr,
    policy: Policy,
}

#[derive(Clone, Copy, Debug)]
struct Policy {
    min_time: Duration,
    permit_without_stream: bool,
}

#[derive(Default)]
struct Counts {
    connections: AtomicUsize,
    pings: AtomicUsize,
    strikes: AtomicUsize,
    goaways: AtomicUsize,
}

impl KeepaliveEnforcer {
    /// An enforcer in front of the h2c server at `target`, with grpc-go's defaults: `MinTime`
    /// five minutes, `PermitWithoutStream` false.
    pub fn builder(target: SocketAddr) -> KeepaliveEnforcerBuilder {
        KeepaliveEnforcerBuilder {
            target,
            policy: Policy {
                min_time: DEFAULT_MIN_TIME,
                permit_without_stream: false,
            },
        }
    }

    /// The address clients dial (h2c, prior knowledge).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections it accepted.
    pub fn connections(&self) -> usize {
        self.counts.connections.load(Ordering::SeqCst)
    }

    /// How many PINGs clients sent (acknowledgements not counted).
    pub fn pings(&self) -> usize {
        self.counts.pings.load(Ordering::SeqCst)
    }

    /// How many of those PINGs were strikes.
    pub fn strikes(&self) -> usize {
        self.counts.strikes.load(Ordering::SeqCst)
    }

    /// How many connections it sent `GOAWAY` `too_many_pings` and closed.
    pub fn goaways(&self) -> usize {
        self.counts.goaways.load(Ordering::SeqCst)
    }
}

impl KeepaliveEnforcerBuilder {
    /// grpc-go's `EnforcementPolicy.MinTime`: the least time between two PINGs that is not a
    /// strike while streams are open (default five minutes).
    pub fn min_time(mut self, min_time: Duration) -> Self {
        self.policy.min_time = min_time;
        self
    }

    /// grpc-go's `EnforcementPolicy.PermitWithoutStream`: whether PINGs with no stream open
    /// are judged by `min_time` (true) or are strikes within two hours of each other (false,
    /// the default).
    pub fn permit_without_stream(mut self, permit: bool) -> Self {
        self.policy.permit_without_stream = permit;
        self
    }

    /// Listens on `127.0.0.1:0` and starts proxying, on the current Tokio runtime.
    pub async fn start(self) -> io::Result<KeepaliveEnforcer> {
        let (runtime, listener, addr) = listen()?;
        let counts = Arc::new(Counts::default());
        let (stop, stopping) = watch::channel(false);
        runtime.spawn(accept_loop(
            listener,
            self.target,
            self.policy,
            counts.clone(),
            stopping,
        ));
        Ok(KeepaliveEnforcer { addr, counts, stop })
    }
}

impl Drop for KeepaliveEnforcer {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

impl fmt::Debug for KeepaliveEnforcer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeepaliveEnforcer")
            .field("addr", &self.addr)
            .field("pings", &self.pings())
            .field("strikes", &self.strikes())
            .field("goaways", &self.goaways())
            .finish()
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    policy: Policy,
    counts: Arc<Counts>,
    stop: watch::Receiver<bool>,
) {
    // Ends when the enforcer is dropped.
    serve_until_stopped(listener, stop, |client| {
        counts.connections.fetch_add(1, Ordering::SeqCst);
        let _ = client.set_nodelay(true);
        Some(proxy(client, target, policy, counts.clone()))
    })
    .await;
}

/// What grpc-go's server transport keeps to judge PINGs, for one connection.
struct PingState {
    policy: Policy,
    /// `lastPingAt`; `None` until the first PING, which therefore is never a strike.
    last_ping_at: Option<Instant>,
    strikes: u32,
    /// `resetPingStrikes`: the server wrote HEADERS or DATA since the last PING.
    server_wrote: bool,
    /// `activeStreams`: streams the client opened that the server has not finished.
    open_streams: HashSet<u32>,
    /// `maxStreamID`: the last stream the server took, named in the GOAWAY.
    max_stream_id: u32,
}

impl PingState {
    /// `handlePing` for a PING that is not an acknowledgement: whether it is a strike, and
    /// whether it was one too many.
    fn ping(&mut self, now: Instant) -> (bool, bool) {
        let last = self.last_ping_at.replace(now);
        if std::mem::take(&mut self.server_wrote) {
            self.strikes = 0;
            return (false, false);
        }
        let min_time = if self.open_streams.is_empty() && !self.policy.permit_without_stream {
            NO_STREAM_MIN_TIME
        } else {
            self.policy.min_time
        };
        let strike = last.is_some_and(|last| last + min_time > now);
        if strike {
            self.strikes += 1;
        }
        (strike, self.strikes > MAX_PING_STRIKES)
    }
}

/// One HTTP/2 frame: its 9-byte header and payload.
struct Frame {
    header: [u8; 9],
    payload: Vec<u8>,
}

impl Frame {
    fn kind(&self) -> u8 {
        self.header[3]
    }

    fn flags(&self) -> u8 {
        self.header[4]
    }

    fn stream_id(&self) -> u32 {
        u32::from_be_bytes([
            self.header[5],
            self.header[6],
            self.header[7],
            self.header[8],
        ]) & 0x7fff_ffff
    }

    async fn read(from: &mut (impl AsyncRead + Unpin)) -> io::Result<Frame> {
        let mut header = [0; 9];
        from.read_exact(&mut header).await?;
        let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let mut payload = vec![0; length];
        from.read_exact(&mut payload).await?;
        Ok(Frame { header, payload })
    }

    async fn write(&self, to: &mut (impl AsyncWrite + Unpin)) -> io::Result<()> {
        to.write_all(&self.header).await?;
        to.write_all(&self.payload).await
    }

    /// `GOAWAY` `ENHANCE_YOUR_CALM` with `too_many_pings`, as grpc-go writes it.
    fn too_many_pings(last_stream_id: u32) -> Frame {
        let mut payload = Vec::with_capacity(8 + 14);
        payload.extend_from_slice(&(last_stream_id & 0x7fff_ffff).to_be_bytes());
        payload.extend_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
        payload.extend_from_slice(b"too_many_pings");
        let length = (payload.len() as u32).to_be_bytes();
        Frame {
            header: [length[1], length[2], length[3], GOAWAY, 0, 0, 0, 0, 0],
            payload,
        }
    }
}

async fn proxy(client: TcpStream, target: SocketAddr, policy: Policy, counts: Arc<Counts>) {
    let Ok(upstream) = TcpStream::connect(target).await else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    let state = Arc::new(Mutex::new(PingState {
        policy,
        last_ping_at: None,
        strikes: 0,
        server_wrote: false,
        open_streams: HashSet::new(),
        max_stream_id: 0,
    }));
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let (goaway, goaway_due) = oneshot::channel();
    let requests = from_client(
        client_read,
        upstream_write,
        state.clone(),
        counts.clone(),
        goaway,
    );
    let responses = from_server(upstream_read, client_write, state, counts, goaway_due);
    // Either direction ending ends the connection: a GOAWAY closes both, as grpc-go does.
    tokio::select! {
        _ = requests => {}
        _ = responses => {}
    }
}

/// Client to server: passes every frame on, judging the client's PINGs.
async fn from_client(
    mut client: impl AsyncRead + Unpin,
    mut upstream: impl AsyncWrite + Unpin,
    state: Arc<Mutex<PingState>>,
    counts: Arc<Counts>,
    goaway: oneshot::Sender<u32>,
) -> io::Result<()> {
    let mut preface = [0; 24];
    client.read_exact(&mut preface).await?;
    upstream.write_all(&preface).await?;
    if &preface != PREFACE {
        // Not HTTP/2 with prior knowledge: nothing to police.
        tokio::io::copy(&mut client, &mut upstream).await?;
        return Ok(());
    }
    // Ends when either side closes the connection, or when the client struck out.
    let last_stream_id = loop {
        let frame = Frame::read(&mut client).await?;
        let mut too_many = None;
        {
            let mut state = lock(&state);
            match frame.kind() {
                HEADERS if frame.stream_id() > state.max_stream_id => {
                    state.max_stream_id = frame.stream_id();
                    state.open_streams.insert(frame.stream_id());
                }
                RST_STREAM => {
                    state.open_streams.remove(&frame.stream_id());
                }
                PING if frame.flags() & ACK == 0 => {
                    counts.pings.fetch_add(1, Ordering::SeqCst);
                    let (strike, goaway) = state.ping(Instant::now());
                    if strike {
                        counts.strikes.fetch_add(1, Ordering::SeqCst);
                    }
                    if goaway {
                        too_many = Some(state.max_stream_id);
                    }
                }
                _ => {}
            }
        }
        // The PING is answered (by the server behind) before the GOAWAY, as grpc-go queues
        // its acknowledgement first.
        frame.write(&mut upstream).await?;
        if let Some(last_stream_id) = too_many {
            break last_stream_id;
        }
    };
    let _ = goaway.send(last_stream_id);
    // Holds the connection until the GOAWAY is out; the other direction then closes it.
    std::future::pending().await
}

/// Server to client: passes every frame on, noting what the server wrote, and sends the
/// GOAWAY when the client has struck out.
async fn from_server(
    mut upstream: impl AsyncRead + Unpin,
    mut client: impl AsyncWrite + Unpin,
    state: Arc<Mutex<PingState>>,
    counts: Arc<Counts>,
    mut goaway_due: oneshot::Receiver<u32>,
) -> io::Result<()> {
    // Ends when either side closes the connection, or after a GOAWAY.
    loop {
        let frame = tokio::select! {
            frame = Frame::read(&mut upstream) => frame?,
            last_stream_id = &mut goaway_due => {
                let Ok(last_stream_id) = last_stream_id else {
                    // The client's direction ended without a GOAWAY: so does this one.
                    return Ok(());
                };
                Frame::too_many_pings(last_stream_id).write(&mut client).await?;
                client.flush().await?;
                counts.goaways.fetch_add(1, Ordering::SeqCst);
                return Ok(());
            }
        };
        {
            let mut state = lock(&state);
            match frame.kind() {
                DATA | HEADERS => {
                    state.server_wrote = true;
                    if frame.flags() & END_STREAM != 0 {
                        state.open_streams.remove(&frame.stream_id());
                    }
                }
                RST_STREAM => {
                    state.open_streams.remove(&frame.stream_id());
                }
                _ => {}
            }
        }
        frame.write(&mut client).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(min_time: Duration, permit_without_stream: bool) -> PingState {
        PingState {
            policy: Policy {
                min_time,
                permit_without_stream,
            },
            last_ping_at: None,
            strikes: 0,
            server_wrote: false,
            open_streams: HashSet::new(),
            max_stream_id: 0,
        }
    }

    #[test]
    fn the_third_strike_is_one_too_many() {
        let mut state = state(Duration::from_secs(1), false);
        state.open_streams.insert(1);
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        assert_eq!(
            state.ping(at(0)),
            (false, false),
            "the first is never a strike"
        );
        assert_eq!(state.ping(at(100)), (true, false));
        assert_eq!(state.ping(at(200)), (true, false));
        assert_eq!(state.ping(at(300)), (true, true));
    }

    #[test]
    fn server_writes_clear_the_strikes_and_spacing_avoids_them() {
        let mut state = state(Duration::from_secs(1), false);
        state.open_streams.insert(1);
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        state.ping(at(0));
        assert_eq!(state.ping(at(100)), (true, false));
        state.server_wrote = true;
        assert_eq!(state.ping(at(200)), (false, false), "cleared, not judged");
        assert_eq!(state.strikes, 0);
        assert_eq!(state.ping(at(1300)), (false, false), "after MinTime");
    }

    #[test]
    fn without_streams_pings_within_two_hours_are_strikes_unless_permitted() {
        let start = Instant::now();
        let mut strict = state(Duration::from_secs(1), false);
        strict.ping(start);
        assert_eq!(strict.ping(start + Duration::from_secs(60)), (true, false));
        let mut permitted = state(Duration::from_secs(1), true);
        permitted.ping(start);
        assert_eq!(
            permitted.ping(start + Duration::from_secs(60)),
            (false, false)
        );
    }
}
