//! One call through a [`CloudRunChannel`](super::CloudRunChannel): its deadline, its token, its
//! body, the statuses of answers that are not gRPC, and the one retry the rules allow.
//!
//! Retried once, and only when the call provably never reached the service:
//! - the front end refused the token (HTTP 401, not a gRPC answer): with another token;
//! - the server refused the stream unprocessed (`REFUSED_STREAM`, a `GOAWAY` below it).
//!
//! Only a request whose body was whole before it was sent (unary and server-streaming calls)
//! can be sent again; the bytes are kept, not the message. A retry gets what is left of the
//! call's deadline. A `grpc-status` from the service is its answer, whatever the code, and is
//! never retried: the service may have done the work.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri, Version};
use tokio::time::Instant;
use tonic::Status;
use tower_service::Service;

use crate::BoxError;
use crate::deadline::Deadline;
use crate::token::TokenCache;
use crate::transport::{NonGrpcAnswer, RequestBody, ResponseBody, SendError, Transport};

/// The future of a [`CloudRunChannel`](super::CloudRunChannel) call.
pub struct ResponseFuture {
    inner: Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, BoxError>> + Send>>,
}

impl ResponseFuture {
    pub(crate) fn new(
        future: impl Future<Output = Result<Response<ResponseBody>, BoxError>> + Send + 'static,
    ) -> Self {
        ResponseFuture {
            inner: Box::pin(future),
        }
    }

    pub(crate) fn from_box(
        inner: Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, BoxError>> + Send>>,
    ) -> Self {
        ResponseFuture { inner }
    }

    pub(crate) fn failed(status: Status) -> Self {
        let error: BoxError = Box::new(status);
        ResponseFuture::new(std::future::ready(Err(error)))
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<ResponseBody>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// The channel's own service, under any layer given to [`ChannelBuilder::layer`]: it adds the
/// token, bounds the call by its deadline, sends it, and retries it once when that is safe.
/// Public so that a layer's bounds can name it; it has nothing to call but `Service::call`.
///
/// [`ChannelBuilder::layer`]: super::ChannelBuilder::layer
#[derive(Clone)]
pub struct ChannelService {
    pub(crate) cache: TokenCache,
    pub(crate) header: HeaderName,
    pub(crate) transport: Transport,
    pub(crate) timeout: Option<Duration>,
}

/// What it takes to send a request again: its head and its whole body.
struct Replay {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Replay {
    fn request(self) -> Request<RequestBody> {
        let mut request = Request::new(RequestBody::Whole(Some(self.body)));
        *request.method_mut() = self.method;
        *request.uri_mut() = self.uri;
        *request.headers_mut() = self.headers;
        *request.version_mut() = Version::HTTP_2;
        request
    }
}

impl ChannelService {
    pub(crate) fn start(&self, request: Request<tonic::body::Body>) -> ResponseFuture {
        let (mut parts, body) = request.into_parts();
        let deadline = Deadline::of_request(&mut parts.headers, self.timeout, Instant::now());
        let body = match RequestBody::probe(body) {
            Ok(body) => body,
            Err(status) => return ResponseFuture::failed(status),
        };
        parts.uri = self.uri(parts.uri);
        parts.version = Version::HTTP_2;
        // The hot path: a valid token is read without a lock; a refresh, if due, runs elsewhere.
        let token = self
            .cache
            .with_valid(|entry| (entry.header.clone(), entry.id));
        let replay = body.replayable().map(|body| Replay {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            body,
        });
        let request = Request::from_parts(parts, body);
        let core = self.clone();
        ResponseFuture::new(async move {
            core.run(request, replay, deadline, token)
                .await
                .map_err(|status| -> BoxError { Box::new(status) })
        })
    }

    async fn run(
        self,
        mut request: Request<RequestBody>,
        replay: Option<Replay>,
        deadline: Option<Deadline>,
        token: Option<(HeaderValue, u64)>,
    ) -> Result<Response<ResponseBody>, Status> {
        let (value, id) = match token {
            Some(token) => token,
            None => self.token(deadline).await?,
        };
        request.headers_mut().insert(self.header.clone(), value);
        let first = match self.attempt(request, deadline, id).await {
            Ok(response) => return Ok(response),
            Err(Failure::Final(status)) => return Err(status),
            Err(Failure::NeverReachedTheService(status)) => status,
        };
        let Some(replay) = replay else {
            return Err(first);
        };
        if deadline.is_some_and(|deadline| deadline.remaining(Instant::now()).is_zero()) {
            return Err(first);
        }
        tracing::debug!(
            host = %self.transport.authority(),
            why = first.message(),
            "sending the call again: it never reached the service"
        );
        self.again(replay, deadline).await
    }

    /// The one retry: another token if the last was refused (the cache hands out no refused
    /// token), what is left of the deadline, and no further retry whatever happens.
    async fn again(
        &self,
        replay: Replay,
        deadline: Option<Deadline>,
    ) -> Result<Response<ResponseBody>, Status> {
        let (value, id) = self.token(deadline).await?;
        let mut request = replay.request();
        request.headers_mut().insert(self.header.clone(), value);
        if let Some(deadline) = deadline {
            deadline.refresh_header(request.headers_mut(), Instant::now());
        }
        self.attempt(request, deadline, id)
            .await
            .map_err(Failure::into_status)
    }

    /// Sends the request, which carries the token `id`, and tells the cache how the token
    /// fared: the response, or why there is none and whether sending it again is safe.
    async fn attempt(
        &self,
        request: Request<RequestBody>,
        deadline: Option<Deadline>,
        id: u64,
    ) -> Result<Response<ResponseBody>, Failure> {
        match self.transport.send(request, deadline).await {
            Ok(response) => {
                self.cache.passed(id);
                Ok(response)
            }
            // After a refusal the cache hands out no refused token: asking it again gives
            // another one (or fails fast).
            Err(SendError::NonGrpcAnswer(answer)) if answer.is_token_refusal() => {
                let status = self.refusal(&answer);
                self.cache.refused(id, status.message().into());
                Err(Failure::NeverReachedTheService(with_source(status, answer)))
            }
            Err(SendError::NonGrpcAnswer(answer)) => Err(Failure::Final(self.not_grpc(answer))),
            Err(SendError::NeverProcessed(status)) => Err(Failure::NeverReachedTheService(status)),
            Err(SendError::Failed(status)) => Err(Failure::Final(status)),
        }
    }

    /// A token when none was cached: the connection is dialled meanwhile, so a cold call pays
    /// the slower of the two, not their sum.
    async fn token(&self, deadline: Option<Deadline>) -> Result<(HeaderValue, u64), Status> {
        self.transport.prepare();
        match self.cache.wait(deadline.map(|d| d.at())).await {
            Ok(entry) => Ok((entry.header.clone(), entry.id)),
            Err(error) => Err(crate::auth::no_token(&self.cache, error, deadline)),
        }
    }

    /// The status of a front-end refusal of the token (HTTP 401), with what to check.
    fn refusal(&self, answer: &NonGrpcAnswer) -> Status {
        let audience = self.cache.audience();
        Status::unauthenticated(format!(
            "{} refused the ID token: {answer}. The token's audience was {audience}; Cloud Run \
             accepts the service's own URL and its custom audiences, so if you call it at another \
             URL (a custom domain, a load balancer), set `audience` to a custom audience of the \
             service (`gcloud run services update SERVICE --add-custom-audiences=AUDIENCE`). If \
             the audience is right, check this machine's clock: a token looks expired to a \
             server whose clock disagrees",
            self.transport.authority()
        ))
    }

    /// The status of any other answer that is not gRPC: gRPC's HTTP mapping, the page's own
    /// words, and what usually causes it on Cloud Run.
    fn not_grpc(&self, answer: NonGrpcAnswer) -> Status {
        let host = self.transport.authority();
        let advice = match answer.status.as_u16() {
            403 => {
                let who = self
                    .cache
                    .current()
                    .and_then(|token| token.email().map(|email| format!(" ({email})")))
                    .unwrap_or_default();
                format!(
                    "the calling identity{who} may not invoke this service: grant it \
                     roles/run.invoker (`gcloud run services add-iam-policy-binding SERVICE \
                     --member=serviceAccount:EMAIL --role=roles/run.invoker`)"
                )
            }
            404 => "nothing serves this path there: check the host, and that the service is \
                    deployed and serves this gRPC service"
                .to_owned(),
            429 => "no instance could take the call (the service may be at its maximum number \
                    of instances); retry with backoff, or raise its max instances or concurrency"
                .to_owned(),
            502 | 503 => "the service could not answer: it may be starting, crashing or \
                          overloaded; if it never answers, check that it serves gRPC over \
                          cleartext HTTP/2 and is deployed with `--use-http2`"
                .to_owned(),
            504 => "the service did not answer within Cloud Run's request timeout (`--timeout`, \
                    300 s by default, at most 3600 s)"
                .to_owned(),
            _ => "the server did not answer with gRPC".to_owned(),
        };
        let status = Status::new(
            answer.code(),
            format!("{host} answered {answer}, not gRPC: {advice}"),
        );
        with_source(status, answer)
    }

    /// The request's URI with this channel's scheme and host: tonic sends a path.
    fn uri(&self, uri: Uri) -> Uri {
        let mut parts = uri.into_parts();
        parts.scheme = Some(self.transport.scheme().clone());
        parts.authority = Some(self.transport.authority().clone());
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        Uri::from_parts(parts).unwrap_or_default()
    }
}

/// Why an attempt gave no response.
enum Failure {
    /// The front end refused the token, or the server provably never processed the call:
    /// sending it again cannot run anything twice.
    NeverReachedTheService(Status),
    /// Anything else: the call may have run.
    Final(Status),
}

impl Failure {
    fn into_status(self) -> Status {
        match self {
            Failure::NeverReachedTheService(status) | Failure::Final(status) => status,
        }
    }
}

fn with_source(mut status: Status, answer: NonGrpcAnswer) -> Status {
    status.set_source(Arc::new(answer));
    status
}

impl Service<Request<tonic::body::Body>> for ChannelService {
    type Response = Response<ResponseBody>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Connections are found or made per call; calls beyond a connection's stream limit
        // wait there, within their deadline.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> ResponseFuture {
        self.start(request)
    }
}
