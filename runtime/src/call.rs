//! What generated wrappers need at run time: per-call options and the retry-once rule.

use std::future::Future;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataKey, MetadataMap, MetadataValue};
use tonic::{Code, Request, Response, Status};

use crate::token::TokenError;

/// Per-call settings of a generated wrapper: a deadline and extra metadata.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    timeout: Option<Duration>,
    metadata: MetadataMap,
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

/// Makes a unary call, and makes it once more when the server rejected the token
/// (`UNAUTHENTICATED` from the server; the channel has already dropped that token, so the second
/// attempt carries a newly fetched one). Nothing else is retried.
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
        Err(status) if rejected_by_server(&status) => {
            tracing::debug!(
                message = status.message(),
                "server rejected the ID token; retrying once"
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
