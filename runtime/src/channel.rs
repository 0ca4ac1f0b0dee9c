//! `CloudRunChannel`: an HTTP/2 channel to one Cloud Run host that puts a fresh ID token on
//! every request.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{Request, Response};
use hyper::body::Incoming;
use tonic::Status;
use tonic::body::Body;
use tower_layer::Layer;
use tower_service::Service;

use crate::Error;
use crate::auth::{AuthFuture, AuthHeader, AuthLayer, AuthService, BoxError};
use crate::token::{Clock, IdTokenSource, RefreshPolicy, TokenCache, default_source};
use crate::transport::{Settings, Transport, TransportFuture};

/// A channel to a Cloud Run service that authenticates every request with an ID token.
///
/// Use it as the transport of any tonic-generated client (`FooClient::new(channel)`). Clones
/// are cheap and share the connections and the token cache.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cloud_run_grpc::Error> {
/// use std::time::Duration;
/// use cloud_run_grpc::CloudRunChannel;
///
/// let channel = CloudRunChannel::builder("bookstore-abc123-ew.a.run.app")
///     .timeout(Duration::from_secs(30))
///     .build()?; // no I/O: connects and fetches a token on first use
/// assert_eq!(channel.audience(), "https://bookstore-abc123-ew.a.run.app");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CloudRunChannel {
    state: State,
}

#[derive(Clone)]
enum State {
    Ready(AuthService<Transport>),
    /// Made by [`crate::shared`] from a target that is not valid: every call says why.
    Broken(Arc<Broken>),
}

struct Broken {
    target: String,
    error: Error,
    message: String,
    cache: TokenCache,
}

/// The token source of a broken channel: it has nothing to fetch for.
#[derive(Debug)]
struct NoSource(String);

impl IdTokenSource for NoSource {
    fn fetch<'a>(&'a self, _: &'a str) -> crate::token::TokenFuture<'a> {
        Box::pin(async move {
            Err(crate::token::TokenError::Unsupported {
                source_name: self.name(),
                reason: self.0.clone(),
                source: None,
            })
        })
    }

    fn name(&self) -> String {
        "misconfigured channel".into()
    }
}

impl CloudRunChannel {
    /// Starts building a channel to `host` (e.g. `bookstore-abc123-ew.a.run.app`), over TLS on
    /// port 443, with tokens for the audience `https://{host}`.
    pub fn builder(host: impl Into<String>) -> ChannelBuilder {
        ChannelBuilder::new(host.into())
    }

    /// Starts building a channel from a service URL: `https://host[:port]`, or
    /// `http://127.0.0.1:port` (plaintext, loopback only) for a local server.
    pub fn from_url(url: &str) -> Result<ChannelBuilder, Error> {
        let target = cloud_run_grpc_endpoint::url(url).map_err(|problem| Error::InvalidUrl {
            url: url.to_owned(),
            reason: problem.to_string(),
        })?;
        let mut builder = ChannelBuilder::new(target.authority());
        builder.plaintext = target.scheme == cloud_run_grpc_endpoint::Scheme::Http;
        Ok(builder)
    }

    /// A channel whose every call fails with `error`; `origin` says where the target came
    /// from (e.g. an environment variable), for the message.
    pub(crate) fn broken(target: &str, error: Error, origin: Option<&str>) -> Self {
        let message = match origin {
            Some(origin) => format!("{error} (the URL came from {origin})"),
            None => error.to_string(),
        };
        let cache = TokenCache::new(NoSource(message.clone()), "");
        Self {
            state: State::Broken(Arc::new(Broken {
                target: target.to_owned(),
                error,
                message,
                cache,
            })),
        }
    }

    /// The host requests go to (`:authority`), with the port if one was given.
    pub fn host(&self) -> &str {
        match &self.state {
            State::Ready(service) => service.get_ref().authority().as_str(),
            State::Broken(broken) => &broken.target,
        }
    }

    /// The URL calls go to: `https://host[:port]` (or `http://` to a loopback address).
    pub fn url(&self) -> String {
        match &self.state {
            State::Ready(service) => {
                let transport = service.get_ref();
                format!("{}://{}", transport.scheme(), transport.authority())
            }
            State::Broken(broken) => broken.target.clone(),
        }
    }

    /// The audience of the tokens sent.
    pub fn audience(&self) -> &str {
        self.token_cache().audience()
    }

    /// The token cache this channel reads.
    pub fn token_cache(&self) -> &TokenCache {
        match &self.state {
            State::Ready(service) => service.token_cache(),
            State::Broken(broken) => &broken.cache,
        }
    }

    /// Whether both channels read the same token cache (as channels from [`crate::shared`]
    /// for the same audience do).
    pub fn shares_token_cache_with(&self, other: &CloudRunChannel) -> bool {
        self.token_cache().same_as(other.token_cache())
    }

    /// Forgets the cached token, so the next call fetches a new one.
    pub fn invalidate_token(&self) {
        self.token_cache().invalidate()
    }

    /// Connects and fetches the first token, both at once, so that the first call does not
    /// wait for either. Optional: a channel connects and fetches on first use anyway.
    ///
    /// Connecting sends one request without a token (`GET /`), which the front end rejects
    /// before it reaches the service.
    pub async fn warm_up(&self) -> Result<(), Error> {
        let token = async {
            self.token_cache()
                .token()
                .await
                .map(drop)
                .map_err(|e| Error::Token(crate::token::TokenError::clone(&e)))
        };
        let connect = async {
            let mut transport = match &self.state {
                State::Ready(service) => service.get_ref().clone(),
                State::Broken(broken) => return Err(broken.error.clone()),
            };
            let request = Request::get("/").body(Body::empty()).unwrap_or_default();
            match transport.call(request).await {
                Ok(_) => Ok(()),
                Err(error) => Err(Error::Connect {
                    host: self.host().to_owned(),
                    source: Arc::from(error),
                }),
            }
        };
        let (token, connect) = tokio::join!(token, connect);
        token.and(connect)
    }
}

impl fmt::Debug for CloudRunChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudRunChannel")
            .field("host", &self.host())
            .field("audience", &self.audience())
            .field("token_source", &self.token_cache().source_name())
            .finish()
    }
}

impl Service<Request<Body>> for CloudRunChannel {
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match &mut self.state {
            State::Ready(service) => service.poll_ready(cx),
            State::Broken(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, request: Request<Body>) -> ResponseFuture {
        let inner = match &mut self.state {
            State::Ready(service) => Inner::Ready {
                future: service.call(request),
            },
            State::Broken(broken) => Inner::Broken {
                status: Some(Status::invalid_argument(broken.message.clone())),
            },
        };
        ResponseFuture { inner }
    }
}

pin_project_lite::pin_project! {
    /// The future of a [`CloudRunChannel`] call.
    pub struct ResponseFuture {
        #[pin]
        inner: Inner,
    }
}

pin_project_lite::pin_project! {
    #[project = InnerProj]
    enum Inner {
        Ready { #[pin] future: AuthFuture<TransportFuture, Incoming> },
        Broken { status: Option<Status> },
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Incoming>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().inner.project() {
            InnerProj::Ready { future } => future.poll(cx),
            InnerProj::Broken { status } => {
                let status = status
                    .take()
                    .unwrap_or_else(|| Status::internal("polled after completion"));
                Poll::Ready(Err(Box::new(status)))
            }
        }
    }
}

/// Builds a [`CloudRunChannel`]; see [`CloudRunChannel::builder`]. `build` does no I/O.
pub struct ChannelBuilder {
    host: String,
    audience: Option<String>,
    source: Option<Box<dyn IdTokenSource>>,
    cache: Option<TokenCache>,
    policy: Option<RefreshPolicy>,
    clock: Option<Arc<dyn Clock>>,
    connect_to: Option<SocketAddr>,
    ca_certificates: Vec<Vec<u8>>,
    plaintext: bool,
    timeout: Option<Duration>,
    connect_timeout: Duration,
    header: AuthHeader,
    connections: usize,
}

impl ChannelBuilder {
    pub(crate) fn for_host(host: &str) -> Self {
        Self::new(host.to_owned())
    }

    /// The audience `build` will use (the cache's, the one set, or `https://{host}`).
    pub(crate) fn effective_audience(&self) -> Result<String, Error> {
        if let Some(cache) = &self.cache {
            return Ok(cache.audience().to_owned());
        }
        match &self.audience {
            Some(audience) => Ok(audience.clone()),
            None => Ok(parse_host(&self.host)?.default_audience()),
        }
    }

    fn new(host: String) -> Self {
        Self {
            host,
            audience: None,
            source: None,
            cache: None,
            policy: None,
            clock: None,
            connect_to: None,
            ca_certificates: Vec::new(),
            plaintext: false,
            timeout: None,
            connect_timeout: Duration::from_secs(10),
            header: AuthHeader::Authorization,
            connections: 1,
        }
    }

    /// The tokens' audience; default `https://{host}` (no port). Set it when the service has a
    /// custom audience, e.g. when called through a custom domain.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Where tokens come from; default [`default_source()`] (Application Default Credentials).
    pub fn token_source(mut self, source: impl IdTokenSource) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Shares an existing token cache (its audience and source win over `audience` and
    /// `token_source`).
    pub fn token_cache(mut self, cache: TokenCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// When to refresh tokens and how to retry failed fetches.
    pub fn refresh_policy(mut self, policy: RefreshPolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The clock the token cache reads (tests inject a [`crate::token::ManualClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Dials `addr` instead of resolving the host, keeping the host for TLS (SNI and
    /// certificate name), `:authority` and the audience: for emulators, proxies and tests.
    pub fn connect_to(mut self, addr: SocketAddr) -> Self {
        self.connect_to = Some(addr);
        self
    }

    /// Trusts this CA (PEM) besides the platform's roots.
    pub fn ca_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_certificates.push(pem.into());
        self
    }

    /// Speaks HTTP/2 without TLS. Refused by `build` unless the address dialled is loopback:
    /// a token never travels in plaintext over a network.
    pub fn plaintext(mut self) -> Self {
        self.plaintext = true;
        self
    }

    /// The deadline for every call that has none of its own (tonic's `Request::set_timeout`
    /// wins when shorter).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How long dialling may take; default 10 seconds.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Which header carries the token; default `authorization`.
    pub fn header(mut self, header: AuthHeader) -> Self {
        self.header = header;
        self
    }

    /// Spreads calls over `n` HTTP/2 connections (default 1): Cloud Run limits the concurrent
    /// streams of one connection.
    pub fn connections(mut self, n: usize) -> Self {
        self.connections = n.max(1);
        self
    }

    /// Builds the channel. Does no I/O: it connects and fetches a token on first use.
    pub fn build(self) -> Result<CloudRunChannel, Error> {
        let target = parse_host(&self.host)?;
        let authority =
            Authority::from_str(&target.authority()).map_err(|_| Error::InvalidHost {
                host: self.host.clone(),
                reason: "it is not a valid authority".into(),
            })?;
        if self.plaintext {
            let dialled = match self.connect_to {
                Some(addr) => addr.ip().is_loopback(),
                None => target.is_loopback(),
            };
            if !dialled {
                let address = self
                    .connect_to
                    .map_or_else(|| authority.to_string(), |a| a.to_string());
                return Err(Error::PlaintextNotLoopback { address });
            }
        }
        let tls = if self.plaintext {
            crate::tls::unused_config()?
        } else {
            let mut extra = Vec::new();
            for pem in &self.ca_certificates {
                extra.extend(crate::tls::parse_pem(pem)?);
            }
            crate::tls::client_config(&extra)?
        };
        let audience = self.effective_audience()?;
        let cache = match self.cache {
            Some(cache) => cache,
            None => {
                let source = self.source.unwrap_or_else(|| Box::new(default_source()));
                let mut builder = TokenCache::builder(source, audience);
                if let Some(policy) = self.policy {
                    builder = builder.policy(policy);
                }
                if let Some(clock) = self.clock {
                    builder = builder.clock(clock);
                }
                builder.build()
            }
        };
        let transport = Transport::new(Settings {
            scheme: if self.plaintext {
                Scheme::HTTP
            } else {
                Scheme::HTTPS
            },
            authority,
            connect_to: self.connect_to,
            tls,
            timeout: self.timeout,
            connect_timeout: self.connect_timeout,
            connections: self.connections,
        });
        let mut layer = AuthLayer::new(cache).header(self.header);
        if let Some(timeout) = self.timeout {
            layer = layer.wait_limit(timeout);
        }
        Ok(CloudRunChannel {
            state: State::Ready(layer.layer(transport)),
        })
    }
}

impl fmt::Debug for ChannelBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelBuilder")
            .field("host", &self.host)
            .field("audience", &self.audience)
            .field("connect_to", &self.connect_to)
            .field("plaintext", &self.plaintext)
            .field("timeout", &self.timeout)
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

/// A bare host, optionally with a port: no scheme, no path, no user info.
fn parse_host(host: &str) -> Result<cloud_run_grpc_endpoint::Target, Error> {
    cloud_run_grpc_endpoint::host(host).map_err(|problem| Error::InvalidHost {
        host: host.to_owned(),
        reason: problem.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn audience_defaults_to_https_host_without_port() {
        let channel = CloudRunChannel::builder("svc-abc.a.run.app:8443")
            .build()
            .unwrap();
        assert_eq!(channel.audience(), "https://svc-abc.a.run.app");
        assert_eq!(channel.host(), "svc-abc.a.run.app:8443");
    }

    #[test]
    fn plaintext_only_to_loopback() {
        let refused = CloudRunChannel::builder("svc.a.run.app")
            .plaintext()
            .build();
        assert!(
            matches!(refused, Err(Error::PlaintextNotLoopback { .. })),
            "{refused:?}"
        );
        let refused = CloudRunChannel::builder("localhost")
            .connect_to("10.0.0.7:8080".parse().unwrap())
            .plaintext()
            .build();
        assert!(
            matches!(refused, Err(Error::PlaintextNotLoopback { .. })),
            "{refused:?}"
        );
        let refused = CloudRunChannel::from_url("http://svc.example.com");
        let message = refused.unwrap_err().to_string();
        assert!(
            message.contains("plaintext") && message.contains("svc.example.com"),
            "{message}"
        );
        for ok in [
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
            "http://localhost:1",
        ] {
            assert!(
                CloudRunChannel::from_url(ok).unwrap().build().is_ok(),
                "{ok}"
            );
        }
        assert!(
            CloudRunChannel::builder("svc.test")
                .connect_to("127.0.0.1:1".parse().unwrap())
                .plaintext()
                .build()
                .is_ok()
        );
    }

    /// The table the attribute runs too, so the two front doors cannot disagree.
    #[test]
    fn hosts_and_urls_follow_the_shared_table() {
        use cloud_run_grpc_endpoint::{CASES, Front};
        for case in CASES {
            let built = match case.front {
                Front::Host => CloudRunChannel::builder(case.input).build(),
                Front::Url => CloudRunChannel::from_url(case.input).and_then(ChannelBuilder::build),
            };
            let got = built.map(|channel| (channel.url(), channel.audience().to_owned()));
            case.check(got).unwrap_or_else(|why| panic!("{why}"));
        }
    }

    #[test]
    fn bad_hosts_and_urls_say_what_to_write() {
        for host in [
            "",
            "https://svc.a.run.app",
            "svc.a.run.app/path",
            "user@svc",
            "sp ace",
        ] {
            let error = CloudRunChannel::builder(host).build().unwrap_err();
            assert!(
                matches!(error, Error::InvalidHost { .. }),
                "{host}: {error:?}"
            );
            assert!(error.to_string().contains("e.g."), "{error}");
        }
        for url in ["svc.a.run.app", "ftp://svc", "https://svc/path", "https://"] {
            let error = CloudRunChannel::from_url(url)
                .and_then(ChannelBuilder::build)
                .unwrap_err();
            assert!(
                matches!(error, Error::InvalidUrl { .. } | Error::InvalidHost { .. }),
                "{url}: {error:?}"
            );
        }
        let error = CloudRunChannel::builder("svc")
            .ca_certificate("not pem")
            .build()
            .unwrap_err();
        assert!(matches!(error, Error::CaCertificate(_)), "{error:?}");
    }
}
