//! The HTTP/1.1 server the emulators of Google's HTTP endpoints share.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::sync::lock;
use crate::tls::TestCa;

/// The largest request body an emulator reads.
const MAX_BODY: usize = 1 << 20;
/// How long a client gets to finish a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a handler answers: a response, or [`Dropped`] to close the connection unanswered.
pub(crate) type Reply = Result<Response<Full<Bytes>>, Dropped>;

/// The connection is closed without an answer (a crashed or unreachable server).
#[derive(Debug)]
pub(crate) struct Dropped;

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped by the emulator")
    }
}

impl std::error::Error for Dropped {}

/// An emulated endpoint: answers one request, its body already read.
pub(crate) trait Handler: Send + Sync + 'static {
    fn handle(self: Arc<Self>, request: Request<Bytes>) -> impl Future<Output = Reply> + Send;
}

/// A running HTTP/1.1 server on 127.0.0.1. Dropping it stops it and closes every connection,
/// which also ends every handler still waiting (latency, hangs).
pub(crate) struct HttpServer {
    addr: SocketAddr,
    tls: bool,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl HttpServer {
    /// Serves `handler` on `addr` (default `127.0.0.1:0`) on `runtime`: over HTTPS with a
    /// certificate from `ca` (for `localhost` and `127.0.0.1`), else over plain HTTP.
    pub(crate) fn start<H: Handler>(
        runtime: &Handle,
        handler: Arc<H>,
        ca: Option<&TestCa>,
        addr: Option<SocketAddr>,
    ) -> io::Result<Self> {
        let tls = ca
            .map(|ca| ca.http1_server_config("localhost"))
            .transpose()?;
        let addr = addr.unwrap_or((std::net::Ipv4Addr::LOCALHOST, 0).into());
        let listener = crate::runtime::bind(runtime, addr)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let served_over_tls = tls.is_some();
        let task = runtime.spawn(accept_loop(listener, handler, tls, stopped));
        Ok(HttpServer {
            addr,
            tls: served_over_tls,
            stop,
            task: Mutex::new(Some(task)),
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, or `https://…` with TLS.
    pub(crate) fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops accepting, closes every connection and waits until all of it is gone.
    pub(crate) async fn shutdown(&self) {
        self.stop.send_replace(true);
        let task = lock(&self.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

async fn accept_loop<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    stopped: watch::Receiver<bool>,
) {
    // Ends when the server is told to stop or its handle is dropped.
    crate::runtime::serve_until_stopped(listener, stopped, |stream| {
        Some(serve(stream, handler.clone(), tls.clone()))
    })
    .await;
}

async fn serve<H: Handler>(
    stream: TcpStream,
    handler: Arc<H>,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let handler = handler.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|_| Dropped)?
                .to_bytes();
            handler.handle(Request::from_parts(parts, body)).await
        }
    });
    let http = hyper::server::conn::http1::Builder::new();
    match tls {
        None => {
            let _ = http.serve_connection(TokioIo::new(stream), service).await;
        }
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            if let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
            {
                let _ = http.serve_connection(TokioIo::new(stream), service).await;
            }
        }
    }
}

/// A response with a body and content type.
pub(crate) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    respond(status, "application/json; charset=utf-8", body.to_string())
}

/// A plain-text response.
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", body)
}

/// A request refused with RFC 6749's error JSON, as Google's token endpoints (OAuth, STS)
/// answer: 400 `{"error", "error_description"}`.
pub(crate) struct OAuthError {
    pub(crate) error: &'static str,
    pub(crate) description: String,
}

pub(crate) fn oauth_error(error: &'static str, description: impl Into<String>) -> OAuthError {
    OAuthError {
        error,
        description: description.into(),
    }
}

impl OAuthError {
    pub(crate) fn reply(self) -> Reply {
        Ok(json(
            StatusCode::BAD_REQUEST,
            &oauth_error_body(self.error, &self.description),
        ))
    }
}

/// RFC 6749's error JSON: `{"error": error, "error_description": description}`.
pub(crate) fn oauth_error_body(error: &str, description: &str) -> serde_json::Value {
    serde_json::json!({ "error": error, "error_description": description })
}

/// Everything but RFC 3986's unreserved characters, which stay as they are.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The value of query or form parameter `name`, decoded (`+` is a space, `%XX` a byte).
pub(crate) fn form_param(encoded: &str, name: &str) -> Option<String> {
    encoded.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (form_decode(key) == name).then(|| form_decode(value))
    })
}

fn form_decode(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

/// Percent-encodes a query or form value (everything but unreserved characters).
pub(crate) fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_params_decode() {
        let query = "audience=https%3A%2F%2Fa.run.app%2Fx&format=full&bad=%zz+%4";
        assert_eq!(
            form_param(query, "audience").as_deref(),
            Some("https://a.run.app/x")
        );
        assert_eq!(form_param(query, "format").as_deref(), Some("full"));
        assert_eq!(form_param(query, "bad").as_deref(), Some("%zz %4"));
        assert_eq!(form_param(query, "missing"), None);
        let value = "https://x.run.app/?a=b c&d";
        assert_eq!(
            form_param(&format!("v={}", percent_encode(value)), "v").as_deref(),
            Some(value)
        );
    }
}
