//! A one-shot HTTP/1.1 client for token endpoints: a fetch happens about once an hour, so each
//! one uses a fresh connection on the caller's runtime and nothing outlives it.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;

/// An answer, read in full (token answers are small; anything past 1 MiB is refused).
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
}

/// What went wrong on the way; the caller turns it into a [`crate::token::TokenError`].
pub(crate) enum Failure {
    Unreachable(String),
    Timeout(Duration),
}

const MAX_BODY: usize = 1 << 20;

/// Sends `request` (absolute URI, `http` or `https`) and reads the answer, all within `timeout`.
pub(crate) async fn send(
    mut request: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<Response, Failure> {
    match tokio::time::timeout(timeout, send_inner(&mut request)).await {
        Ok(result) => result,
        Err(_) => Err(Failure::Timeout(timeout)),
    }
}

async fn send_inner(request: &mut Request<Full<Bytes>>) -> Result<Response, Failure> {
    let uri = request.uri().clone();
    let authority = uri
        .authority()
        .ok_or_else(|| Failure::Unreachable(format!("{uri} has no host")))?;
    let host = header::HeaderValue::from_str(authority.as_str())
        .map_err(|e| Failure::Unreachable(e.to_string()))?;
    request.headers_mut().insert(header::HOST, host);
    // The path alone goes on the request line.
    if let Some(path) = uri.path_and_query() {
        *request.uri_mut() = path.as_str().parse().unwrap_or_default();
    }

    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let body = std::mem::take(request.body_mut());
    let request = std::mem::replace(request, Request::new(Full::default())).map(|_| body);
    if uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
        // Built only for https, so that plain-http endpoints (the metadata server, emulators)
        // work on machines without a CA bundle.
        let tls =
            crate::tls::client_config(&[]).map_err(|e| Failure::Unreachable(e.to_string()))?;
        let mut connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let io = connector
            .call(uri)
            .await
            .map_err(|e| Failure::Unreachable(chain(&*e)))?;
        exchange(io, request).await
    } else {
        let io = http
            .call(uri)
            .await
            .map_err(|e| Failure::Unreachable(chain(&e)))?;
        exchange(io, request).await
    }
}

async fn exchange<I>(io: I, request: Request<Full<Bytes>>) -> Result<Response, Failure>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| Failure::Unreachable(chain(&e)))?;
    let connection = tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| Failure::Unreachable(chain(&e)))?;
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| Failure::Unreachable(format!("reading the answer: {e}")))?
        .to_bytes();
    drop(sender);
    connection.abort();
    Ok(Response {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// An error and its causes on one line: hyper's top-level messages alone say too little.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved characters pass through).
pub(crate) fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3 / 2);
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_urls_for_a_query() {
        assert_eq!(
            super::encode_query_value("https://svc-x.a.run.app/a b?c=d&e"),
            "https%3A%2F%2Fsvc-x.a.run.app%2Fa%20b%3Fc%3Dd%26e"
        );
    }
}
