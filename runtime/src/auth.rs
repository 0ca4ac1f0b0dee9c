//! The tower layer that puts the ID token on every request.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderName, Request, Response, StatusCode};
use tokio::time::Instant;
use tonic::Status;
use tower_layer::Layer;
use tower_service::Service;

use crate::Error;
use crate::deadline::Deadline;
use crate::token::cache::WaitError;
use crate::token::{TokenCache, TokenError};
use crate::transport::is_grpc;

/// Errors as tonic expects them from a transport: a boxed error; ours are always a [`Status`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The header the token goes in.
///
/// Cloud Run reads `Authorization: Bearer …`; when the application itself needs the
/// `Authorization` header, Cloud Run also accepts the token in `X-Serverless-Authorization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AuthHeader {
    /// `authorization`.
    #[default]
    Authorization,
    /// `x-serverless-authorization`.
    XServerlessAuthorization,
}

impl AuthHeader {
    /// The header's name.
    pub fn name(self) -> HeaderName {
        match self {
            Self::Authorization => http::header::AUTHORIZATION,
            Self::XServerlessAuthorization => HeaderName::from_static("x-serverless-authorization"),
        }
    }
}

impl FromStr for AuthHeader {
    type Err = Error;

    /// ```
    /// use cloud_run_grpc::AuthHeader;
    /// assert_eq!("X-Serverless-Authorization".parse::<AuthHeader>().unwrap(), AuthHeader::XServerlessAuthorization);
    /// assert!("cookie".parse::<AuthHeader>().is_err());
    /// ```
    fn from_str(name: &str) -> Result<Self, Error> {
        match cloud_run_grpc_endpoint::header(name) {
            Ok(cloud_run_grpc_endpoint::Header::Authorization) => Ok(Self::Authorization),
            Ok(cloud_run_grpc_endpoint::Header::XServerlessAuthorization) => {
                Ok(Self::XServerlessAuthorization)
            }
            Err(_) => Err(Error::InvalidHeader(name.to_owned())),
        }
    }
}

/// Adds the cache's ID token to every request passing through; see [`AuthService`].
///
/// Use it to put Cloud Run authentication on another tower stack, e.g. a tonic `Channel` of
/// your own:
///
/// ```
/// use cloud_run_grpc::{AuthLayer, token::{MetadataServer, TokenCache}};
/// use tower_layer::Layer;
///
/// /// `channel` is any tower service of HTTP requests: a tonic `Channel`, say.
/// fn authenticate<S>(channel: S) -> cloud_run_grpc::AuthService<S> {
///     let cache = TokenCache::new(MetadataServer::new(), "https://svc-abc123-ew.a.run.app");
///     AuthLayer::new(cache).layer(channel)
/// }
/// ```
#[derive(Clone, Debug)]
pub struct AuthLayer {
    cache: TokenCache,
    header: AuthHeader,
    wait_limit: Option<Duration>,
}

impl AuthLayer {
    /// Puts tokens from `cache` in the `authorization` header.
    pub fn new(cache: TokenCache) -> Self {
        Self {
            cache,
            header: AuthHeader::Authorization,
            wait_limit: None,
        }
    }

    /// Puts the token in `header` instead.
    pub fn header(mut self, header: AuthHeader) -> Self {
        self.header = header;
        self
    }

    /// The longest a request without a `grpc-timeout` waits for a token when none is cached.
    pub fn wait_limit(mut self, limit: Duration) -> Self {
        self.wait_limit = Some(limit);
        self
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            cache: self.cache.clone(),
            header: self.header.name(),
            wait_limit: self.wait_limit,
        }
    }
}

/// A service that adds `Bearer <ID token>` to each request, with the header marked sensitive.
///
/// - With a valid cached token the request goes straight on: no lock, no allocation, no wait.
/// - With none, the request waits for the one fetch under way, never past its own deadline
///   (`grpc-timeout`, else the layer's [`wait_limit`](AuthLayer::wait_limit)), and fails with
///   a status naming the audience, the source and the cause when no token can be had.
/// - An HTTP 401 that is not a gRPC answer (Cloud Run's front end refusing the token) tells
///   the cache, which drops that token and backs off if refusals repeat; a `grpc-status` from
///   the service, whatever its code, is the service's answer and changes nothing.
///
/// Unlike a [`CloudRunChannel`](crate::CloudRunChannel), it cannot send a refused request
/// again: it does not know the body of `S`'s requests. Use the channel where you can.
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    cache: TokenCache,
    header: HeaderName,
    wait_limit: Option<Duration>,
}

impl<S> AuthService<S> {
    /// The token cache this service reads.
    pub fn token_cache(&self) -> &TokenCache {
        &self.cache
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S> fmt::Debug for AuthService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthService")
            .field("cache", &self.cache)
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl<S, B, RB> Service<Request<B>> for AuthService<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = AuthFuture<S::Future, RB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let valid = self
            .cache
            .with_valid(|entry| (entry.header.clone(), entry.id));
        if let Some((value, id)) = valid {
            request.headers_mut().insert(self.header.clone(), value);
            return AuthFuture {
                state: State::Sent {
                    inner: self.inner.call(request),
                    entry: Some(id),
                    cache: self.cache.clone(),
                },
            };
        }
        // No valid token: the slow path. Take the service that was made ready and leave a clone.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let cache = self.cache.clone();
        let header = self.header.clone();
        let wait = crate::deadline::parse(request.headers()).or(self.wait_limit);
        let deadline = wait.and_then(|d| Deadline::after(Instant::now(), d));
        AuthFuture {
            state: State::Waiting {
                future: Box::pin(async move {
                    let entry = cache
                        .wait(deadline.map(|d| d.at()))
                        .await
                        .map_err(|e| Box::new(no_token(&cache, e, deadline)))?;
                    request.headers_mut().insert(header, entry.header.clone());
                    let response = inner.call(request).await.map_err(Into::into)?;
                    judge(&cache, entry.id, &response);
                    Ok(response)
                }),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of an [`AuthService`] call.
    pub struct AuthFuture<F, RB> {
        #[pin]
        state: State<F, RB>,
    }
}

type Waiting<RB> = Pin<Box<dyn Future<Output = Result<Response<RB>, BoxError>> + Send>>;

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F, RB> {
        Sent { #[pin] inner: F, entry: Option<u64>, cache: TokenCache },
        Waiting { future: Waiting<RB> },
    }
}

impl<F, RB, E> Future for AuthFuture<F, RB>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<RB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Sent {
                inner,
                entry,
                cache,
            } => {
                let response = std::task::ready!(inner.poll(cx)).map_err(Into::into)?;
                if let Some(entry) = entry.take() {
                    judge(cache, entry, &response);
                }
                Poll::Ready(Ok(response))
            }
            StateProj::Waiting { future } => future.as_mut().poll(cx),
        }
    }
}

/// Tells the cache what became of the token: refused by the front end (an HTTP 401 that is
/// not gRPC), or past it (any gRPC answer).
fn judge<RB>(cache: &TokenCache, entry: u64, response: &Response<RB>) {
    if is_grpc(response) {
        cache.passed(entry);
    } else if response.status() == StatusCode::UNAUTHORIZED {
        cache.refused(
            entry,
            format!(
                "the server refused the ID token for audience {} (HTTP 401)",
                cache.audience()
            )
            .into(),
        );
    }
}

/// The status of a call that got no token: why, naming the audience and the source, never
/// the token.
pub(crate) fn no_token(cache: &TokenCache, error: WaitError, deadline: Option<Deadline>) -> Status {
    let (audience, source) = (cache.audience(), cache.source_name());
    match error {
        WaitError::Permanent(cause) => {
            let mut status = Status::unauthenticated(format!(
                "no ID token for audience {audience} from the {source}: {cause}"
            ));
            status.set_source(cause);
            status
        }
        WaitError::Unavailable(cause) => {
            let mut status = Status::unavailable(format!(
                "no ID token for audience {audience} from the {source}: {cause}"
            ));
            status.set_source(cause);
            status
        }
        WaitError::Refused { message, retry_in } => {
            let mut status = Status::unauthenticated(format!(
                "the ID tokens for audience {audience} from the {source} were refused \
                 ({message}); the next one is sent in {retry_in:?}"
            ));
            // Our own answer, not the server's: it must not be taken for a refusal to retry.
            status.set_source(Arc::new(TokenError::Refused {
                source_name: source.to_owned(),
                message: message.to_string(),
                retry_in,
            }));
            status
        }
        WaitError::Deadline => Status::deadline_exceeded(format!(
            "the call's deadline{} passed while waiting for an ID token for audience {audience} \
             from the {source}",
            deadline.map_or_else(String::new, |d| format!(" of {:?}", d.total()))
        )),
    }
}
