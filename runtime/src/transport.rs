//! HTTP/2 to one host: hyper's pooled client over rustls, dialling an optional fixed address.
//!
//! Each Tokio runtime that sends through a transport gets its own connections, whose tasks run on
//! it: when one runtime shuts down only its own connections die, and other runtimes' calls are
//! untouched. So one process-wide channel serves runtimes that come and go, as `#[tokio::test]`s
//! do. A sentinel task per runtime tells when it is gone, so that its pool can be dropped.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::TokioExecutor;
use tonic::Status;
use tonic::body::Body;
use tower_service::Service;

use crate::auth::{BoxError, grpc_timeout};

type Connector = HttpsConnector<HttpConnector<Resolve>>;

/// Where to dial: the host's addresses from DNS, or one fixed address (`connect_to`).
#[derive(Clone)]
pub(crate) struct Resolve {
    fixed: Option<SocketAddr>,
    system: GaiResolver,
}

impl Service<Name> for Resolve {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        match self.fixed {
            Some(addr) => Box::pin(std::future::ready(Ok(vec![addr].into_iter()))),
            None => {
                let lookup = self.system.call(name);
                Box::pin(async move { Ok(lookup.await?.collect::<Vec<_>>().into_iter()) })
            }
        }
    }
}

pub(crate) struct Settings {
    pub(crate) scheme: Scheme,
    pub(crate) authority: Authority,
    pub(crate) connect_to: Option<SocketAddr>,
    pub(crate) tls: rustls::ClientConfig,
    pub(crate) timeout: Option<Duration>,
    pub(crate) connect_timeout: Duration,
    pub(crate) connections: usize,
}

/// Sends requests to the host. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Transport {
    shared: Arc<Shared>,
}

struct Shared {
    connector: Connector,
    connections: usize,
    /// One pool per runtime; almost always exactly one.
    pools: ArcSwap<Vec<Arc<Pool>>>,
    adding: Mutex<()>,
    next: AtomicUsize,
    scheme: Scheme,
    authority: Authority,
    timeout: Option<Duration>,
}

/// The clients whose connections live on one runtime.
struct Pool {
    runtime: tokio::runtime::Id,
    clients: Vec<Client<Connector, Body>>,
    runtime_alive: Weak<()>,
}

impl Transport {
    pub(crate) fn new(settings: Settings) -> Self {
        let mut http = HttpConnector::new_with_resolver(Resolve {
            fixed: settings.connect_to,
            system: GaiResolver::new(),
        });
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(settings.tls)
            .https_or_http()
            .enable_http2()
            .wrap_connector(http);
        Self {
            shared: Arc::new(Shared {
                connector,
                connections: settings.connections.max(1),
                pools: ArcSwap::default(),
                adding: Mutex::new(()),
                next: AtomicUsize::new(0),
                scheme: settings.scheme,
                authority: settings.authority,
                timeout: settings.timeout,
            }),
        }
    }

    pub(crate) fn authority(&self) -> &Authority {
        &self.shared.authority
    }

    pub(crate) fn scheme(&self) -> &Scheme {
        &self.shared.scheme
    }
}

impl Shared {
    /// Sends on the caller's runtime's pool: a scan of a one-element list on the hot path.
    fn request(&self, request: Request<Body>) -> Result<ResponseFuture, Status> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Status::internal("a CloudRunChannel must be called from within a Tokio runtime")
        })?;
        let id = runtime.id();
        if let Some(pool) = self.pools.load().iter().find(|p| p.runtime == id) {
            return Ok(self.client(pool).request(request));
        }
        let pool = self.add_pool(&runtime);
        Ok(self.client(&pool).request(request))
    }

    fn client<'p>(&self, pool: &'p Pool) -> &'p Client<Connector, Body> {
        match pool.clients.len() {
            1 => &pool.clients[0],
            n => &pool.clients[self.next.fetch_add(1, Ordering::Relaxed) % n],
        }
    }

    /// Cold path: the first call from a runtime. Also forgets the pools of runtimes now gone.
    fn add_pool(&self, runtime: &tokio::runtime::Handle) -> Arc<Pool> {
        let _one_at_a_time = crate::sync::lock(&self.adding);
        let id = runtime.id();
        let pools = self.pools.load_full();
        if let Some(pool) = pools.iter().find(|p| p.runtime == id) {
            return Arc::clone(pool);
        }
        let alive = Arc::new(());
        let runtime_alive = Arc::downgrade(&alive);
        runtime.spawn(async move {
            let _alive = alive;
            std::future::pending::<()>().await
        });
        let clients = (0..self.connections)
            .map(|_| {
                Client::builder(TokioExecutor::new())
                    .http2_only(true)
                    .build(self.connector.clone())
            })
            .collect();
        let pool = Arc::new(Pool {
            runtime: id,
            clients,
            runtime_alive,
        });
        let mut live: Vec<_> = pools
            .iter()
            .filter(|p| p.runtime_alive.strong_count() > 0)
            .cloned()
            .collect();
        live.push(Arc::clone(&pool));
        self.pools.store(Arc::new(live));
        pool
    }
}

impl Service<Request<Body>> for Transport {
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = TransportFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // hyper's client queues on its own pool; it is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Body>) -> TransportFuture {
        let shared = &*self.shared;
        let mut parts = std::mem::take(request.uri_mut()).into_parts();
        parts.scheme = Some(shared.scheme.clone());
        parts.authority = Some(shared.authority.clone());
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        *request.uri_mut() = Uri::from_parts(parts).unwrap_or_default();
        *request.version_mut() = Version::HTTP_2;
        let deadline = match (grpc_timeout(request.headers()), shared.timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let inner = match shared.request(request) {
            Ok(inner) => inner,
            Err(status) => return TransportFuture::failed(status, self.clone()),
        };
        TransportFuture {
            inner: Some(inner),
            failed: None,
            sleep: deadline.map(tokio::time::sleep),
            deadline,
            transport: self.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request under way, bounded by its deadline.
    pub(crate) struct TransportFuture {
        #[pin]
        inner: Option<ResponseFuture>,
        failed: Option<Status>,
        #[pin]
        sleep: Option<tokio::time::Sleep>,
        deadline: Option<Duration>,
        transport: Transport,
    }
}

impl TransportFuture {
    fn failed(status: Status, transport: Transport) -> Self {
        Self {
            inner: None,
            failed: Some(status),
            sleep: None,
            deadline: None,
            transport,
        }
    }
}

impl Future for TransportFuture {
    type Output = Result<Response<Incoming>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            let status = this
                .failed
                .take()
                .unwrap_or_else(|| Status::internal("polled after completion"));
            return Poll::Ready(Err(Box::new(status)));
        };
        if let Poll::Ready(result) = inner.poll(cx) {
            return Poll::Ready(result.map_err(|e| transport_error(this.transport, e)));
        }
        if let Some(sleep) = this.sleep.as_pin_mut()
            && sleep.poll(cx).is_ready()
        {
            return Poll::Ready(Err(Box::new(Status::deadline_exceeded(format!(
                "{} did not answer within the deadline of {:?}",
                this.transport.authority(),
                this.deadline.unwrap_or_default()
            )))));
        }
        Poll::Pending
    }
}

/// Failures to send are `UNAVAILABLE` (gRPC's "transient, retry with backoff"), unless the
/// request body itself failed with a status, which is passed on as it is.
fn transport_error(transport: &Transport, error: hyper_util::client::legacy::Error) -> BoxError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(cause) = source {
        if let Some(status) = cause.downcast_ref::<Status>() {
            return Box::new(Status::new(status.code(), status.message()));
        }
        source = cause.source();
    }
    let what = if error.is_connect() {
        "cannot connect to"
    } else {
        "lost the connection to"
    };
    let mut status = Status::unavailable(format!(
        "{what} {}: {}",
        transport.authority(),
        crate::error::chain(&error)
    ));
    status.set_source(Arc::new(error));
    Box::new(status)
}
