//! An emulated identity-provider endpoint that hands out subject tokens over HTTP: what the
//! `credential_source.url` of an `external_account` file points at.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderName;
use http::{Method, Request, StatusCode};

use crate::fault::{Fault, Injection};
use crate::http::{Handler, HttpServer, Reply, json, respond, text};
use crate::sts::{IdentityProvider, StsEmulator};
use crate::sync::lock;
use crate::tls::TestCa;

/// The path it serves tokens at.
pub const SUBJECT_TOKEN_PATH: &str = "/token";

/// A local endpoint that mints a fresh subject token on every `GET /token`, as GitHub Actions'
/// `ACTIONS_ID_TOKEN_REQUEST_URL` or Azure's metadata identity endpoint do, signed by the
/// identity provider an [`StsEmulator`] trusts.
///
/// It answers the token as text, or with [`json_field`](SubjectTokenServerBuilder::json_field)
/// as `{FIELD: token}`; with [`require_header`](SubjectTokenServerBuilder::require_header) it
/// answers 401 (JSON, like GitHub's) to a request without that header and value. Faults:
/// `Status`, `Html`, `Hang`, `Disconnect` as everywhere; `Garbage` answers 200 with bytes
/// that are not UTF-8 (or, in JSON, not JSON); `MissingToken` 200 with an empty body (`{}` in
/// JSON); `NoExp` a well-signed token without `exp`, which STS refuses.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use cloud_run_grpc_testkit::{StsEmulator, SubjectTokenServer};
///
/// let sts = StsEmulator::start().await?;
/// let idp = SubjectTokenServer::builder(&sts)
///     .json_field("value")
///     .require_header("authorization", "Bearer request-token")
///     .start()
///     .await?;
/// let source = idp.credential_source(); // {"url": …, "headers": {…}, "format": {…}}
/// assert_eq!(source["format"]["subject_token_field_name"], "value");
/// # Ok(()) }
/// ```
pub struct SubjectTokenServer {
    state: Arc<State>,
    server: HttpServer,
    url: String,
}

/// Configures a [`SubjectTokenServer`]; [`start`](SubjectTokenServerBuilder::start) runs it.
#[derive(Debug)]
pub struct SubjectTokenServerBuilder {
    provider: IdentityProvider,
    json_field: Option<String>,
    required: Option<(String, String)>,
    latency: Duration,
    tls: Option<TestCa>,
}

struct State {
    provider: IdentityProvider,
    json_field: Option<String>,
    required: Option<(HeaderName, String)>,
    injection: Injection,
    requests: AtomicUsize,
    rejected: AtomicUsize,
    claims: Mutex<serde_json::Value>,
}

impl SubjectTokenServerBuilder {
    /// Answers `{field: token}` as JSON instead of the bare token.
    pub fn json_field(mut self, field: impl Into<String>) -> Self {
        self.json_field = Some(field.into());
        self
    }

    /// Answers 401 unless the request carries this header with this value.
    pub fn require_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.required = Some((name.into(), value.into()));
        self
    }

    /// Latency added to every request.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Serves HTTPS with a certificate from `ca` (for `localhost` and `127.0.0.1`).
    pub fn tls(mut self, ca: TestCa) -> Self {
        self.tls = Some(ca);
        self
    }

    /// Binds `127.0.0.1:0` and starts serving on the current Tokio runtime, which it keeps
    /// running on until dropped; an error outside a runtime.
    pub async fn start(self) -> io::Result<SubjectTokenServer> {
        let required = self
            .required
            .map(|(name, value)| {
                HeaderName::from_bytes(name.as_bytes())
                    .map(|name| (name, value))
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
            })
            .transpose()?;
        let state = Arc::new(State {
            provider: self.provider,
            json_field: self.json_field,
            required,
            injection: Injection::new(self.latency),
            requests: AtomicUsize::new(0),
            rejected: AtomicUsize::new(0),
            claims: Mutex::new(serde_json::Value::Null),
        });
        let runtime = crate::runtime::current()?;
        let server = HttpServer::start(&runtime, state.clone(), self.tls.as_ref(), None)?;
        let url = format!("{}{SUBJECT_TOKEN_PATH}", server.base_url());
        Ok(SubjectTokenServer { state, server, url })
    }
}

impl SubjectTokenServer {
    crate::fault::fault_knobs!(SubjectTokenServer, "requests");

    /// A builder minting tokens `sts` accepts, answered as text, with no header required.
    pub fn builder(sts: &StsEmulator) -> SubjectTokenServerBuilder {
        SubjectTokenServerBuilder {
            provider: sts.identity_provider(),
            json_field: None,
            required: None,
            latency: Duration::ZERO,
            tls: None,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT/token` (`https://` with TLS).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The `credential_source` of an `external_account` file that reads from it: its `url`,
    /// the required header if any, and the JSON `format` if it answers JSON.
    pub fn credential_source(&self) -> serde_json::Value {
        let mut source = serde_json::json!({ "url": self.url });
        if let Some((name, value)) = &self.state.required {
            source["headers"] = serde_json::json!({ name.as_str(): value });
        }
        if let Some(field) = &self.state.json_field {
            source["format"] =
                serde_json::json!({ "type": "json", "subject_token_field_name": field });
        }
        source
    }

    /// Mints its tokens with `claims` added or replacing the defaults from now on (see
    /// [`StsEmulator::subject_token_with`]); `Value::Null` restores them.
    pub fn set_claims(&self, claims: serde_json::Value) {
        *lock(&self.state.claims) = claims;
    }

    /// How many `GET /token` requests it received.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// How many it refused for a missing or wrong required header.
    pub fn rejected(&self) -> usize {
        self.state.rejected.load(Ordering::SeqCst)
    }

    /// Stops it: the port is closed and every connection dropped.
    pub async fn shutdown(&self) {
        self.server.shutdown().await;
    }
}

impl fmt::Debug for SubjectTokenServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubjectTokenServer")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Handler for State {
    async fn handle(self: Arc<Self>, request: Request<Bytes>) -> Reply {
        if request.uri().path() != SUBJECT_TOKEN_PATH || request.method() != Method::GET {
            return Ok(text(StatusCode::NOT_FOUND, "not found"));
        }
        self.requests.fetch_add(1, Ordering::SeqCst);
        if let Some(fault) = self.injection.next().await {
            return self.inject(fault).await;
        }
        if let Some((name, value)) = &self.required
            && request.headers().get(name).and_then(|v| v.to_str().ok()) != Some(value.as_str())
        {
            self.rejected.fetch_add(1, Ordering::SeqCst);
            return Ok(json(
                StatusCode::UNAUTHORIZED,
                &serde_json::json!({ "message": "Bad credentials" }),
            ));
        }
        let claims = lock(&self.claims).clone();
        Ok(self.answer(&self.provider.mint(&claims)))
    }
}

impl State {
    fn answer(&self, token: &str) -> http::Response<http_body_util::Full<Bytes>> {
        match &self.json_field {
            Some(field) => json(StatusCode::OK, &serde_json::json!({ field: token })),
            None => text(StatusCode::OK, token.to_owned()),
        }
    }

    async fn inject(&self, fault: Fault) -> Reply {
        if let Some(reply) = self.injection.common(&fault).await {
            return reply;
        }
        Ok(match fault {
            Fault::Garbage if self.json_field.is_some() => respond(
                StatusCode::OK,
                "application/json; charset=utf-8",
                "this is not JSON",
            ),
            Fault::Garbage => respond(
                StatusCode::OK,
                "application/octet-stream",
                Bytes::from_static(b"\xff\xfe\xfd not UTF-8"),
            ),
            Fault::NoExp => {
                let mut claims = lock(&self.claims).clone();
                if !claims.is_object() {
                    claims = serde_json::json!({});
                }
                // A `null` claim is left out.
                claims["exp"] = serde_json::Value::Null;
                self.answer(&self.provider.mint(&claims))
            }
            _ if self.json_field.is_some() => json(StatusCode::OK, &serde_json::json!({})),
            _ => text(StatusCode::OK, ""),
        })
    }
}
