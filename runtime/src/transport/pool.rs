//! The HTTP/2 connections to the host from one Tokio runtime, and their liveness.
//!
//! - Calls go to the least busy live connection below the peer's `MAX_CONCURRENT_STREAMS`;
//!   when every one is full, another is dialled (up to a cap) instead of queueing behind the
//!   limit. `connections(n)` keeps at least `n`. Until a new connection's SETTINGS arrive, it
//!   is assumed to take 100 calls, as HTTP/2 implementations assume (and Google's front ends
//!   allow); the peer's own limit is read each time the connection is polled.
//! - One dial at a time, shared by every caller waiting for it; the dial runs in its own task,
//!   so a caller giving up does not abandon the others.
//! - A connection leaves the pool when it fails (a reset, the peer's `GOAWAY`, or silence past
//!   the keep-alive timeout: HTTP/2 PINGs while calls are in flight), and when it has been idle
//!   longer than common NAT idle timeouts, so the next call dials afresh instead of finding a
//!   dead flow. A `GOAWAY` of `ENHANCE_YOUR_CALM` (grpc servers' `too_many_pings`) doubles the
//!   keep-alive interval of later connections, as grpc-go's client does.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::Poll;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::Status;

use super::body::RequestBody;
use super::connect::Dialer;
use crate::deadline::later;
use crate::sync::lock;

/// How connections are made and kept, shared by every runtime's pool of one transport.
pub(crate) struct Settings {
    pub(crate) dialer: Dialer,
    pub(crate) keepalive: Option<KeepAlive>,
    pub(crate) idle_timeout: Duration,
    pub(crate) min_connections: usize,
    pub(crate) max_connections: usize,
}

/// HTTP/2 keep-alive: a PING every `interval` while calls are in flight, the connection
/// declared dead when one goes unanswered for `timeout`.
pub(crate) struct KeepAlive {
    interval_nanos: AtomicU64,
    timeout: Duration,
}

impl KeepAlive {
    pub(crate) fn new(interval: Duration, timeout: Duration) -> Self {
        KeepAlive {
            interval_nanos: AtomicU64::new(nanos(interval)),
            timeout,
        }
    }

    pub(crate) fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_nanos.load(Ordering::Relaxed))
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The server said a connection dialled with `dialled_with` pings too often: halve the
    /// rate for connections dialled from now on. Once per interval, however many connections
    /// the server sends away for it: a server enforces per connection, and several going at
    /// once must not double the interval several times.
    fn back_off(&self, dialled_with: Duration) -> Duration {
        let doubled = dialled_with.saturating_mul(2);
        let _ = self.interval_nanos.compare_exchange(
            nanos(dialled_with),
            nanos(doubled),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        self.interval()
    }
}

/// The longest pause between floor dials: gRPC's `MAX_BACKOFF` (connection-backoff.md).
const FLOOR_DIAL_BACKOFF_MAX_MS: u64 = 120_000;

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// How a dial ended, once it has: watched by every call waiting for it.
type DialOutcome = watch::Receiver<Option<Result<(), Status>>>;

/// The connections of one runtime.
pub(crate) struct Pool {
    settings: Arc<Settings>,
    conns: ArcSwap<Vec<Arc<Conn>>>,
    /// The dial under way, if any: its outcome once known.
    dialing: Mutex<Option<DialOutcome>>,
    next: AtomicUsize,
    next_id: AtomicU64,
    /// How many connections were ever added: a dial looks at it to know whether the pool
    /// changed since its caller looked.
    added: AtomicU64,
    /// Dials failed in a row, and the millisecond (since `epoch`) before which no dial is
    /// started for the `connections(n)` floor: a host that refuses more connections is not
    /// asked again on every call. Dials a call needs are not held back.
    dial_failures: AtomicU32,
    floor_dial_after: AtomicU64,
    epoch: Instant,
}

/// One HTTP/2 connection.
struct Conn {
    sender: SendRequest<RequestBody>,
    state: Arc<ConnState>,
}

/// What the pool and the connection's task know of a connection.
pub(crate) struct ConnState {
    id: u64,
    in_flight: AtomicUsize,
    /// The peer's `MAX_CONCURRENT_STREAMS` (100 until its SETTINGS say otherwise).
    max_streams: AtomicUsize,
    closed: AtomicBool,
    /// Milliseconds since the pool's epoch when the last call on it ended.
    idle_since: AtomicU64,
    epoch: Instant,
}

/// A call's hold on a stream of a connection; released when the response is read or dropped.
pub(crate) struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            let since = self.0.epoch.elapsed().as_millis();
            self.0
                .idle_since
                .store(u64::try_from(since).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
    }
}

/// A connection ready to take a call.
pub(crate) struct Picked {
    pub(crate) sender: SendRequest<RequestBody>,
    pub(crate) in_flight: InFlight,
}

impl InFlight {
    /// The connection handed the request back unsent: it is closing.
    pub(crate) fn mark_closed(&self) {
        self.0.closed.store(true, Ordering::Relaxed);
    }
}

impl Pool {
    pub(crate) fn new(settings: Arc<Settings>) -> Self {
        Pool {
            settings,
            conns: ArcSwap::default(),
            dialing: Mutex::new(None),
            next: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            added: AtomicU64::new(0),
            dial_failures: AtomicU32::new(0),
            floor_dial_after: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// A connection for one call: a live one with a free stream, else a new one (waiting for
    /// the dial, for at most `by`), else — at the connection cap — the least busy one, where the
    /// call waits for a stream as HTTP/2 says.
    pub(crate) async fn get(self: &Arc<Self>, by: Option<Instant>) -> Result<Picked, Status> {
        // Bounded: each round either returns or waits for one dial, which adds a connection
        // or fails.
        for _ in 0..4 {
            let seen = self.added.load(Ordering::Acquire);
            let (picked, live) = self.pick();
            match picked {
                Pick::Free(picked) => {
                    if live < self.settings.min_connections && self.floor_may_dial() {
                        self.dial(seen);
                    }
                    return Ok(picked);
                }
                Pick::Busy(picked) if live >= self.settings.max_connections => return Ok(picked),
                Pick::Busy(_) | Pick::None => {}
            }
            let Some(mut outcome) = self.dial(seen) else {
                continue; // A connection was added meanwhile: look again.
            };
            let done = outcome.wait_for(Option::is_some);
            let result = match by {
                Some(by) => match tokio::time::timeout_at(by, done).await {
                    Ok(result) => result.map(|r| r.clone()),
                    Err(_) => {
                        return Err(Status::deadline_exceeded(
                            "the call's deadline passed while connecting",
                        ));
                    }
                },
                None => done.await.map(|r| r.clone()),
            };
            match result {
                Ok(Some(Err(status))) => {
                    // A failed dial still leaves a busy connection usable.
                    if let Pick::Busy(picked) = self.pick().0 {
                        return Ok(picked);
                    }
                    return Err(status);
                }
                Ok(_) => {}
                Err(_) => return Err(Status::unavailable("the connection attempt was abandoned")),
            }
        }
        match self.pick().0 {
            Pick::Free(picked) | Pick::Busy(picked) => Ok(picked),
            Pick::None => Err(Status::unavailable(
                "no connection could be established after several attempts",
            )),
        }
    }

    /// Dials a connection now, unless one is live or being dialled: a cold channel connects
    /// while its first token is fetched.
    pub(crate) fn prepare(self: &Arc<Self>) {
        let seen = self.added.load(Ordering::Acquire);
        if self.pick().1 == 0 {
            self.dial(seen);
        }
    }

    /// Waits until a connection is live (dialling one if needed), for at most `by`.
    pub(crate) async fn connected(self: &Arc<Self>, by: Option<Instant>) -> Result<(), Status> {
        self.get(by).await.map(drop)
    }

    /// The least busy live connection with a free stream, starting at a rotating index so that
    /// equally busy connections share the load; and how many are live.
    fn pick(&self) -> (Pick, usize) {
        let conns = self.conns.load();
        let count = conns.len();
        let start = match count {
            0 | 1 => 0,
            _ => self.next.fetch_add(1, Ordering::Relaxed) % count,
        };
        let mut live = 0;
        let mut least: Option<(&Arc<Conn>, usize)> = None;
        for conn in conns.iter().cycle().skip(start).take(count) {
            if conn.state.closed.load(Ordering::Relaxed) || conn.sender.is_closed() {
                continue;
            }
            live += 1;
            let busy = conn.state.in_flight.load(Ordering::Relaxed);
            if least.is_none_or(|(_, fewest)| busy < fewest) {
                least = Some((conn, busy));
            }
        }
        let pick = match least {
            Some((conn, busy)) if busy < conn.state.max_streams.load(Ordering::Relaxed) => {
                Pick::Free(conn.take())
            }
            Some((conn, _)) => Pick::Busy(conn.take()),
            None => Pick::None,
        };
        (pick, live)
    }

    /// Starts a dial unless one is under way, or a connection was added since the caller
    /// looked (`seen`, the count of connections added then; `None`: look again). The receiver
    /// tells the dial's outcome, after which the caller looks again. So callers that all found
    /// the pool short of connections at once make one dial, not one each.
    fn dial(self: &Arc<Self>, seen: u64) -> Option<DialOutcome> {
        let mut dialing = lock(&self.dialing);
        if let Some(outcome) = dialing.as_ref()
            && outcome.borrow().is_none()
        {
            return Some(outcome.clone());
        }
        if self.added.load(Ordering::Acquire) != seen {
            return None;
        }
        let (done, outcome) = watch::channel(None);
        *dialing = Some(outcome.clone());
        let pool = Arc::clone(self);
        tokio::spawn(async move {
            let result = pool.connect().await;
            pool.dialled(result.is_ok());
            done.send_replace(Some(result));
        });
        Some(outcome)
    }

    fn millis_since_epoch(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn floor_may_dial(&self) -> bool {
        self.millis_since_epoch() >= self.floor_dial_after.load(Ordering::Relaxed)
    }

    /// Counts a dial's end: failures in a row hold floor dials back from 1 s, doubling, to
    /// 2 minutes (gRPC's connection backoff); a success ends the streak.
    fn dialled(&self, connected: bool) {
        if connected {
            self.dial_failures.store(0, Ordering::Relaxed);
            self.floor_dial_after.store(0, Ordering::Relaxed);
            return;
        }
        let failures = self.dial_failures.fetch_add(1, Ordering::Relaxed);
        let backoff = (1000u64 << failures.min(7)).min(FLOOR_DIAL_BACKOFF_MAX_MS);
        self.floor_dial_after.store(
            self.millis_since_epoch().saturating_add(backoff),
            Ordering::Relaxed,
        );
    }

    /// Dials, shakes hands, adds the connection and starts the task that drives it.
    async fn connect(self: &Arc<Self>) -> Result<(), Status> {
        let settings = &self.settings;
        let stream = settings.dialer.dial().await?;
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder.timer(TokioTimer::new());
        let ping_interval = settings.keepalive.as_ref().map(KeepAlive::interval);
        if let Some(keepalive) = &settings.keepalive {
            builder
                .keep_alive_interval(ping_interval)
                .keep_alive_timeout(keepalive.timeout())
                .keep_alive_while_idle(false);
        }
        let (sender, connection) = builder.handshake(stream).await.map_err(|error| {
            Status::unavailable(format!(
                "cannot start HTTP/2 with {}: {}",
                settings.dialer.authority(),
                crate::error::chain(&error)
            ))
        })?;
        let state = Arc::new(ConnState {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            in_flight: AtomicUsize::new(0),
            max_streams: AtomicUsize::new(100),
            closed: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
            epoch: self.epoch,
        });
        let conn = Arc::new(Conn {
            sender,
            state: Arc::clone(&state),
        });
        self.conns.rcu(|conns| {
            let mut conns: Vec<_> = conns
                .iter()
                .filter(|c| !c.state.closed.load(Ordering::Relaxed))
                .cloned()
                .collect();
            conns.push(Arc::clone(&conn));
            conns
        });
        self.added.fetch_add(1, Ordering::AcqRel);
        tracing::debug!(host = %settings.dialer.authority(), connection = state.id, "connected");
        tokio::spawn(drive(
            connection,
            state,
            ping_interval,
            Arc::downgrade(self),
        ));
        Ok(())
    }

    /// Takes a connection out: it failed, went away or sat idle too long.
    fn retire(&self, state: &ConnState) {
        state.closed.store(true, Ordering::Relaxed);
        self.conns.rcu(|conns| {
            conns
                .iter()
                .filter(|c| c.state.id != state.id)
                .cloned()
                .collect::<Vec<_>>()
        });
    }
}

enum Pick {
    Free(Picked),
    Busy(Picked),
    None,
}

impl Conn {
    fn take(&self) -> Picked {
        self.state.in_flight.fetch_add(1, Ordering::AcqRel);
        Picked {
            sender: self.sender.clone(),
            in_flight: InFlight(Arc::clone(&self.state)),
        }
    }
}

type Connection = http2::Connection<super::connect::Stream, RequestBody, TokioExecutor>;

/// Drives one connection until it ends, keeping the pool's view of it current: its peer's
/// stream limit, its end, and its idleness.
async fn drive(
    connection: Connection,
    state: Arc<ConnState>,
    ping_interval: Option<Duration>,
    pool: Weak<Pool>,
) {
    let Some(idle_timeout) = pool.upgrade().map(|pool| pool.settings.idle_timeout) else {
        return;
    };
    let mut connection = pin!(connection);
    let mut idle_check = pin!(tokio::time::sleep(idle_timeout));
    let mut polls: u32 = 0;
    let ended = std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = connection.as_mut().poll(cx) {
            return Poll::Ready(Some(result));
        }
        // The peer's limit takes h2's lock to read: read it while it may still change (the
        // first polls, when its SETTINGS arrive), when calls come near it, and now and then.
        polls = polls.wrapping_add(1);
        let max = state.max_streams.load(Ordering::Relaxed);
        let busy = state.in_flight.load(Ordering::Relaxed);
        if polls < 16 || polls.is_multiple_of(64) || busy.saturating_mul(4) >= max.saturating_mul(3)
        {
            state
                .max_streams
                .store(connection.current_max_send_streams(), Ordering::Relaxed);
        }
        while idle_check.as_mut().poll(cx).is_ready() {
            let idle_since = Duration::from_millis(state.idle_since.load(Ordering::Relaxed));
            let idle_for = state.epoch.elapsed().saturating_sub(idle_since);
            if state.in_flight.load(Ordering::Acquire) == 0 && idle_for >= idle_timeout {
                return Poll::Ready(None);
            }
            let wait = idle_timeout.saturating_sub(idle_for).max(idle_timeout / 8);
            idle_check.as_mut().reset(later(Instant::now(), wait));
        }
        Poll::Pending
    })
    .await;
    let Some(pool) = pool.upgrade() else {
        return;
    };
    let host = pool.settings.dialer.authority().clone();
    pool.retire(&state);
    match ended {
        None => {
            tracing::debug!(%host, connection = state.id, "closing a connection idle for {idle_timeout:?}");
            drop(pool);
            // Out of the pool, its last sender goes with the last call: let it close cleanly.
            let _ = connection.await;
        }
        Some(Ok(())) => {
            tracing::debug!(%host, connection = state.id, "connection closed");
        }
        Some(Err(error)) => {
            if calmed(&error)
                && let Some(keepalive) = &pool.settings.keepalive
                && let Some(dialled_with) = ping_interval
            {
                let interval = keepalive.back_off(dialled_with);
                tracing::warn!(
                    %host,
                    keepalive_interval = ?interval,
                    "the server sent GOAWAY ENHANCE_YOUR_CALM (too many pings): pinging half as often from now on"
                );
            } else {
                tracing::debug!(%host, connection = state.id, error = %crate::error::chain(&error), "connection failed");
            }
        }
    }
}

/// Whether the peer went away with `ENHANCE_YOUR_CALM`, which is how gRPC servers answer
/// pings they find too frequent.
fn calmed(error: &hyper::Error) -> bool {
    super::failure::h2_error(error)
        .is_some_and(|h2| h2.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_pings_doubles_the_interval_without_overflowing() {
        let keepalive = KeepAlive::new(Duration::from_secs(30), Duration::from_secs(10));
        let dialled_with = keepalive.interval();
        assert_eq!(keepalive.back_off(dialled_with), Duration::from_secs(60));
        assert_eq!(keepalive.interval(), Duration::from_secs(60));
        let huge = KeepAlive::new(Duration::MAX, Duration::from_secs(10));
        let dialled_with = huge.interval();
        assert_eq!(huge.back_off(dialled_with), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn connections_sent_away_together_double_the_interval_once() {
        let keepalive = KeepAlive::new(Duration::from_secs(30), Duration::from_secs(10));
        let dialled_with = keepalive.interval();
        for _ in 0..8 {
            keepalive.back_off(dialled_with);
        }
        assert_eq!(keepalive.interval(), Duration::from_secs(60));
        // A connection dialled at the new interval and sent away again doubles it again.
        assert_eq!(
            keepalive.back_off(keepalive.interval()),
            Duration::from_secs(120)
        );
    }
}
