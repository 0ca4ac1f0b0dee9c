//! The ID-token check of Cloud Run's front end, as a tower layer for any tonic server.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use cloud_run_grpc::token::{Clock, SystemClock};
use http::{HeaderMap, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::sync::lock;
use crate::verifier::{Claims, Verifier, VerifyError};

/// A tower [`Layer`] that lets a request through only when it carries an ID token Cloud Run
/// would accept, and otherwise answers a gRPC `UNAUTHENTICATED` (HTTP 200, trailers only,
/// `grpc-status: 16`, a `grpc-message` saying why, never the token).
///
/// The token is read from `x-serverless-authorization: Bearer …` if present (as Cloud Run
/// does), else from `authorization: Bearer …`, and checked with a [`Verifier`]: RS256 signature,
/// `aud` among the accepted audiences, `exp` after the layer's clock (which can run ahead, see
/// [`set_clock_skew`](CloudRunAuthLayer::set_clock_skew)).
///
/// Cheap to clone; clones share counters and settings, so keep one to read
/// [`accepted`](CloudRunAuthLayer::accepted) after handing another to the server.
///
/// ```no_run
/// # async fn run(routes: tonic::service::Routes) -> Result<(), tonic::transport::Error> {
/// use cloud_run_grpc_testkit::{CloudRunAuthLayer, Verifier};
///
/// let auth = CloudRunAuthLayer::new(Verifier::new(), "https://bookstore.test.run.app");
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

struct AuthState {
    clock: Mutex<Arc<dyn Clock>>,
    verifier: Verifier,
    audiences: Vec<String>,
    accepted: AtomicUsize,
    rejected: AtomicUsize,
    reject_next: AtomicUsize,
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
                accepted: AtomicUsize::new(0),
                rejected: AtomicUsize::new(0),
                reject_next: AtomicUsize::new(0),
                skew_millis: AtomicU64::new(0),
                last_rejection: Mutex::new(None),
                audiences_seen: Mutex::default(),
                last_claims: Mutex::default(),
            }),
        }
    }

    /// The accepted audiences.
    pub fn audiences(&self) -> &[String] {
        &self.state.audiences
    }

    /// How many requests were let through.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// How many requests were answered `UNAUTHENTICATED`.
    pub fn rejected(&self) -> usize {
        self.state.rejected.load(Ordering::SeqCst)
    }

    /// The `grpc-message` of the latest rejection.
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

    /// Rejects the next `n` requests that would otherwise be accepted, with `UNAUTHENTICATED`
    /// (as when Cloud Run revoked or no longer trusts a token), for retry tests.
    pub fn reject_next(&self, n: usize) {
        self.state.reject_next.store(n, Ordering::SeqCst);
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

    /// Checks one request's headers; `Err` holds the `grpc-message` to answer with.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), String> {
        let outcome = self.verify(headers).and_then(|()| {
            let take = |n: usize| n.checked_sub(1);
            match self
                .state
                .reject_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, take)
            {
                Ok(_) => Err("token rejected by the front end (injected by reject_next)".into()),
                Err(_) => Ok(()),
            }
        });
        match &outcome {
            Ok(()) => {
                self.state.accepted.fetch_add(1, Ordering::SeqCst);
            }
            Err(message) => {
                self.state.rejected.fetch_add(1, Ordering::SeqCst);
                *lock(&self.state.last_rejection) = Some(message.clone());
            }
        }
        outcome
    }

    /// Records the audience of a token whose signature checked out.
    fn saw(&self, audience: &str) {
        let mut seen = lock(&self.state.audiences_seen);
        if !seen.iter().any(|seen| seen == audience) {
            seen.push(audience.to_owned());
        }
    }

    fn verify(&self, headers: &HeaderMap) -> Result<(), String> {
        let (name, value) = ["x-serverless-authorization", "authorization"]
            .into_iter()
            .find_map(|name| headers.get(name).map(|value| (name, value)))
            .ok_or_else(|| {
                "missing ID token: send `authorization: Bearer <ID token>` \
                 or `x-serverless-authorization: Bearer <ID token>`"
                    .to_owned()
            })?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|token| !token.is_empty())
            .ok_or_else(|| format!("`{name}` is not `Bearer <ID token>`"))?;
        match self
            .state
            .verifier
            .verify(token, &self.state.audiences, self.now())
        {
            Ok(claims) => {
                self.saw(&claims.aud);
                *lock(&self.state.last_claims) = Some(claims);
                Ok(())
            }
            Err(VerifyError::WrongAudience { expected, got }) => {
                self.saw(&got);
                let error = VerifyError::WrongAudience { expected, got };
                Err(format!("invalid ID token in `{name}`: {error}"))
            }
            Err(error @ VerifyError::Expired { .. }) => {
                Err(format!("{error} by the front end's clock"))
            }
            Err(error) => Err(format!("invalid ID token in `{name}`: {error}")),
        }
    }
}

impl fmt::Debug for CloudRunAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudRunAuthLayer")
            .field("audiences", &self.state.audiences)
            .field("accepted", &self.accepted())
            .field("rejected", &self.rejected())
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

/// The service [`CloudRunAuthLayer`] wraps around a server's routes.
#[derive(Clone, Debug)]
pub struct CloudRunAuth<S> {
    inner: S,
    layer: CloudRunAuthLayer,
}

impl<S, B, ResBody> Service<Request<B>> for CloudRunAuth<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match self.layer.check(request.headers()) {
            Ok(()) => ResponseFuture::inner(self.inner.call(request)),
            Err(message) => {
                ResponseFuture::rejected(tonic::Status::unauthenticated(message).into_http())
            }
        }
    }
}

pin_project! {
    /// The future of [`CloudRunAuth`]: the inner service's, or an immediate rejection.
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

impl<F, B> ResponseFuture<F, B> {
    fn inner(future: F) -> Self {
        ResponseFuture {
            kind: Kind::Inner { future },
        }
    }

    fn rejected(response: Response<B>) -> Self {
        ResponseFuture {
            kind: Kind::Rejected {
                response: Some(response),
            },
        }
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Inner { #[pin] future: F },
        Rejected { response: Option<Response<B>> },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Rejected { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                // Polled again after completion: stay pending rather than panic.
                None => Poll::Pending,
            },
        }
    }
}
