//! Dialling one connection to the host: TCP (to `connect_to` or the host's addresses, or
//! through an HTTPS proxy with `CONNECT`), then TLS with ALPN `h2` — all of it within one bound,
//! the builder's connect timeout.

use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use http::uri::{Authority, Scheme};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tonic::Status;
use tower_service::Service;

use crate::error::chain;
use crate::proxy::{proxy_for, tunnel};

/// A connected, possibly encrypted, byte stream to the host.
pub(crate) type Stream = MaybeHttpsStream<TokioIo<TcpStream>>;

/// TCP-level liveness for a peer that stops acknowledging: keep-alive probes on idle sockets
/// and, on Linux, `TCP_USER_TIMEOUT` for data left unacknowledged.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TcpLiveness {
    pub(crate) keepalive_idle: Duration,
    pub(crate) keepalive_interval: Duration,
    pub(crate) keepalive_retries: u32,
    pub(crate) user_timeout: Duration,
}

/// Dials the host.
#[derive(Clone)]
pub(crate) struct Dialer {
    direct: HttpsConnector<HttpConnector<Resolve>>,
    proxied: Option<(HttpsConnector<Tunnel<HttpConnector>>, Authority)>,
    target: Uri,
    authority: Authority,
    plaintext: bool,
    timeout: Duration,
    roots: Arc<str>,
}

/// What a [`Dialer`] needs.
pub(crate) struct DialerSettings {
    pub(crate) scheme: Scheme,
    pub(crate) authority: Authority,
    pub(crate) connect_to: Option<SocketAddr>,
    pub(crate) tls: rustls::ClientConfig,
    /// Where the trusted roots came from, for a certificate error's message.
    pub(crate) roots: String,
    pub(crate) timeout: Duration,
    pub(crate) tcp: TcpLiveness,
}

impl Dialer {
    pub(crate) fn new(settings: DialerSettings) -> Self {
        let plaintext = settings.scheme == Scheme::HTTP;
        let target = Uri::builder()
            .scheme(settings.scheme.clone())
            .authority(settings.authority.clone())
            .path_and_query("/")
            .build()
            .unwrap_or_default();
        let mut direct = HttpConnector::new_with_resolver(Resolve {
            fixed: settings.connect_to,
            system: GaiResolver::new(),
        });
        configure(&mut direct, &settings);
        // A proxy (HTTPS_PROXY, NO_PROXY) is for reaching the internet: never when the caller
        // named the address to dial, never for this machine, and never in plaintext.
        let proxy = if settings.connect_to.is_some() || plaintext {
            None
        } else {
            proxy_for(&target)
        };
        let proxied = proxy.and_then(|proxy| {
            let proxy_authority = proxy.uri().authority()?.clone();
            let mut tcp = HttpConnector::new();
            configure(&mut tcp, &settings);
            let tunnel = tunnel(&proxy, tcp);
            let tls = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(settings.tls.clone())
                .https_only()
                .enable_http2()
                .wrap_connector(tunnel);
            Some((tls, proxy_authority))
        });
        let direct = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(settings.tls)
            .https_or_http()
            .enable_http2()
            .wrap_connector(direct);
        Dialer {
            direct,
            proxied,
            target,
            authority: settings.authority,
            plaintext,
            timeout: settings.timeout,
            roots: settings.roots.into(),
        }
    }

    /// The host dialled (the TLS name and `:authority`).
    pub(crate) fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The proxy connections go through, if any.
    pub(crate) fn proxy(&self) -> Option<&Authority> {
        self.proxied.as_ref().map(|(_, proxy)| proxy)
    }

    /// Connects: TCP and TLS (or the proxy's `CONNECT` first), within the connect timeout.
    pub(crate) async fn dial(&self) -> Result<Stream, Status> {
        let via = match self.proxy() {
            Some(proxy) => format!(" through the proxy {proxy}"),
            None => String::new(),
        };
        let connecting = async {
            match &self.proxied {
                Some((connector, _)) => connector.clone().call(self.target.clone()).await,
                None => self.direct.clone().call(self.target.clone()).await,
            }
        };
        let stream = match tokio::time::timeout(self.timeout, connecting).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(self.failed(error, &via)),
            Err(_) => {
                let what = if self.plaintext { "TCP" } else { "TCP and TLS" };
                return Err(Status::unavailable(format!(
                    "cannot connect to {}{via}: {what} did not complete within the connect \
                     timeout of {:?}",
                    self.authority, self.timeout
                )));
            }
        };
        if self.plaintext {
            self.check_loopback(&stream)?;
        }
        Ok(stream)
    }

    /// A name like `localhost` says nothing about where it leads: plaintext is allowed only
    /// when the address actually dialled is loopback.
    fn check_loopback(&self, stream: &Stream) -> Result<(), Status> {
        let peer = match stream {
            MaybeHttpsStream::Http(io) => io.inner().peer_addr().ok(),
            MaybeHttpsStream::Https(_) => return Ok(()),
        };
        match peer {
            Some(peer) if peer.ip().is_loopback() => Ok(()),
            Some(peer) => Err(Status::failed_precondition(format!(
                "refusing to send ID tokens in plaintext: {} led to {peer}, which is not a \
                 loopback address; use TLS (https)",
                self.authority
            ))),
            None => Err(Status::failed_precondition(format!(
                "refusing to send ID tokens in plaintext: cannot tell where {} led",
                self.authority
            ))),
        }
    }

    fn failed(&self, error: Box<dyn StdError + Send + Sync>, via: &str) -> Status {
        let mut message = format!(
            "cannot connect to {}{via}: {}",
            self.authority,
            chain(&*error)
        );
        if certificate_refused(&*error) {
            message.push_str(&format!(
                "; the server's certificate could not be verified against the roots this \
                 channel trusts ({}); for a private CA pass `ca_certificate(pem)` to the \
                 builder, or set SSL_CERT_FILE / SSL_CERT_DIR before the channel is built",
                self.roots
            ));
        }
        let mut status = Status::unavailable(message);
        status.set_source(Arc::from(error));
        status
    }
}

fn configure<R>(tcp: &mut HttpConnector<R>, settings: &DialerSettings) {
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    // The overall bound covers TCP and TLS; this one only stops one address from eating it all
    // when DNS gives several.
    tcp.set_connect_timeout(Some(settings.timeout));
    tcp.set_keepalive(Some(settings.tcp.keepalive_idle));
    tcp.set_keepalive_interval(Some(settings.tcp.keepalive_interval));
    tcp.set_keepalive_retries(Some(settings.tcp.keepalive_retries));
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    tcp.set_tcp_user_timeout(Some(settings.tcp.user_timeout));
}

/// Whether the server's certificate failed verification (an unknown issuer, or a CA of the
/// same name that did not sign it): the roots are then the thing to check.
fn certificate_refused(error: &(dyn StdError + 'static)) -> bool {
    let mut source = Some(error);
    // Bounded: error chains are short, and each step goes one level down.
    for _ in 0..16 {
        let Some(cause) = source else { break };
        if let Some(rustls::Error::InvalidCertificate(_)) = cause.downcast_ref::<rustls::Error>() {
            return true;
        }
        // An `io::Error` hides what it wraps from `source()` (it skips to the wrapped error's
        // own source): step into it instead.
        source = match cause
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => cause.source(),
        };
    }
    false
}

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
