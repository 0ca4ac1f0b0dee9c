//! [`ChannelBuilder`]: every option of a [`CloudRunChannel`], checked by `build()` without I/O.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{Request, Response};
use tower_service::Service;

use super::layer::Layered;
use super::{ChannelService, CloudRunChannel};
use crate::auth::AuthHeader;
use crate::deadline::A_YEAR;
use crate::token::{Clock, IdTokenSource, RefreshPolicy, TokenCache, default_source};
use crate::transport::{KeepAlive, Settings, TcpLiveness, Transport};
use crate::{BoxError, Error};

/// Builds a [`CloudRunChannel`]; see [`CloudRunChannel::builder`]. By-value setters, then
/// `build()`, which checks everything and does no I/O.
///
/// ```
/// use std::time::Duration;
/// use cloud_run_grpc::{AuthHeader, CloudRunChannel};
/// use cloud_run_grpc::token::MetadataServer;
///
/// let channel = CloudRunChannel::builder("bookstore-abc123-ew.a.run.app")
///     .audience("https://books.example.com") // a custom audience of the service
///     .token_source(MetadataServer::new())  // the default is Application Default Credentials
///     .header(AuthHeader::XServerlessAuthorization) // leave `authorization` to the app
///     .timeout(Duration::from_secs(30))    // every call, streams included
///     .connect_timeout(Duration::from_secs(5))
///     .keep_alive(Duration::from_secs(60), Duration::from_secs(20))
///     .idle_timeout(Duration::from_secs(120))
///     .connections(2)                      // at least two HTTP/2 connections
///     .max_connections(16)                 // at most sixteen, when calls fill them
///     .build()?;
/// assert_eq!(channel.audience(), "https://books.example.com");
/// # Ok::<(), cloud_run_grpc::Error>(())
/// ```
///
/// For tests and emulators, dial another address while keeping the host's name and audience,
/// and trust the emulator's CA:
///
/// ```no_run
/// use cloud_run_grpc::CloudRunChannel;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ca_pem = std::fs::read("emulator-ca.pem")?; // e.g. the testkit's `FrontEnd::ca_certificate_pem()`
/// let channel = CloudRunChannel::builder("bookstore-abc123-ew.a.run.app")
///     .connect_to("127.0.0.1:8443".parse()?)
///     .ca_certificate(ca_pem)
///     .build()?;
/// assert_eq!(channel.audience(), "https://bookstore-abc123-ew.a.run.app");
/// # Ok(()) }
/// ```
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
    keep_alive: Option<(Duration, Duration)>,
    idle_timeout: Duration,
    header: AuthHeader,
    connections: usize,
    max_connections: usize,
    layer: Option<Box<dyn FnOnce(ChannelService) -> Layered + Send>>,
}

impl ChannelBuilder {
    pub(crate) fn new(host: String) -> Self {
        ChannelBuilder {
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
            // Google's front ends accept a PING every 30 s (googleapis/java-bigtable#528, as
            // Bigtable's clients set it: 30 s and 10 s); a silent peer is found within 40 s.
            keep_alive: Some((Duration::from_secs(30), Duration::from_secs(10))),
            // Below the idle timeouts of common NATs and load balancers (Azure: 4 min, AWS NAT
            // gateway: 350 s, Google Cloud NAT: 20 min), so a call never finds a forgotten flow.
            idle_timeout: Duration::from_secs(180),
            header: AuthHeader::Authorization,
            connections: 1,
            max_connections: 8,
            layer: None,
        }
    }

    pub(crate) fn from_url(url: &str) -> Result<Self, Error> {
        let target = cloud_run_grpc_endpoint::url(url).map_err(|problem| Error::InvalidUrl {
            url: cloud_run_grpc_endpoint::redacted(url),
            reason: problem.to_string(),
        })?;
        let mut builder = ChannelBuilder::new(target.authority());
        builder.plaintext = target.scheme == cloud_run_grpc_endpoint::Scheme::Http;
        Ok(builder)
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
    /// certificate name), `:authority` and the audience: for emulators and tests. No proxy is
    /// used then.
    pub fn connect_to(mut self, addr: SocketAddr) -> Self {
        self.connect_to = Some(addr);
        self
    }

    /// Trusts this CA (PEM) besides the platform's roots: the way to test against an emulator
    /// with its own CA (the testkit's `FrontEnd::ca_certificate_pem()`). `SSL_CERT_FILE` and
    /// `SSL_CERT_DIR` replace the platform's roots instead, and are read when `build()` runs.
    pub fn ca_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_certificates.push(pem.into());
        self
    }

    /// Speaks HTTP/2 without TLS. Refused by `build` unless the host or `connect_to` address is
    /// loopback, and checked again on every dial against the address actually connected to: a
    /// token never travels in plaintext over a network.
    pub fn plaintext(mut self) -> Self {
        self.plaintext = true;
        self
    }

    /// The deadline of every call that has no sooner one of its own (tonic's
    /// `Request::set_timeout`, a wrapper's `with_timeout`): like any gRPC deadline it bounds the
    /// whole call — waiting for a token, connecting, and the response, streams included — and
    /// is sent to the server as `grpc-timeout`. Default: none; liveness (HTTP/2 keep-alive) and
    /// Cloud Run's own request timeout (at most an hour) bound calls without one.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout.min(A_YEAR));
        self
    }

    /// How long connecting may take — TCP, the proxy's `CONNECT` if any, and the TLS
    /// handshake together; default 10 seconds.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout.min(A_YEAR);
        self
    }

    /// HTTP/2 keep-alive while calls are in flight: a PING every `interval`, the connection
    /// declared dead (its calls failing `UNAVAILABLE`, new calls dialling afresh) when one goes
    /// unanswered for `timeout`. Default 30 s and 10 s: a silent peer is found within 40 s.
    ///
    /// Google's front ends accept a PING every 30 s. A gRPC server answers pings it finds too
    /// frequent with `GOAWAY ENHANCE_YOUR_CALM` ("too_many_pings"), after which the channel
    /// doubles the interval, as grpc-go's client does. When calling a grpc-go server directly
    /// (not through Cloud Run), set `interval` to at least its keep-alive enforcement
    /// `MinTime` (5 minutes unless the server lowered it).
    pub fn keep_alive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keep_alive = Some((
            interval.clamp(Duration::from_millis(1), A_YEAR),
            timeout.min(A_YEAR),
        ));
        self
    }

    /// No HTTP/2 keep-alive: a silent peer is then found only by TCP (keep-alive probes and,
    /// on Linux, `TCP_USER_TIMEOUT`) or by the calls' deadlines.
    pub fn without_keep_alive(mut self) -> Self {
        self.keep_alive = None;
        self
    }

    /// How long a connection may sit without calls before it is closed, so that the next call
    /// does not find a flow a NAT or load balancer has forgotten; default 3 minutes.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout.clamp(Duration::from_millis(1), A_YEAR);
        self
    }

    /// Which header carries the token; default `authorization`.
    pub fn header(mut self, header: AuthHeader) -> Self {
        self.header = header;
        self
    }

    /// Keeps at least `n` HTTP/2 connections (default 1) and spreads calls over them. The
    /// connections beyond the first are dialled in the background; when such a dial fails,
    /// the next waits 1 s, doubling up to 2 minutes, as gRPC's connection backoff does.
    pub fn connections(mut self, n: usize) -> Self {
        self.connections = n.max(1);
        self
    }

    /// Opens at most `n` connections (default 8): when every connection carries as many calls
    /// as the server allows at once (`MAX_CONCURRENT_STREAMS`, 100 on Google's front ends),
    /// another is opened rather than making calls wait; at the cap, they wait.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Runs a tower layer of yours under the channel (request ids, trace propagation,
    /// metrics): every call of every client on the channel — generated wrappers and
    /// `#[cloud_run_client]` structs included — passes through it before the token is added,
    /// so it never sees the token.
    ///
    /// ```
    /// use cloud_run_grpc::CloudRunChannel;
    /// use tower_layer::layer_fn;
    ///
    /// #[derive(Clone)]
    /// struct RequestId<S>(S);
    ///
    /// impl<S, B> tower_service::Service<http::Request<B>> for RequestId<S>
    /// where
    ///     S: tower_service::Service<http::Request<B>>,
    /// {
    ///     type Response = S::Response;
    ///     type Error = S::Error;
    ///     type Future = S::Future;
    ///     fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
    ///         self.0.poll_ready(cx)
    ///     }
    ///     fn call(&mut self, mut request: http::Request<B>) -> S::Future {
    ///         request.headers_mut().insert("x-request-id", http::HeaderValue::from_static("r-1"));
    ///         self.0.call(request)
    ///     }
    /// }
    ///
    /// let channel = CloudRunChannel::builder("bookstore-abc123-ew.a.run.app")
    ///     .layer(layer_fn(RequestId))
    ///     .build()?;
    /// # Ok::<(), cloud_run_grpc::Error>(())
    /// ```
    pub fn layer<L, S, B>(mut self, layer: L) -> Self
    where
        L: tower_layer::Layer<ChannelService, Service = S> + Send + 'static,
        S: Service<Request<tonic::body::Body>, Response = Response<B>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.layer = Some(Box::new(move |core| Layered::new(&layer, core)));
        self
    }

    /// Runs a tonic interceptor under the channel, before the token is added (see
    /// [`layer`](Self::layer)): it sees and may change each call's metadata, or refuse the
    /// call with a status.
    ///
    /// ```
    /// use cloud_run_grpc::CloudRunChannel;
    ///
    /// let channel = CloudRunChannel::builder("bookstore-abc123-ew.a.run.app")
    ///     .interceptor(|mut request: tonic::Request<()>| {
    ///         request.metadata_mut().insert("x-tenant", "acme".parse().unwrap());
    ///         Ok(request)
    ///     })
    ///     .build()?;
    /// # Ok::<(), cloud_run_grpc::Error>(())
    /// ```
    pub fn interceptor<I>(self, interceptor: I) -> Self
    where
        I: tonic::service::Interceptor + Clone + Send + Sync + 'static,
    {
        self.layer(tonic::service::InterceptorLayer::new(interceptor))
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
            let loopback = match self.connect_to {
                Some(addr) => addr.ip().is_loopback(),
                None => target.is_loopback(),
            };
            if !loopback {
                let address = self
                    .connect_to
                    .map_or_else(|| authority.to_string(), |a| a.to_string());
                return Err(Error::PlaintextNotLoopback { address });
            }
        }
        let (tls, roots) = if self.plaintext {
            (crate::tls::unused_config()?, String::new())
        } else {
            let mut extra = Vec::new();
            for pem in &self.ca_certificates {
                extra.extend(crate::tls::parse_pem(pem)?);
            }
            crate::tls::client_config_and_origin(&extra)?
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
            roots,
            connect_timeout: self.connect_timeout,
            tcp: TcpLiveness {
                keepalive_idle: Duration::from_secs(30),
                keepalive_interval: Duration::from_secs(10),
                keepalive_retries: 3,
                // As Google's Go libraries set it for DirectPath connections.
                user_timeout: Duration::from_secs(20),
            },
            keepalive: self
                .keep_alive
                .map(|(interval, timeout)| KeepAlive::new(interval, timeout)),
            idle_timeout: self.idle_timeout,
            min_connections: self.connections,
            max_connections: self.max_connections,
        });
        let core = ChannelService {
            cache,
            header: self.header.name(),
            transport,
            timeout: self.timeout,
        };
        let layered = self.layer.map(|layer| layer(core.clone()));
        Ok(CloudRunChannel::ready(core, layered))
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
        host: cloud_run_grpc_endpoint::redacted(host),
        reason: problem.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CloudRunChannel;

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
    fn credentials_in_a_url_are_refused_and_never_printed() {
        let from_url = CloudRunChannel::from_url("https://ada:s3cret@svc.a.run.app").unwrap_err();
        let from_host = CloudRunChannel::builder("ada:s3cret@svc.a.run.app")
            .build()
            .unwrap_err();
        for error in [from_url, from_host] {
            let shown = format!("{error} {error:?}");
            assert!(shown.contains("user name or password"), "{shown}");
            assert!(
                !shown.contains("s3cret") && !shown.contains("ada"),
                "{shown}"
            );
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
