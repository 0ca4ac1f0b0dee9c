//! What generated wrappers need at run time: per-call options.

use std::future::Future;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataKey, MetadataMap, MetadataValue};
use tonic::{Request, Response, Status};

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
    /// Calls made with these options time out after `timeout` (sent as `grpc-timeout`, which
    /// cannot say more than about 11,000 years: longer is cut to a year).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout.min(crate::deadline::A_YEAR));
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

/// Makes a call of a generated wrapper: applies the wrapper's options and returns the response
/// message. The channel itself retries what may be retried (see
/// [`CloudRunChannel`](crate::CloudRunChannel)); nothing is retried here, so the message is
/// never copied.
pub async fn unary<Req, Resp, F, Fut>(
    options: &CallOptions,
    request: Req,
    call: F,
) -> Result<Resp, Status>
where
    F: FnOnce(Request<Req>) -> Fut,
    Fut: Future<Output = Result<Response<Resp>, Status>>,
{
    call(options.request(request))
        .await
        .map(Response::into_inner)
}
