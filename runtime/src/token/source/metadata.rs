//! ID tokens from the metadata server: Cloud Run, GKE with Workload Identity, GCE.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::Full;
use percent_encoding::utf8_percent_encode;

use crate::fetch::{self as client, Failure, Response, UNRESERVED};
use crate::token::credentials_file::short;
use crate::token::{IdToken, IdTokenSource, TokenError, TokenFuture};

/// The environment variable that points at another metadata server (`host` or `host:port`),
/// as Google's client libraries read it.
pub const METADATA_HOST_ENV: &str = "GCE_METADATA_HOST";

/// The metadata server's link-local address. Google's libraries use the address rather than
/// `metadata.google.internal` so that a broken resolver cannot stop authentication.
pub const DEFAULT_METADATA_HOST: &str = "169.254.169.254";

/// Fetches ID tokens for the workload's own service account from the metadata server.
///
/// `GET http://{host}/computeMetadata/v1/instance/service-accounts/default/identity?audience=…&format=full`
/// with `Metadata-Flavor: Google`.
///
/// ```
/// use std::time::Duration;
/// use cloud_run_grpc::token::{IdTokenSource, MetadataServer};
///
/// let metadata = MetadataServer::with_host("127.0.0.1:8181").timeout(Duration::from_secs(2));
/// assert_eq!(metadata.name(), "metadata server at 127.0.0.1:8181");
/// ```
#[derive(Debug, Clone)]
pub struct MetadataServer {
    host: String,
    timeout: Duration,
}

impl MetadataServer {
    /// The metadata server named by `GCE_METADATA_HOST`, else Google's at 169.254.169.254.
    pub fn new() -> Self {
        let host = std::env::var(METADATA_HOST_ENV)
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| DEFAULT_METADATA_HOST.to_owned());
        Self::with_host(host)
    }

    /// The metadata server at `host` (`host` or `host:port`, no scheme).
    pub fn with_host(host: impl Into<String>) -> Self {
        let host: String = host.into();
        let host = host
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        Self {
            host,
            timeout: Duration::from_secs(10),
        }
    }

    /// How long one request (connect and answer) may take; default 10 seconds.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The `host[:port]` requests go to.
    pub fn host(&self) -> &str {
        &self.host
    }

    async fn fetch_token(&self, audience: &str) -> Result<IdToken, TokenError> {
        let url = format!(
            "/computeMetadata/v1/instance/service-accounts/default/identity?audience={}&format=full",
            utf8_percent_encode(audience, UNRESERVED)
        );
        let source_name = self.name();
        let request = request(&self.host, &url).map_err(|(reason, e)| TokenError::Unsupported {
            source_name: source_name.clone(),
            reason,
            source: Some(Arc::new(e)),
        })?;
        let response = client::send(request, self.timeout).await.map_err(|failure| match failure {
            Failure::Unreachable { cause, source } => TokenError::Unreachable {
                source_name: source_name.clone(),
                cause: format!(
                    "{cause} (outside Google Cloud, set {METADATA_HOST_ENV} to an emulator or use another credential source)"
                ),
                source,
            },
            Failure::Timeout(after) => TokenError::Timeout { source_name: source_name.clone(), after },
        })?;
        if let Err(impostor) = check_flavor(&response) {
            return Err(TokenError::Unsupported {
                source_name,
                reason: format!(
                    "{impostor}; check {METADATA_HOST_ENV} (outside Google Cloud it must name a \
                     metadata emulator), and that no proxy answers in its place"
                ),
                source: None,
            });
        }
        if response.status != StatusCode::OK {
            return Err(TokenError::Status {
                source_name,
                status: response.status.as_u16(),
                body: crate::excerpt::excerpt(&response.body),
            });
        }
        let text = std::str::from_utf8(&response.body).map_err(|_| TokenError::BadToken {
            source_name: source_name.clone(),
            reason: crate::token::JwtError::NotAJwt,
        })?;
        let token = IdToken::from_jwt(text).map_err(|reason| TokenError::BadToken {
            source_name,
            reason,
        })?;
        // The `Date` header, never the token's `iat`: the metadata server hands out the token
        // it cached, up to about 55 minutes old.
        Ok(match response.date() {
            Some(date) => token.with_server_time(date),
            None => token,
        })
    }
}

/// `GET http://{host}{path_and_query}`, as the metadata server wants to be asked; or what is
/// wrong with `host`, and the error that says so.
pub(super) fn request(
    host: &str,
    path_and_query: &str,
) -> Result<Request<Full<Bytes>>, (String, http::Error)> {
    Request::get(format!("http://{host}{path_and_query}"))
        .header("metadata-flavor", "Google")
        .body(Full::<Bytes>::default())
        .map_err(|e| {
            let reason = format!("`{host}` is not a usable host ({e}); check {METADATA_HOST_ENV}");
            (reason, e)
        })
}

/// Every answer of a metadata server carries `Metadata-Flavor: Google`; anything else at its
/// address (a proxy, another service, a captive portal) is refused before its body is read,
/// and the error says what answered.
pub(super) fn check_flavor(response: &Response) -> Result<(), String> {
    let flavor = response.headers.get("metadata-flavor");
    if flavor.is_some_and(|v| v.as_bytes() == b"Google") {
        return Ok(());
    }
    let mut what = format!("HTTP {}", response.status.as_u16());
    if let Some(content_type) = response.content_type() {
        what.push_str(&format!(", {}", short(&content_type, 60)));
    }
    if let Some(server) = response.headers.get(header::SERVER) {
        let server = String::from_utf8_lossy(server.as_bytes());
        what.push_str(&format!(", server `{}`", short(&server, 60)));
    }
    Err(format!(
        "something answered ({what}) without `Metadata-Flavor: Google`, so it is not a metadata \
         server"
    ))
}

impl Default for MetadataServer {
    fn default() -> Self {
        Self::new()
    }
}

impl IdTokenSource for MetadataServer {
    fn fetch<'a>(&'a self, audience: &'a str) -> TokenFuture<'a> {
        Box::pin(self.fetch_token(audience))
    }

    fn name(&self) -> String {
        format!("metadata server at {}", self.host)
    }
}
