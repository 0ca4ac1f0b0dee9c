//! The ID-token check of Cloud Run's front end, as a tower layer for any tonic server.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cloud_run_grpc::token::{Clock, SystemClock};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use pin_project_lite::pin_project;
use tonic::body::Body;
use tower_layer::Layer;
use tower_service::Service;

use crate::sync::lock;
use crate::verifier::{Claims, Verifier, VerifyError};

/// A tower [`Layer`] that lets a request through only when it carries an ID token Cloud Run
/// would accept, and otherwise answers the way Cloud Run's front end does.
///
/// The token is read from `x-serverless-authorization: Bearer …` if present (as Cloud Run
/// does), else from `authorization: Bearer …`, and checked with a [`Verifier`]: RS256 signature,
/// `aud` among the accepted audiences, `exp` after the layer's clock (which can run ahead, see
/// [`set_clock_skew`](CloudRunAuthLayer::set_clock_skew)); then, if an allow-list of invokers is
/// set, the token's `email` must be on it.
///
/// How it refuses ([`RefusalMode`]):
/// - **[`RefusalMode::CloudRun`], the default**, as Cloud Run's front end answers before the
///   container sees the request: **HTTP 401** for a token it refuses (bad signature, wrong
///   audience, expired, [`reject_next`](CloudRunAuthLayer::reject_next)), with
///   `www-authenticate: Bearer error="invalid_token" …`; **HTTP 403** for a missing token or a
///   caller that is not an invoker. Both with `content-type: text/html; charset=UTF-8`, the
///   front end's HTML error page, `server: Google Frontend` and no `grpc-status`: a client
///   tested against it meets what production sends. It is the default because that is what a
///   client of Cloud Run must handle.
/// - [`RefusalMode::GrpcStatus`], for your own server that verifies tokens itself (on GKE,
///   say, with no Google front end before it): a gRPC trailers-only answer, `UNAUTHENTICATED`
///   for a missing or refused token and `PERMISSION_DENIED` for a caller that is not an
///   invoker, with a `grpc-message` saying why (never the token).
///
/// A service behind the layer answers as it likes, `UNAUTHENTICATED` included: the layer only
/// answers for the requests it refuses. Failures injected with
/// [`fail_next`](CloudRunAuthLayer::fail_next) are the front end's pages in both modes.
///
/// Cheap to clone; clones share counters and settings, so keep one to read
/// [`accepted`](CloudRunAuthLayer::accepted) after handing another to the server.
///
/// ```no_run
/// # async fn run(routes: tonic::service::Routes) -> Result<(), tonic::transport::Error> {
/// use cloud_run_grpc_testkit::{CloudRunAuthLayer, RefusalMode, Verifier};
///
/// let auth = CloudRunAuthLayer::new(Verifier::new(), "https://bookstore.internal.example")
///     .refusal_mode(RefusalMode::GrpcStatus);
/// tonic::transport::Server::builder()
///     .layer(auth.clone())
///     .add_routes(routes)
///     .serve("127.0.0.1:50051".parse().unwrap())
///     .await?;
/// println!("accepted {} requests", auth.accepted());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CloudRunAuthLayer {
    state: Arc<AuthState>,
}

/// How a [`CloudRunAuthLayer`] answers a request it refuses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusalMode {
    /// HTTP 401 / 403 with Google's HTML error pages, as Cloud Run's front end (the default).
    #[default]
    CloudRun,
    /// A gRPC status (`UNAUTHENTICATED`, `PERMISSION_DENIED`), trailers only, as a server that
    /// checks tokens itself would answer.
    GrpcStatus,
}

/// Why a [`CloudRunAuthLayer`] did not let a request through. Never contains the token.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// No `Bearer` token in either header (HTTP 403 from Cloud Run).
    MissingToken(String),
    /// A token it does not accept, and why (HTTP 401 from Cloud Run).
    InvalidToken(String),
    /// A valid token whose caller (the token's `email`) is not on the invoker allow-list
    /// (HTTP 403 from Cloud Run).
    NotInvoker(String),
    /// A failure injected with [`CloudRunAuthLayer::fail_next`], with its HTTP status.
    Failure(StatusCode),
}

impl Refusal {
    /// The HTTP status Cloud Run answers this refusal with.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Refusal::MissingToken(_) | Refusal::NotInvoker(_) => StatusCode::FORBIDDEN,
            Refusal::Failure(status) => *status,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::MissingToken(why) | Refusal::InvalidToken(why) => f.write_str(why),
            Refusal::NotInvoker(caller) => write!(
                f,
                "`{caller}` may not invoke this service: it needs roles/run.invoker"
            ),
            Refusal::Failure(status) => write!(f, "HTTP {status} injected by fail_next"),
        }
    }
}

struct AuthState {
    clock: Mutex<Arc<dyn Clock>>,
    verifier: Verifier,
    audiences: Vec<String>,
    mode: Mutex<RefusalMode>,
    invokers: Mutex<Option<Vec<String>>>,
    accepted: AtomicUsize,
    rejected: AtomicUsize,
    forbidden: AtomicUsize,
    failed: AtomicUsize,
    reject_next: AtomicUsize,
    fail_next: Mutex<Option<(StatusCode, usize)>>,
    skew_millis: AtomicU64,
    last_rejection: Mutex<Option<String>>,
    audiences_seen: Mutex<Vec<String>>,
    last_claims: Mutex<Option<Claims>>,
}

impl CloudRunAuthLayer {
    /// Accepts tokens verified by `verifier` whose `aud` is `audience` (Cloud Run's default is
    /// the service URL, `https://{host}`, with no port or path).
    pub fn new(verifier: Verifier, audience: impl Into<String>) -> Self {
        CloudRunAuthLayer::with_audiences(verifier, vec![audience.into()])
    }

    /// Accepts tokens for any of `audiences` (a service URL plus custom audiences).
    pub fn with_audiences(verifier: Verifier, audiences: Vec<String>) -> Self {
        CloudRunAuthLayer {
            state: Arc::new(AuthState {
                clock: Mutex::new(Arc::new(SystemClock)),
                verifier,
                audiences,
                mode: Mutex::new(RefusalMode::default()),
                invokers: Mutex::new(None),
                accepted: AtomicUsize::new(0),
                rejected: AtomicUsize::new(0),
                forbidden: AtomicUsize::new(0),
                failed: AtomicUsize::new(0),
                reject_next: AtomicUsize::new(0),
                fail_next: Mutex::new(None),
                skew_millis: AtomicU64::new(0),
                last_rejection: Mutex::new(None),
                audiences_seen: Mutex::default(),
                last_claims: Mutex::default(),
            }),
        }
    }

    /// Answers refusals this way from now on (default [`RefusalMode::CloudRun`]; clones share
    /// it).
    pub fn refusal_mode(self, mode: RefusalMode) -> Self {
        *lock(&self.state.mode) = mode;
        self
    }

    /// Lets only these callers through, by the `email` of their token (as `roles/run.invoker`
    /// on a Cloud Run service does); others get HTTP 403. `None` (the default) lets every
    /// valid token through.
    pub fn set_invokers<I, S>(&self, invokers: Option<I>)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        *lock(&self.state.invokers) =
            invokers.map(|invokers| invokers.into_iter().map(Into::into).collect());
    }

    /// The accepted audiences.
    pub fn audiences(&self) -> &[String] {
        &self.state.audiences
    }

    /// How many requests were let through.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// How many tokens were refused (HTTP 401 as Cloud Run, `UNAUTHENTICATED` as gRPC).
    pub fn rejected(&self) -> usize {
        self.state.rejected.load(Ordering::SeqCst)
    }

    /// How many requests came without a token or from a caller that is not an invoker (HTTP
    /// 403 as Cloud Run; `UNAUTHENTICATED` or `PERMISSION_DENIED` as gRPC).
    pub fn forbidden(&self) -> usize {
        self.state.forbidden.load(Ordering::SeqCst)
    }

    /// How many requests were answered with a failure injected by
    /// [`fail_next`](CloudRunAuthLayer::fail_next).
    pub fn failed(&self) -> usize {
        self.state.failed.load(Ordering::SeqCst)
    }

    /// Why the latest request was rejected or forbidden (never the token).
    pub fn last_rejection(&self) -> Option<String> {
        lock(&self.state.last_rejection).clone()
    }

    /// The `aud` of every correctly signed ID token it was sent, accepted or refused for its
    /// audience, each once, in the order first seen: what a test asserts to check that the
    /// client asked for the right audience.
    pub fn audiences_seen(&self) -> Vec<String> {
        lock(&self.state.audiences_seen).clone()
    }

    /// The claims of the latest token it accepted (who called: `email`, `sub`; for whom:
    /// `aud`).
    pub fn last_claims(&self) -> Option<Claims> {
        lock(&self.state.last_claims).clone()
    }

    /// Refuses the next `n` tokens that would otherwise be accepted (HTTP 401 as Cloud Run), as
    /// when the front end's clock or keys disagree with the client's, for retry tests.
    pub fn reject_next(&self, n: usize) {
        self.state.reject_next.store(n, Ordering::SeqCst);
    }

    /// Answers the next `n` requests that pass the token check with `status` and the front
    /// end's page for it, as Cloud Run does when it cannot serve them: 429 when no instance
    /// can take the request, 503 while the service scales or fails to start, 404 for what it
    /// does not serve, 504 when the request timed out. Replaces an earlier `fail_next`; `n = 0`
    /// cancels it.
    pub fn fail_next(&self, n: usize, status: u16) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        *lock(&self.state.fail_next) = (n > 0).then_some((status, n));
    }

    /// Makes the layer's clock run `skew` ahead of the real one, so it rejects tokens as expired
    /// that the client still thinks valid. `Duration::ZERO` puts it back.
    pub fn set_clock_skew(&self, skew: Duration) {
        let millis = u64::try_from(skew.as_millis()).unwrap_or(u64::MAX);
        self.state.skew_millis.store(millis, Ordering::SeqCst);
    }

    /// Judges expiry by `clock` (default the system's; clones share it): share a
    /// [`ManualClock`](cloud_run_grpc::token::ManualClock) with the client's token cache and
    /// the metadata emulator to move through token lifetimes without waiting.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        *lock(&self.state.clock) = clock;
        self
    }

    /// The layer's clock: its clock's time plus the skew.
    pub fn now(&self) -> SystemTime {
        let skew = Duration::from_millis(self.state.skew_millis.load(Ordering::SeqCst));
        lock(&self.state.clock).now() + skew
    }

    /// Checks one request's headers, counting the outcome.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let outcome = self
            .verify(headers)
            .and_then(|()| self.injected_rejection())
            .and_then(|()| self.injected_failure());
        let counter = match &outcome {
            Ok(()) => &self.state.accepted,
            Err(Refusal::InvalidToken(_)) => &self.state.rejected,
            Err(Refusal::MissingToken(_) | Refusal::NotInvoker(_)) => &self.state.forbidden,
            Err(Refusal::Failure(_)) => &self.state.failed,
        };
        counter.fetch_add(1, Ordering::SeqCst);
        if let Err(
            refusal
            @ (Refusal::InvalidToken(_) | Refusal::MissingToken(_) | Refusal::NotInvoker(_)),
        ) = &outcome
        {
            *lock(&self.state.last_rejection) = Some(refusal.to_string());
        }
        outcome
    }

    fn injected_rejection(&self) -> Result<(), Refusal> {
        let take = |n: usize| n.checked_sub(1);
        match self
            .state
            .reject_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, take)
        {
            Ok(_) => Err(Refusal::InvalidToken(
                "token refused by the front end (injected by reject_next)".into(),
            )),
            Err(_) => Ok(()),
        }
    }

    fn injected_failure(&self) -> Result<(), Refusal> {
        let mut fail_next = lock(&self.state.fail_next);
        let Some((status, left)) = fail_next.as_mut() else {
            return Ok(());
        };
        let status = *status;
        *left -= 1;
        if *left == 0 {
            *fail_next = None;
        }
        Err(Refusal::Failure(status))
    }

    /// Records the audience of a token whose signature checked out.
    fn saw(&self, audience: &str) {
        let mut seen = lock(&self.state.audiences_seen);
        if !seen.iter().any(|seen| seen == audience) {
            seen.push(audience.to_owned());
        }
    }

    fn verify(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let missing = || {
            Refusal::MissingToken(
                "missing ID token: send `authorization: Bearer <ID token>` \
                 or `x-serverless-authorization: Bearer <ID token>`"
                    .to_owned(),
            )
        };
        let (name, value) = ["x-serverless-authorization", "authorization"]
            .into_iter()
            .find_map(|name| headers.get(name).map(|value| (name, value)))
            .ok_or_else(missing)?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|token| !token.is_empty())
            .ok_or_else(|| Refusal::MissingToken(format!("`{name}` is not `Bearer <ID token>`")))?;
        let claims = match self
            .state
            .verifier
            .verify(token, &self.state.audiences, self.now())
        {
            Ok(claims) => claims,
            Err(VerifyError::WrongAudience { expected, got }) => {
                self.saw(&got);
                let error = VerifyError::WrongAudience { expected, got };
                return Err(Refusal::InvalidToken(format!(
                    "invalid ID token in `{name}`: {error}"
                )));
            }
            Err(error @ VerifyError::Expired { .. }) => {
                return Err(Refusal::InvalidToken(format!(
                    "{error} by the front end's clock"
                )));
            }
            Err(error) => {
                return Err(Refusal::InvalidToken(format!(
                    "invalid ID token in `{name}`: {error}"
                )));
            }
        };
        self.saw(&claims.aud);
        let caller = claims.email.clone().or_else(|| claims.sub.clone());
        *lock(&self.state.last_claims) = Some(claims);
        if let Some(invokers) = &*lock(&self.state.invokers) {
            let caller = caller.unwrap_or_default();
            if !invokers.contains(&caller) {
                return Err(Refusal::NotInvoker(caller));
            }
        }
        Ok(())
    }

    /// The answer to a request for `path` refused with `refusal`.
    fn answer(&self, refusal: &Refusal, path: &str) -> Response<Body> {
        let mode = *lock(&self.state.mode);
        let code = match refusal {
            Refusal::Failure(_) => None,
            _ if mode == RefusalMode::CloudRun => None,
            Refusal::NotInvoker(_) => Some(tonic::Code::PermissionDenied),
            Refusal::MissingToken(_) | Refusal::InvalidToken(_) => {
                Some(tonic::Code::Unauthenticated)
            }
        };
        match code {
            Some(code) => tonic::Status::new(code, refusal.to_string()).into_http(),
            None => {
                crate::pages::page(refusal.status(), path).map(|page| Body::new(Full::new(page)))
            }
        }
    }
}

impl fmt::Debug for CloudRunAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudRunAuthLayer")
            .field("audiences", &self.state.audiences)
            .field("mode", &*lock(&self.state.mode))
            .field("accepted", &self.accepted())
            .field("rejected", &self.rejected())
            .field("forbidden", &self.forbidden())
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for CloudRunAuthLayer {
    type Service = CloudRunAuth<S>;

    fn layer(&self, inner: S) -> CloudRunAuth<S> {
        CloudRunAuth {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`CloudRunAuthLayer`] wraps around a server's routes. Its responses are tonic's
/// [`Body`] (the inner service's, passed through untouched, or the layer's own answer).
#[derive(Clone, Debug)]
pub struct CloudRunAuth<S> {
    inner: S,
    layer: CloudRunAuthLayer,
}

impl<S, B, ResBody> Service<Request<B>> for CloudRunAuth<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<tonic::codegen::StdError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match self.layer.check(request.headers()) {
            Ok(()) => ResponseFuture::inner(self.inner.call(request)),
            Err(refusal) => {
                let path = request
                    .uri()
                    .path_and_query()
                    .map_or("/", |path| path.as_str());
                ResponseFuture::answered(self.layer.answer(&refusal, path))
            }
        }
    }
}

pin_project! {
    /// The future of [`CloudRunAuth`]: the inner service's, or the layer's immediate answer.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

impl<F> ResponseFuture<F> {
    fn inner(future: F) -> Self {
        ResponseFuture {
            kind: Kind::Inner { future },
        }
    }

    fn answered(response: Response<Body>) -> Self {
        ResponseFuture {
            kind: Kind::Answered {
                response: Some(response),
            },
        }
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Answered { response: Option<Response<Body>> },
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future
                .poll(cx)
                .map(|result| result.map(|response| response.map(Body::new))),
            KindProj::Answered { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                // Polled again after completion: stay pending rather than panic.
                None => Poll::Pending,
            },
        }
    }
}
