//! What generated wrappers need at run time: per-call options and the retry-once rule.

use std::future::Future;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataKey, MetadataMap, MetadataValue};
use tonic::{Code, Request, Response, Status};

use crate::token::TokenError;

/// Per-call settings of a generated wrapper: a deadline and extra metadata.
#[derive(Clone, Default)]
pub struct CallOptions {
    timeout: Option<Duration>,
    metadata: MetadataMap,
}

/// The timeout and the metadata keys, never their values: a wrapper's `with_metadata` may have
/// attached an end user's credential (`authorization`), and wrappers print their options.
impl std::fmt::Debug for CallOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self
            .metadata
            .keys()
            .map(|key| match key {
                tonic::metadata::KeyRef::Ascii(key) => key.as_str(),
                tonic::metadata::KeyRef::Binary(key) => key.as_str(),
            })
            .collect();
        f.debug_struct("CallOptions")
            .field("timeout", &self.timeout)
            .field("metadata_keys", &keys)
            .finish()
    }
}

impl CallOptions {
    /// Calls made with these options time out after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Calls made with these options carry `key: value`.
    pub fn metadata(mut self, key: MetadataKey<Ascii>, value: MetadataValue<Ascii>) -> Self {
        self.metadata.append(key, value);
        self
    }

    /// `message` as a request with these options applied.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        self.apply(&mut request);
        request
    }

    /// Applies these options to a request.
    pub fn apply<T>(&self, request: &mut Request<T>) {
        if let Some(timeout) = self.timeout {
            request.set_timeout(timeout);
        }
        for entry in self.metadata.iter() {
            if let tonic::metadata::KeyAndValueRef::Ascii(key, value) = entry {
                request.metadata_mut().append(key.clone(), value.clone());
            }
        }
    }
}

/// Makes a call that sends one request message, and makes it once more when the first attempt
/// can safely be repeated:
/// - the server rejected the token (`UNAUTHENTICATED` from the server; the channel has already
///   dropped that token, so the second attempt carries a newly fetched one);
/// - the server refused the stream without processing it (HTTP/2 `GOAWAY` for streams above
///   its last one, or `REFUSED_STREAM`), as a server draining its connections does.
///
/// Nothing else is retried.
pub async fn unary<Req, Resp, F, Fut>(
    options: &CallOptions,
    request: Req,
    mut call: F,
) -> Result<Resp, Status>
where
    Req: Clone,
    F: FnMut(Request<Req>) -> Fut,
    Fut: Future<Output = Result<Response<Resp>, Status>>,
{
    match call(options.request(request.clone())).await {
        Ok(response) => Ok(response.into_inner()),
        Err(status) if rejected_by_server(&status) || never_processed(&status) => {
            tracing::debug!(
                code = ?status.code(),
                message = status.message(),
                "retrying once: the server rejected the token or refused the stream"
            );
            call(options.request(request))
                .await
                .map(Response::into_inner)
        }
        Err(status) => Err(status),
    }
}

/// `UNAUTHENTICATED` that came from the server, not from our own failure to get a token.
pub fn rejected_by_server(status: &Status) -> bool {
    status.code() == Code::Unauthenticated
        && !std::error::Error::source(status).is_some_and(|source| source.is::<TokenError>())
}

/// `UNAVAILABLE` because the server refused the stream before processing it: an HTTP/2 `GOAWAY`
/// whose last stream is below this one, or `REFUSED_STREAM` (RFC 9113 §8.7: safe to retry).
pub fn never_processed(status: &Status) -> bool {
    if status.code() != Code::Unavailable {
        return false;
    }
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        if let Some(h2) = cause.downcast_ref::<h2::Error>() {
            return h2.is_remote()
                && (h2.is_go_away() || h2.reason() == Some(h2::Reason::REFUSED_STREAM));
        }
        source = cause.source();
    }
    false
}
