//! HTTP/2 to one host, and nothing else: no tokens here (the channel adds them).
//!
//! | file | what it does |
//! |---|---|
//! | `mod.rs` | [`Transport`]: finds the caller's runtime's pool, sends, bounds the call by its deadline |
//! | `pool.rs` | the connections of one runtime: picking, dialling, stream limits, liveness, idle expiry |
//! | `connect.rs` | dialling one connection: TCP or an HTTPS proxy's `CONNECT`, TLS, all within the connect timeout |
//! | `body.rs` | the request body as sent (whole when it can be) and the response body as read |
//! | `answer.rs` | answers that are not gRPC (a front end's HTML error pages) |
//! | `failure.rs` | what a transport failure means as a gRPC status |
//!
//! Each Tokio runtime that sends through a transport gets its own connections, whose tasks run
//! on it: when one runtime shuts down only its own connections die, and other runtimes' calls
//! are untouched. So one process-wide channel serves runtimes that come and go, as
//! `#[tokio::test]`s do. A sentinel task per runtime tells when it is gone, so that its pool
//! can be dropped.

mod answer;
mod body;
mod connect;
mod failure;
mod pool;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::uri::{Authority, Scheme};
use http::{Request, Response};
use tokio::time::Sleep;
use tonic::Status;

pub use answer::NonGrpcAnswer;
pub(crate) use answer::is_grpc;
pub(crate) use body::RequestBody;
pub use body::ResponseBody;
pub(crate) use connect::TcpLiveness;
use pool::Pool;
pub(crate) use pool::{KeepAlive, Picked};

use crate::deadline::Deadline;
use crate::sync::lock;

/// Everything a transport is made of.
pub(crate) struct Settings {
    pub(crate) scheme: Scheme,
    pub(crate) authority: Authority,
    pub(crate) connect_to: Option<SocketAddr>,
    pub(crate) tls: rustls::ClientConfig,
    pub(crate) roots: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) tcp: TcpLiveness,
    pub(crate) keepalive: Option<KeepAlive>,
    pub(crate) idle_timeout: Duration,
    pub(crate) min_connections: usize,
    pub(crate) max_connections: usize,
}

/// Why a call got no gRPC answer.
#[derive(Debug)]
pub(crate) enum SendError {
    /// An answer that is not gRPC: a front end's error page.
    NonGrpcAnswer(NonGrpcAnswer),
    /// The server provably never processed the call (`REFUSED_STREAM`, or a `GOAWAY` below
    /// it): sending it again cannot run anything twice.
    NeverProcessed(Status),
    /// Anything else, as the call's final status.
    Failed(Status),
}

/// Sends requests to the host. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Transport {
    shared: Arc<Shared>,
}

struct Shared {
    scheme: Scheme,
    authority: Authority,
    pool_settings: Arc<pool::Settings>,
    /// One pool per runtime; almost always exactly one.
    pools: ArcSwap<Vec<RuntimePool>>,
    adding: Mutex<()>,
}

#[derive(Clone)]
struct RuntimePool {
    runtime: tokio::runtime::Id,
    runtime_alive: Weak<()>,
    pool: Arc<Pool>,
}

impl Transport {
    pub(crate) fn new(settings: Settings) -> Self {
        let dialer = connect::Dialer::new(connect::DialerSettings {
            scheme: settings.scheme.clone(),
            authority: settings.authority.clone(),
            connect_to: settings.connect_to,
            tls: settings.tls,
            roots: settings.roots,
            timeout: settings.connect_timeout,
            tcp: settings.tcp,
        });
        Transport {
            shared: Arc::new(Shared {
                scheme: settings.scheme,
                authority: settings.authority,
                pool_settings: Arc::new(pool::Settings {
                    dialer,
                    keepalive: settings.keepalive,
                    idle_timeout: settings.idle_timeout,
                    min_connections: settings.min_connections.max(1),
                    max_connections: settings
                        .max_connections
                        .max(settings.min_connections)
                        .max(1),
                }),
                pools: ArcSwap::default(),
                adding: Mutex::new(()),
            }),
        }
    }

    /// The host requests go to (`:authority`).
    pub(crate) fn authority(&self) -> &Authority {
        &self.shared.authority
    }

    /// `https`, or `http` to a loopback address.
    pub(crate) fn scheme(&self) -> &Scheme {
        &self.shared.scheme
    }

    /// The HTTPS proxy connections go through, if the environment named one for this host.
    pub(crate) fn proxy(&self) -> Option<&Authority> {
        self.shared.pool_settings.dialer.proxy()
    }

    /// The current HTTP/2 keep-alive interval, if keep-alive is on.
    pub(crate) fn keepalive_interval(&self) -> Option<Duration> {
        self.shared
            .pool_settings
            .keepalive
            .as_ref()
            .map(KeepAlive::interval)
    }

    /// Starts connecting, unless a connection is live or on its way: a cold channel dials while
    /// its first token is fetched. Sends nothing.
    pub(crate) fn prepare(&self) {
        if let Ok(pool) = self.pool() {
            pool.prepare();
        }
    }

    /// Waits until a connection is live, for at most `by`.
    pub(crate) async fn connected(&self, by: Option<tokio::time::Instant>) -> Result<(), Status> {
        self.pool()?.connected(by).await
    }

    /// Sends `request` and waits for the response headers, within `deadline`, which then goes
    /// on bounding the response body.
    pub(crate) async fn send(
        &self,
        mut request: Request<RequestBody>,
        deadline: Option<Deadline>,
    ) -> Result<Response<ResponseBody>, SendError> {
        let pool = self.pool().map_err(SendError::Failed)?;
        let by = deadline.map(|d| d.at());
        // One timer for the whole call: it bounds the headers here, then the body.
        let mut timer: Option<(Pin<Box<Sleep>>, Deadline)> =
            deadline.map(|d| (Box::pin(tokio::time::sleep_until(d.at())), d));
        // A connection that closes before taking the request hands it back, unsent: another
        // connection gets it. Bounded, as each round retires a connection.
        for _ in 0..3 {
            let Picked {
                mut sender,
                in_flight,
            } = pool.get(by).await.map_err(|status| {
                SendError::Failed(match (status.code(), deadline) {
                    (tonic::Code::DeadlineExceeded, Some(deadline)) => self.too_late(deadline),
                    _ => status,
                })
            })?;
            let sent = sender.try_send_request(request);
            let outcome = match timer.as_mut() {
                None => sent.await,
                Some((sleep, deadline)) => tokio::select! {
                    biased;
                    outcome = sent => outcome,
                    () = sleep.as_mut() => return Err(SendError::Failed(self.too_late(*deadline))),
                },
            };
            match outcome {
                Ok(response) if answer::is_grpc(&response) => {
                    let (parts, body) = response.into_parts();
                    let timer = timer.map(|(sleep, deadline)| (sleep, deadline.total()));
                    let body = ResponseBody::new(body, timer, self.authority().clone(), in_flight);
                    return Ok(Response::from_parts(parts, body));
                }
                Ok(response) => {
                    return Err(SendError::NonGrpcAnswer(
                        NonGrpcAnswer::read(response, by).await,
                    ));
                }
                Err(mut error) => match error.take_message() {
                    Some(unsent) => {
                        in_flight.mark_closed();
                        request = unsent;
                    }
                    None => {
                        let error = error.into_error();
                        let processed = !failure::never_processed(&error);
                        let status = failure::status(error, self.authority(), "before it answered");
                        return Err(if processed {
                            SendError::Failed(status)
                        } else {
                            SendError::NeverProcessed(status)
                        });
                    }
                },
            }
        }
        Err(SendError::Failed(Status::unavailable(format!(
            "connections to {} kept closing before the call could be sent",
            self.authority()
        ))))
    }

    fn too_late(&self, deadline: Deadline) -> Status {
        Status::deadline_exceeded(format!(
            "the call to {} did not finish within its deadline of {:?}",
            self.authority(),
            deadline.total()
        ))
    }

    /// The pool of the caller's runtime: a scan of a one-element list on the hot path.
    fn pool(&self) -> Result<Arc<Pool>, Status> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Status::internal("a CloudRunChannel must be called from within a Tokio runtime")
        })?;
        let id = runtime.id();
        if let Some(entry) = self.shared.pools.load().iter().find(|p| p.runtime == id) {
            return Ok(Arc::clone(&entry.pool));
        }
        Ok(self.add_pool(&runtime))
    }

    /// Cold path: the first call from a runtime. Also forgets the pools of runtimes now gone.
    fn add_pool(&self, runtime: &tokio::runtime::Handle) -> Arc<Pool> {
        let shared = &*self.shared;
        let _one_at_a_time = lock(&shared.adding);
        let id = runtime.id();
        let pools = shared.pools.load_full();
        if let Some(entry) = pools.iter().find(|p| p.runtime == id) {
            return Arc::clone(&entry.pool);
        }
        let alive = Arc::new(());
        let runtime_alive = Arc::downgrade(&alive);
        runtime.spawn(async move {
            let _alive = alive;
            std::future::pending::<()>().await
        });
        let pool = Arc::new(Pool::new(Arc::clone(&shared.pool_settings)));
        let mut live: Vec<_> = pools
            .iter()
            .filter(|p| p.runtime_alive.strong_count() > 0)
            .cloned()
            .collect();
        live.push(RuntimePool {
            runtime: id,
            runtime_alive,
            pool: Arc::clone(&pool),
        });
        shared.pools.store(Arc::new(live));
        pool
    }
}
