//! An emulator of the GCE / Cloud Run / GKE metadata server.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode};

use cloud_run_grpc::token::{Clock, SystemClock};

use crate::access_tokens::AccessTokens;
use crate::fault::{Fault, Injection};
use crate::http::{Handler, HttpServer, Reply, form_param, json, text};
use crate::issuer::{DEFAULT_EMAIL, DEFAULT_PROJECT_ID, Issuer};
use crate::sync::lock;
use crate::verifier::Verifier;

/// The path of the ID-token endpoint.
pub const IDENTITY_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/identity";
/// The path of the access-token endpoint.
pub const TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
/// The path where the emulator serves the JWKS of its issuer (Google serves it at
/// `https://www.googleapis.com/oauth2/v3/certs`).
pub const JWKS_PATH: &str = "/oauth2/v3/certs";

const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
const DEFAULT_REUSE_UNTIL_REMAINING: Duration = Duration::from_secs(300);
const ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3599);

/// An emulated metadata server: a real HTTP/1.1 server on `127.0.0.1` issuing RS256 ID tokens.
///
/// Point the code under test at it with `GCE_METADATA_HOST={server.host()}`, or hand
/// [`host`](MetadataEmulator::host) to whatever takes the metadata host.
///
/// Endpoints (all `GET`; those under `/computeMetadata/` require `Metadata-Flavor: Google`, else
/// 403; every answer carries `Metadata-Flavor: Google`):
/// - `/computeMetadata/v1/instance/service-accounts/default/identity?audience=…&format=full`:
///   an ID token (`text/plain`) for that audience; `format=full` adds `email` and
///   `email_verified`; no audience is a 400.
/// - `/computeMetadata/v1/instance/service-accounts/default/token`: an access token,
///   `{"access_token", "expires_in", "token_type": "Bearer"}`, recorded in
///   [`access_tokens`](MetadataEmulator::access_tokens).
/// - `/computeMetadata/v1/instance/service-accounts/default/email`, `/computeMetadata/v1/project/project-id`.
/// - `/` and `/computeMetadata/v1/`: the probe, 200.
/// - `/oauth2/v3/certs`: the issuer's JWKS.
///
/// Like Google's, it hands out the **same** ID token per audience (and format) until the token
/// is within [`reuse_until_remaining`](MetadataEmulatorBuilder::reuse_until_remaining) of its
/// `exp` (default 5 minutes, at most half the token's lifetime, so short-lived tokens are
/// reused for the first half of their life), then mints a new one. A client that refreshes
/// earlier than that margin gets its old token back.
///
/// Latency and injected [`Fault`]s apply to the two token endpoints (`identity` and `token`);
/// the probe, email, project id and JWKS always answer. Faults, latency and lifetime can be
/// changed while it runs. Dropping it (or
/// [`shutdown`](MetadataEmulator::shutdown)) closes the port and every connection, which ends all
/// injected latency and hangs.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use std::time::Duration;
/// use cloud_run_grpc_testkit::{Fault, MetadataEmulator};
///
/// let metadata = MetadataEmulator::builder()
///     .token_lifetime(Duration::from_secs(120))
///     .start()
///     .await?;
/// let host = metadata.host(); // "127.0.0.1:PORT", the form GCE_METADATA_HOST takes
/// assert!(host.starts_with("127.0.0.1:"));
/// metadata.fail_with(Fault::Status(503, "try later".into()));
/// metadata.heal();
/// assert_eq!(metadata.requests("https://svc.a.run.app"), 0);
/// # Ok(()) }
/// ```
pub struct MetadataEmulator {
    state: Arc<State>,
    server: tokio::sync::Mutex<Option<HttpServer>>,
    addr: SocketAddr,
    runtime: tokio::runtime::Handle,
}

/// Configures a [`MetadataEmulator`]; [`start`](MetadataEmulatorBuilder::start) runs it.
#[derive(Debug)]
pub struct MetadataEmulatorBuilder {
    clock: Arc<dyn Clock>,
    issuer: Issuer,
    email: String,
    project_id: String,
    config: Config,
    latency: Duration,
    access_tokens: AccessTokens,
}

#[derive(Clone, Debug)]
struct Config {
    lifetime: Duration,
    reuse_until_remaining: Duration,
    cache_tokens: bool,
}

struct State {
    clock: Arc<dyn Clock>,
    issuer: Issuer,
    email: String,
    project_id: String,
    config: Mutex<Config>,
    injection: Injection,
    cache: Mutex<HashMap<(String, bool), Cached>>,
    per_audience: Mutex<HashMap<String, usize>>,
    identity_requests: AtomicUsize,
    access_token_requests: AtomicUsize,
    http_requests: AtomicUsize,
    tokens_minted: AtomicUsize,
    access_tokens: AccessTokens,
}

struct Cached {
    token: String,
    issued: SystemTime,
    expires: SystemTime,
}

impl MetadataEmulatorBuilder {
    /// The lifetime of the ID tokens it mints (default one hour, as Google's; whole seconds,
    /// at least one).
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.lifetime = lifetime;
        self
    }

    /// Latency added to every token request (default none).
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// The service account's email (default [`DEFAULT_EMAIL`]).
    pub fn email(mut self, email: impl Into<String>) -> Self {
        self.email = email.into();
        self
    }

    /// The project id it reports (default [`DEFAULT_PROJECT_ID`]).
    pub fn project_id(mut self, project_id: impl Into<String>) -> Self {
        self.project_id = project_id.into();
        self
    }

    /// The clock it mints tokens by (`iat`, `exp`) and judges their reuse by (default the
    /// system's). Share a [`ManualClock`](cloud_run_grpc::token::ManualClock) with the client's
    /// token cache and the front end to move through token lifetimes without waiting.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The issuer that signs its ID tokens (default [`Issuer::new`]).
    pub fn issuer(mut self, issuer: Issuer) -> Self {
        self.issuer = issuer;
        self
    }

    /// A cached ID token is handed out again while more than this much of its life remains
    /// (default 5 minutes, clamped to half the token's lifetime).
    pub fn reuse_until_remaining(mut self, remaining: Duration) -> Self {
        self.config.reuse_until_remaining = remaining;
        self
    }

    /// Whether to reuse ID tokens at all (default `true`); `false` mints one per request.
    pub fn cache_tokens(mut self, cache: bool) -> Self {
        self.config.cache_tokens = cache;
        self
    }

    /// The registry its access tokens go to (default a new one), to share with the IAM emulator.
    pub fn access_tokens(mut self, registry: AccessTokens) -> Self {
        self.access_tokens = registry;
        self
    }

    /// Binds `127.0.0.1:0` and starts serving on the current Tokio runtime, which it keeps
    /// running on (restarts included) until dropped; an error outside a runtime.
    pub async fn start(self) -> io::Result<MetadataEmulator> {
        let state = Arc::new(State {
            clock: self.clock,
            issuer: self.issuer,
            email: self.email,
            project_id: self.project_id,
            config: Mutex::new(self.config),
            injection: Injection::new(self.latency),
            cache: Mutex::default(),
            per_audience: Mutex::default(),
            identity_requests: AtomicUsize::new(0),
            access_token_requests: AtomicUsize::new(0),
            http_requests: AtomicUsize::new(0),
            tokens_minted: AtomicUsize::new(0),
            access_tokens: self.access_tokens,
        });
        let runtime = crate::runtime::current()?;
        let server = HttpServer::start(&runtime, state.clone(), None, None)?;
        Ok(MetadataEmulator {
            addr: server.addr(),
            runtime,
            state,
            server: tokio::sync::Mutex::new(Some(server)),
        })
    }
}

impl MetadataEmulator {
    crate::fault::fault_knobs!(MetadataEmulator, "token requests");

    /// A builder with Google's defaults.
    pub fn builder() -> MetadataEmulatorBuilder {
        MetadataEmulatorBuilder {
            clock: Arc::new(SystemClock),
            issuer: Issuer::new(),
            email: DEFAULT_EMAIL.to_owned(),
            project_id: DEFAULT_PROJECT_ID.to_owned(),
            config: Config {
                lifetime: DEFAULT_LIFETIME,
                reuse_until_remaining: DEFAULT_REUSE_UNTIL_REMAINING,
                cache_tokens: true,
            },
            latency: Duration::ZERO,
            access_tokens: AccessTokens::new(),
        }
    }

    /// Starts one with the defaults (one-hour tokens, no latency, no fault).
    pub async fn start() -> io::Result<MetadataEmulator> {
        MetadataEmulator::builder().start().await
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`: the form `GCE_METADATA_HOST` takes.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The issuer signing its tokens.
    pub fn issuer(&self) -> &Issuer {
        &self.state.issuer
    }

    /// A verifier trusting exactly its issuer's key (for [`FrontEnd`](crate::FrontEnd)).
    pub fn verifier(&self) -> Verifier {
        self.state.issuer.verifier()
    }

    /// Its service account's email.
    pub fn email(&self) -> &str {
        &self.state.email
    }

    /// The registry its access tokens are recorded in.
    pub fn access_tokens(&self) -> &AccessTokens {
        &self.state.access_tokens
    }

    /// Changes the lifetime of tokens minted from now on. Tokens already handed out keep
    /// being reused as usual; [`clear_token_cache`](MetadataEmulator::clear_token_cache) forgets them.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.state.config().lifetime = lifetime;
    }

    /// Changes the reuse margin (see [`MetadataEmulatorBuilder::reuse_until_remaining`]).
    pub fn set_reuse_until_remaining(&self, remaining: Duration) {
        self.state.config().reuse_until_remaining = remaining;
    }

    /// Forgets the cached ID tokens: the next request per audience mints a new one.
    pub fn clear_token_cache(&self) {
        self.state.lock_cache().clear();
    }

    /// How many ID-token requests named this audience (every one received, whatever the answer).
    pub fn requests(&self, audience: &str) -> usize {
        lock(&self.state.per_audience)
            .get(audience)
            .copied()
            .unwrap_or(0)
    }

    /// How many ID-token requests it received, all audiences together.
    pub fn total_requests(&self) -> usize {
        self.state.identity_requests.load(Ordering::SeqCst)
    }

    /// How many access-token requests it received.
    pub fn access_token_requests(&self) -> usize {
        self.state.access_token_requests.load(Ordering::SeqCst)
    }

    /// How many HTTP requests it received, on any path.
    pub fn http_requests(&self) -> usize {
        self.state.http_requests.load(Ordering::SeqCst)
    }

    /// How many distinct ID tokens it minted (a reused token counts once).
    pub fn tokens_minted(&self) -> usize {
        self.state.tokens_minted.load(Ordering::SeqCst)
    }

    /// Stops it: the port is closed and every connection dropped, which also ends every
    /// injected latency and hang. [`restart`](MetadataEmulator::restart) brings it back.
    pub async fn shutdown(&self) {
        let server = self.server.lock().await.take();
        if let Some(server) = server {
            server.shutdown().await;
        }
    }

    /// Stops it if it runs, then serves again on the same port, keeping its cache, counters,
    /// faults and settings (a metadata server that went away and came back).
    pub async fn restart(&self) -> io::Result<()> {
        let mut server = self.server.lock().await;
        if let Some(old) = server.take() {
            old.shutdown().await;
        }
        let restarted =
            HttpServer::start(&self.runtime, self.state.clone(), None, Some(self.addr))?;
        *server = Some(restarted);
        Ok(())
    }
}

impl fmt::Debug for MetadataEmulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetadataEmulator")
            .field("addr", &self.addr)
            .field("email", &self.state.email)
            .field("config", &*self.state.config())
            .field("latency", &self.state.injection.latency())
            .finish_non_exhaustive()
    }
}

impl State {
    fn config(&self) -> MutexGuard<'_, Config> {
        lock(&self.config)
    }

    fn lock_cache(&self) -> MutexGuard<'_, HashMap<(String, bool), Cached>> {
        lock(&self.cache)
    }

    async fn identity(&self, query: &str) -> Reply {
        let audience = form_param(query, "audience").unwrap_or_default();
        if audience.is_empty() {
            return Ok(text(
                StatusCode::BAD_REQUEST,
                "non-empty audience parameter required",
            ));
        }
        let full = form_param(query, "format").as_deref() == Some("full");
        self.identity_requests.fetch_add(1, Ordering::SeqCst);
        *lock(&self.per_audience)
            .entry(audience.clone())
            .or_default() += 1;
        let config = self.config().clone();
        if let Some(fault) = self.injection.next().await {
            if let Some(reply) = self.injection.common(&fault).await {
                return reply;
            }
            return Ok(match fault {
                Fault::Garbage => text(StatusCode::OK, "<html>this is not a JWT</html>"),
                Fault::NoExp => {
                    let mut token = self.issuer.token(&audience).without_expiry();
                    if full {
                        token = token.email(&self.email);
                    }
                    text(StatusCode::OK, token.mint())
                }
                _ => text(StatusCode::OK, ""),
            });
        }
        Ok(text(StatusCode::OK, self.id_token(audience, full, &config)))
    }

    /// The cached token for this audience if it still has enough life left, else a new one.
    fn id_token(&self, audience: String, full: bool, config: &Config) -> String {
        let now = self.clock.now();
        let key = (audience, full);
        let mut cache = self.lock_cache();
        if let Some(cached) = cache.get(&key).filter(|_| config.cache_tokens) {
            let lifetime = cached
                .expires
                .duration_since(cached.issued)
                .unwrap_or_default();
            let margin = config.reuse_until_remaining.min(lifetime / 2);
            if cached.expires.duration_since(now).unwrap_or_default() > margin {
                return cached.token.clone();
            }
        }
        let mut token = self
            .issuer
            .token(&key.0)
            .issued_at(now)
            .lifetime(config.lifetime);
        if full {
            token = token.email(&self.email);
        }
        let token = token.mint();
        self.tokens_minted.fetch_add(1, Ordering::SeqCst);
        // `exp` counts whole seconds from the whole second of `iat`.
        let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(crate::jwt::unix(now));
        let cached = Cached {
            token: token.clone(),
            issued,
            expires: issued + Duration::from_secs(config.lifetime.as_secs().max(1)),
        };
        cache.insert(key, cached);
        token
    }

    async fn access_token(&self) -> Reply {
        self.access_token_requests.fetch_add(1, Ordering::SeqCst);
        if let Some(fault) = self.injection.next().await {
            if let Some(reply) = self.injection.common(&fault).await {
                return reply;
            }
            let body = match fault {
                Fault::MissingToken => serde_json::json!({ "token_type": "Bearer" }),
                _ => return Ok(text(StatusCode::OK, "<html>this is not JSON</html>")),
            };
            return Ok(json(StatusCode::OK, &body));
        }
        let token = self.access_tokens.issue(&self.email, ACCESS_TOKEN_LIFETIME);
        Ok(json(
            StatusCode::OK,
            &serde_json::json!({
                "access_token": token,
                "expires_in": ACCESS_TOKEN_LIFETIME.as_secs(),
                "token_type": "Bearer",
            }),
        ))
    }
}

impl Handler for State {
    async fn handle(self: Arc<Self>, request: Request<Bytes>) -> Reply {
        self.http_requests.fetch_add(1, Ordering::SeqCst);
        let mut reply = self.route(&request).await?;
        let headers = reply.headers_mut();
        headers.insert("metadata-flavor", HeaderValue::from_static("Google"));
        // Like Google's, its `Date` and its tokens' `iat`/`exp` read the same clock (hyper's
        // own `Date` would read the system's even when a test injects another).
        if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(self.clock.now())) {
            headers.insert(http::header::DATE, date);
        }
        Ok(reply)
    }
}

impl State {
    async fn route(&self, request: &Request<Bytes>) -> Reply {
        let path = request.uri().path();
        let query = request.uri().query().unwrap_or("");
        if request.method() != Method::GET {
            return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"));
        }
        match path {
            "/" => return Ok(text(StatusCode::OK, "computeMetadata/\n")),
            JWKS_PATH => {
                return Ok(crate::http::respond(
                    StatusCode::OK,
                    "application/json; charset=UTF-8",
                    self.issuer.jwks(),
                ));
            }
            _ => {}
        }
        if !path.starts_with("/computeMetadata/") {
            return Ok(text(StatusCode::NOT_FOUND, "not found"));
        }
        let flavor = request.headers().get("metadata-flavor");
        if flavor.map(HeaderValue::as_bytes) != Some(b"Google") {
            return Ok(text(
                StatusCode::FORBIDDEN,
                "Missing required header \"Metadata-Flavor\": \"Google\"",
            ));
        }
        match path {
            "/computeMetadata/v1" | "/computeMetadata/v1/" => {
                Ok(text(StatusCode::OK, "instance/\nproject/\n"))
            }
            IDENTITY_PATH => self.identity(query).await,
            TOKEN_PATH => self.access_token().await,
            "/computeMetadata/v1/instance/service-accounts/default/email" => {
                Ok(text(StatusCode::OK, self.email.clone()))
            }
            "/computeMetadata/v1/project/project-id" => {
                Ok(text(StatusCode::OK, self.project_id.clone()))
            }
            _ => Ok(text(StatusCode::NOT_FOUND, "not found")),
        }
    }
}
