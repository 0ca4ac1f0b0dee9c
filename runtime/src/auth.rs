//! The tower layer that puts the ID token on every request.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderMap, HeaderName, Request, Response, StatusCode};
use tonic::Status;
use tower_layer::Layer;
use tower_service::Service;

use crate::Error;
use crate::token::cache::WaitError;
use crate::token::{TokenCache, TokenError};

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
///   (`grpc-timeout`), and fails with `UNAUTHENTICATED` naming the audience, the source and the
///   cause when no token can be had.
/// - A `401` or `grpc-status: 16` answer invalidates the token that was sent.
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
        let wait = grpc_timeout(request.headers()).or(self.wait_limit);
        let deadline = wait.map(|d| {
            let now = tokio::time::Instant::now();
            // A wait too long to represent is as good as none: the cache's own bound applies.
            now.checked_add(d)
                .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
        });
        AuthFuture {
            state: State::Waiting {
                future: Box::pin(async move {
                    let entry = cache
                        .wait(deadline)
                        .await
                        .map_err(|e| no_token(&cache, e))?;
                    request.headers_mut().insert(header, entry.header.clone());
                    let response = inner.call(request).await.map_err(Into::into)?;
                    report(&cache, entry.id, &response);
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
                    report(cache, entry, &response);
                }
                Poll::Ready(Ok(response))
            }
            StateProj::Waiting { future } => future.as_mut().poll(cx),
        }
    }
}

/// Whether the server refused the token: Cloud Run's front end answers HTTP 401; a gRPC server
/// answers `UNAUTHENTICATED` in a trailers-only response.
fn rejected<RB>(response: &Response<RB>) -> bool {
    response.status() == StatusCode::UNAUTHORIZED
        || response
            .headers()
            .get("grpc-status")
            .is_some_and(|code| code.as_bytes() == b"16")
}

/// Tells the cache whether the token of `entry` got through: a refusal starts its backoff, a
/// pass ends a streak of refusals.
fn report<RB>(cache: &TokenCache, entry: u64, response: &Response<RB>) {
    if !rejected(response) {
        cache.passed(entry);
    } else if response.status() == StatusCode::UNAUTHORIZED {
        cache.refused(entry, Arc::from("the front end answered HTTP 401"));
    } else {
        cache.refused(entry, Arc::from("the server answered UNAUTHENTICATED"));
    }
}

fn no_token(cache: &TokenCache, error: WaitError) -> BoxError {
    let status = match error {
        WaitError::Permanent(cause) => {
            let mut status = Status::unauthenticated(format!(
                "no ID token for audience {} from the {}: {cause}",
                cache.audience(),
                cache.source_name()
            ));
            status.set_source(cause);
            status
        }
        WaitError::Unavailable(cause) => {
            let mut status = Status::unavailable(format!(
                "no ID token for audience {} from the {}: {cause}",
                cache.audience(),
                cache.source_name()
            ));
            status.set_source(cause);
            status
        }
        WaitError::Refused { message, retry_in } => {
            let mut status = Status::unauthenticated(format!(
                "the ID tokens for audience {} from the {} were refused ({message}); the next \
                 one is sent in {retry_in:?}",
                cache.audience(),
                cache.source_name()
            ));
            // Our own answer, not the server's: it must not be taken for a refusal to retry.
            status.set_source(Arc::new(TokenError::Refused {
                source_name: cache.source_name().to_owned(),
                message: message.to_string(),
                retry_in,
            }));
            status
        }
        WaitError::Deadline => Status::deadline_exceeded(format!(
            "the call's deadline passed while waiting for an ID token for audience {} from the {}",
            cache.audience(),
            cache.source_name()
        )),
    };
    Box::new(status)
}

/// Reads a `grpc-timeout` header (`1..=8` digits and a unit: H, M, S, m, u, n).
pub(crate) fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.as_bytes();
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b"H" => Duration::from_secs(amount * 3600),
        b"M" => Duration::from_secs(amount * 60),
        b"S" => Duration::from_secs(amount),
        b"m" => Duration::from_millis(amount),
        b"u" => Duration::from_micros(amount),
        b"n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout_of(value: &'static str) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-timeout", http::HeaderValue::from_static(value));
        grpc_timeout(&headers)
    }

    #[test]
    fn reads_grpc_timeouts() {
        assert_eq!(timeout_of("250m"), Some(Duration::from_millis(250)));
        assert_eq!(timeout_of("3S"), Some(Duration::from_secs(3)));
        assert_eq!(timeout_of("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(timeout_of("100u"), Some(Duration::from_micros(100)));
        assert_eq!(timeout_of("m"), None);
        assert_eq!(timeout_of("123456789S"), None);
        assert_eq!(timeout_of("12x"), None);
        assert_eq!(grpc_timeout(&HeaderMap::new()), None);
    }
}
