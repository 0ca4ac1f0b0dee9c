//! The HTTP client of the token sources: one request to a token endpoint (the metadata server,
//! OAuth, IAM Credentials), bounded in time and in size.
//!
//! A fetch happens about once an hour, so nothing is pooled: the connection closes with the
//! answer, and nothing is left behind on a runtime that may go away. An https endpoint is
//! reached through the proxy `HTTPS_PROXY` names (unless `NO_PROXY` lists it), as the channel
//! does; plain http (the metadata server) never is.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

use crate::error::{Cause, chain};
use crate::proxy::tunnel;

/// Everything but RFC 3986's unreserved characters is percent-encoded in the query values and
/// path segments we build (an audience URL, a service account's email).
pub(crate) const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `application/x-www-form-urlencoded`: `name=value&…`, values percent-encoded.
pub(crate) fn form(fields: &[(&str, &str)]) -> String {
    let mut body = String::new();
    for (name, value) in fields {
        if !body.is_empty() {
            body.push('&');
        }
        body.push_str(name);
        body.push('=');
        body.extend(percent_encoding::utf8_percent_encode(value, UNRESERVED));
    }
    body
}

/// Token answers are small; anything longer is refused rather than read into memory.
const MAX_BODY: usize = 1 << 20;

/// An answer, read in full.
pub(crate) struct Response {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Response {
    /// The media type of the body, lower-cased and without parameters (`text/html`).
    pub(crate) fn content_type(&self) -> Option<String> {
        let value = self.headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let media = value.split(';').next().unwrap_or_default().trim();
        Some(media.to_ascii_lowercase())
    }

    /// The endpoint's clock when it answered: its `Date` header, if there is a valid one.
    pub(crate) fn date(&self) -> Option<SystemTime> {
        let value = self.headers.get(header::DATE)?.to_str().ok()?;
        httpdate::parse_http_date(value).ok()
    }
}

/// What went wrong on the way; the caller turns it into a [`crate::token::TokenError`].
pub(crate) enum Failure {
    /// No answer: the connection failed, or the answer could not be read.
    Unreachable {
        cause: String,
        source: Option<Cause>,
    },
    /// No answer within the time given.
    Timeout(Duration),
}

impl Failure {
    fn unreachable(cause: String, source: Cause) -> Self {
        Self::Unreachable {
            cause,
            source: Some(source),
        }
    }
}

/// Sends `request` (absolute URI, `http` or `https`) and reads the answer, all within `timeout`.
pub(crate) async fn send(
    request: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<Response, Failure> {
    match tokio::time::timeout(timeout, send_unbounded(request)).await {
        Ok(result) => result,
        Err(_) => Err(Failure::Timeout(timeout)),
    }
}

async fn send_unbounded(request: Request<Full<Bytes>>) -> Result<Response, Failure> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    if request.uri().scheme() != Some(&http::uri::Scheme::HTTPS) {
        // Plain http is only ever the metadata server (or a cloud's instance-metadata address)
        // and loopback emulators: never through a proxy.
        return exchange(http, request).await;
    }
    // Built only for https, so that plain-http endpoints work on machines without a CA bundle.
    let tls = crate::tls::client_config(&[])
        .map_err(|e| Failure::unreachable(e.to_string(), Arc::new(e)))?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1();
    match crate::proxy::proxy_for(request.uri()) {
        Some(proxy) => exchange(https.wrap_connector(tunnel(&proxy, http)), request).await,
        None => exchange(https.wrap_connector(http), request).await,
    }
}

async fn exchange<C>(connector: C, request: Request<Full<Bytes>>) -> Result<Response, Failure>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    // No idle connection is kept: the next fetch is an hour away.
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector);
    let response = client.request(request).await.map_err(|e| {
        // "client error (Connect)" says less than what it wraps: name the cause.
        let cause = match std::error::Error::source(&e) {
            Some(inner) => chain(inner),
            None => chain(&e),
        };
        Failure::unreachable(cause, Arc::new(e))
    })?;
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| Failure::unreachable(format!("reading the answer: {e}"), Arc::from(e)))?
        .to_bytes();
    Ok(Response {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use percent_encoding::utf8_percent_encode;

    #[test]
    fn encodes_urls_for_a_query() {
        let encoded = utf8_percent_encode("https://svc-x.a.run.app/a b?c=d&e~", super::UNRESERVED);
        assert_eq!(
            encoded.to_string(),
            "https%3A%2F%2Fsvc-x.a.run.app%2Fa%20b%3Fc%3Dd%26e~"
        );
    }
}
