//! `CloudRunChannel`: an HTTP/2 channel to one Cloud Run host that puts a fresh ID token on
//! every request.
//!
//! | file | what it does |
//! |---|---|
//! | `mod.rs` | [`CloudRunChannel`]: the tower service tonic clients call, and its accessors |
//! | `builder.rs` | [`ChannelBuilder`]: every option, checked by `build()` without I/O |
//! | `call.rs` | one call: deadline, token, retry-once, statuses of non-gRPC answers |
//! | `layer.rs` | a user's tower layer or interceptor under the channel, type-erased |

mod builder;
mod call;
mod layer;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::Status;
use tower_service::Service;

pub use builder::ChannelBuilder;
pub use call::ChannelService;
pub use call::ResponseFuture;
use layer::Layered;

use crate::token::{IdTokenSource, TokenCache, TokenError, TokenFuture};
use crate::{BoxError, Error, ResponseBody};

/// A channel to a Cloud Run service that authenticates every request with an ID token.
///
/// Use it as the transport of any tonic-generated client (`FooClient::new(channel)`,
/// `FooClient::with_interceptor(channel, f)`). Clones are cheap and share the connections and
/// the token cache.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cloud_run_grpc::Error> {
/// use std::time::Duration;
/// use cloud_run_grpc::CloudRunChannel;
///
/// let channel = CloudRunChannel::builder("bookstore-abc123-ew.a.run.app")
///     .timeout(Duration::from_secs(30))
///     .build()?; // no I/O: connects and fetches a token on first use
/// assert_eq!(channel.url(), "https://bookstore-abc123-ew.a.run.app");
/// assert_eq!(channel.audience(), "https://bookstore-abc123-ew.a.run.app");
/// # Ok(()) }
/// ```
///
/// What a call gets:
/// - the cached token, read without a lock; none cached, it waits for one (dialling meanwhile),
///   never past its deadline;
/// - its deadline (`grpc-timeout`, or the channel's `timeout` when sooner) over the whole call,
///   stream included, sent to the server;
/// - answers that are not gRPC (Cloud Run's front end refusing with an HTML page) as the status
///   gRPC's HTTP mapping gives them, with advice, and a [`NonGrpcAnswer`](crate::NonGrpcAnswer)
///   as the status's source;
/// - one retry, only when the call provably never reached the service: the front end refused
///   the token (HTTP 401; sent again with another token), or the server refused the stream
///   unprocessed (`REFUSED_STREAM`, `GOAWAY`). Only unary and server-streaming calls can be
///   sent again: their request is whole before it is sent.
#[derive(Clone)]
pub struct CloudRunChannel {
    state: State,
}

#[derive(Clone)]
enum State {
    Ready {
        core: ChannelService,
        /// The user's layer, when the builder was given one; it calls `core`.
        layered: Option<Layered>,
    },
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
    fn fetch<'a>(&'a self, _: &'a str) -> TokenFuture<'a> {
        Box::pin(async move {
            Err(TokenError::Unsupported {
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
    /// Starts building a channel to `host` (e.g. `bookstore-abc123-ew.a.run.app`, or
    /// `host:port`), over TLS, with tokens for the audience `https://{host}`.
    pub fn builder(host: impl Into<String>) -> ChannelBuilder {
        ChannelBuilder::new(host.into())
    }

    /// Starts building a channel from a service URL: `https://host[:port]`, or
    /// `http://127.0.0.1:port` (plaintext, loopback only) for a local server.
    ///
    /// ```
    /// use cloud_run_grpc::CloudRunChannel;
    /// let channel = CloudRunChannel::from_url("http://127.0.0.1:8080")?.build()?;
    /// assert_eq!(channel.url(), "http://127.0.0.1:8080");
    /// assert!(CloudRunChannel::from_url("http://svc.example.com").is_err()); // plaintext, not loopback
    /// # Ok::<(), cloud_run_grpc::Error>(())
    /// ```
    pub fn from_url(url: &str) -> Result<ChannelBuilder, Error> {
        ChannelBuilder::from_url(url)
    }

    pub(crate) fn ready(core: ChannelService, layered: Option<Layered>) -> Self {
        CloudRunChannel {
            state: State::Ready { core, layered },
        }
    }

    /// A channel whose every call fails with `error`; `origin` says where the target came
    /// from (e.g. an environment variable), for the message.
    pub(crate) fn broken(target: &str, error: Error, origin: Option<&str>) -> Self {
        let message = match origin {
            Some(origin) => format!("{error} (the URL came from {origin})"),
            None => error.to_string(),
        };
        let cache = TokenCache::new(NoSource(message.clone()), "");
        CloudRunChannel {
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
            State::Ready { core, .. } => core.transport.authority().as_str(),
            State::Broken(broken) => &broken.target,
        }
    }

    /// The URL calls go to: `https://host[:port]` (or `http://` to a loopback address).
    pub fn url(&self) -> String {
        match &self.state {
            State::Ready { core, .. } => {
                format!(
                    "{}://{}",
                    core.transport.scheme(),
                    core.transport.authority()
                )
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
            State::Ready { core, .. } => &core.cache,
            State::Broken(broken) => &broken.cache,
        }
    }

    /// Whether both channels read the same token cache (as channels from [`crate::shared`]
    /// for the same audience do).
    pub fn shares_token_cache_with(&self, other: &CloudRunChannel) -> bool {
        self.token_cache().same_as(other.token_cache())
    }

    /// The HTTP/2 keep-alive interval of new connections, if keep-alive is on: the builder's,
    /// doubled each time a server answered with `GOAWAY ENHANCE_YOUR_CALM` (too many pings).
    pub fn keep_alive_interval(&self) -> Option<std::time::Duration> {
        match &self.state {
            State::Ready { core, .. } => core.transport.keepalive_interval(),
            State::Broken(_) => None,
        }
    }

    /// Forgets the cached token, so the next call fetches a new one.
    pub fn invalidate_token(&self) {
        self.token_cache().invalidate()
    }

    /// Connects and fetches the first token, both at once, so that the first call waits for
    /// neither. Optional: a call on a cold channel does the same by itself, dialling while the
    /// token is fetched. Sends no request.
    pub async fn warm_up(&self) -> Result<(), Error> {
        let core = match &self.state {
            State::Ready { core, .. } => core,
            State::Broken(broken) => return Err(broken.error.clone()),
        };
        let token = async {
            core.cache
                .token()
                .await
                .map(drop)
                .map_err(|e| Error::Token(TokenError::clone(&e)))
        };
        let connect = async {
            core.transport
                .connected(None)
                .await
                .map_err(|status| Error::Connect {
                    host: self.host().to_owned(),
                    source: Arc::new(status),
                })
        };
        let (token, connect) = tokio::join!(token, connect);
        token.and(connect)
    }
}

impl fmt::Debug for CloudRunChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("CloudRunChannel");
        debug
            .field("url", &self.url())
            .field("audience", &self.audience())
            .field("token_source", &self.token_cache().source_name());
        if let State::Ready { core, .. } = &self.state
            && let Some(proxy) = core.transport.proxy()
        {
            debug.field("proxy", &proxy.as_str());
        }
        debug.finish()
    }
}

impl Service<Request<tonic::body::Body>> for CloudRunChannel {
    type Response = Response<ResponseBody>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match &mut self.state {
            State::Ready {
                layered: Some(layered),
                ..
            } => layered.poll_ready(cx),
            State::Ready { .. } | State::Broken(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> ResponseFuture {
        match &mut self.state {
            State::Ready {
                layered: Some(layered),
                ..
            } => layered.call(request),
            State::Ready { core, .. } => core.start(request),
            State::Broken(broken) => {
                ResponseFuture::failed(Status::invalid_argument(broken.message.clone()))
            }
        }
    }
}
