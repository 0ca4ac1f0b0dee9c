//! An emulator of Google's OAuth 2.0 token endpoint (`https://oauth2.googleapis.com/token`).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, StatusCode};

use crate::access_tokens::AccessTokens;
use crate::credentials::authorized_user_json;
use crate::fault::{Fault, Injection};
use crate::http::{
    Handler, HttpServer, OAuthError, Reply, form_param, json, oauth_error, oauth_error_body,
};
use crate::issuer::{DEFAULT_EMAIL, Issuer};
use crate::service_account::ServiceAccount;
use crate::sync::lock;
use crate::tls::TestCa;
use crate::verifier::Verifier;

/// The grant type of a service-account assertion.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The path the emulator serves the token endpoint at.
pub const OAUTH_TOKEN_PATH: &str = "/token";

const ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3599);
/// Google refuses assertions valid for longer than an hour; allow a little for clock skew.
const MAX_ASSERTION_LIFETIME: u64 = 3600 + 300;
const CLOCK_LEEWAY: u64 = 300;

/// The client id, secret and refresh token of the `authorized_user` the emulator knows by default.
pub const DEFAULT_AUTHORIZED_USER: (&str, &str, &str) = (
    "testkit-client.apps.googleusercontent.com",
    "testkit-client-secret",
    "testkit-refresh-token",
);

/// An emulated OAuth 2.0 token endpoint: `POST /token` on `127.0.0.1`, over HTTP or, with
/// [`tls`](OAuthEmulatorBuilder::tls), HTTPS.
///
/// - `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=JWT`: the assertion
///   must be RS256-signed by the key of a service account it knows (`iss` = its email; `kid`,
///   if present, its key id), with `aud` = [`token_uri`](OAuthEmulator::token_uri), and `iat`/`exp`
///   a valid span of at most an hour around now. With a `target_audience` claim it answers
///   `{"id_token": …}`, minted by its [`Issuer`] for that audience and the account's email;
///   with a `scope` claim an access token (`{"access_token", "expires_in", "token_type"}`),
///   recorded in its [`AccessTokens`].
/// - `grant_type=refresh_token&client_id&client_secret&refresh_token`: an access token for a
///   known `authorized_user`.
///
/// Anything else gets Google's OAuth error JSON with 400 (`invalid_grant`, `invalid_scope`,
/// `unsupported_grant_type`, …). Injected faults ([`fail_with`](OAuthEmulator::fail_with)) come
/// first: `Fault::oauth_error(..)`, `Fault::Html(..)`, `Fault::MissingToken` (an access token but
/// no `id_token`), `Fault::Garbage` (an `id_token` that is not a JWT), `Fault::NoExp`, ...
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use cloud_run_grpc_testkit::{CredentialsFile, OAuthEmulator};
///
/// let oauth = OAuthEmulator::start().await?;
/// let key_file = CredentialsFile::write(&oauth.key_json())?;
/// // GOOGLE_APPLICATION_CREDENTIALS=key_file.path() makes the code under test use it.
/// assert!(key_file.json().contains(&oauth.token_uri()));
/// # Ok(()) }
/// ```
pub struct OAuthEmulator {
    state: Arc<State>,
    server: HttpServer,
    token_uri: String,
}

/// Configures an [`OAuthEmulator`]; [`start`](OAuthEmulatorBuilder::start) runs it.
#[derive(Debug)]
pub struct OAuthEmulatorBuilder {
    issuer: Issuer,
    accounts: Vec<ServiceAccount>,
    users: Vec<(String, String, String)>,
    access_tokens: AccessTokens,
    lifetime: Duration,
    latency: Duration,
    tls: Option<TestCa>,
}

struct State {
    issuer: Issuer,
    primary: ServiceAccount,
    accounts: Vec<ServiceAccount>,
    users: Vec<(String, String, String)>,
    access_tokens: AccessTokens,
    token_uri: Mutex<String>,
    lifetime: Mutex<Duration>,
    injection: Injection,
    requests: AtomicUsize,
    rejected: AtomicUsize,
    per_audience: Mutex<HashMap<String, usize>>,
    last_assertion: Mutex<Option<serde_json::Value>>,
}

impl OAuthEmulatorBuilder {
    /// Also accepts assertions from this account. With none given, it knows
    /// `ServiceAccount::new(DEFAULT_EMAIL)`.
    pub fn service_account(mut self, account: ServiceAccount) -> Self {
        self.accounts.push(account);
        self
    }

    /// Also accepts this `authorized_user` refresh token (besides [`DEFAULT_AUTHORIZED_USER`]).
    pub fn authorized_user(
        mut self,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        refresh_token: impl Into<String>,
    ) -> Self {
        self.users
            .push((client_id.into(), client_secret.into(), refresh_token.into()));
        self
    }

    /// The issuer of its ID tokens (default [`Issuer::new`]).
    pub fn issuer(mut self, issuer: Issuer) -> Self {
        self.issuer = issuer;
        self
    }

    /// The registry its access tokens go to, to share with the [`IamEmulator`](crate::IamEmulator).
    pub fn access_tokens(mut self, registry: AccessTokens) -> Self {
        self.access_tokens = registry;
        self
    }

    /// The lifetime of its ID tokens (default one hour).
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Latency added to every token request.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Serves HTTPS with a certificate from `ca` (for `localhost` and `127.0.0.1`) instead of
    /// HTTP; the client must trust `ca.certificate_pem()`.
    pub fn tls(mut self, ca: TestCa) -> Self {
        self.tls = Some(ca);
        self
    }

    /// Binds `127.0.0.1:0` and starts serving on the current Tokio runtime, which it keeps
    /// running on (restarts included) until dropped; an error outside a runtime.
    pub async fn start(self) -> io::Result<OAuthEmulator> {
        let accounts = self.accounts;
        let primary = accounts
            .first()
            .cloned()
            .unwrap_or_else(|| ServiceAccount::new(DEFAULT_EMAIL));
        let accounts = if accounts.is_empty() {
            vec![primary.clone()]
        } else {
            accounts
        };
        let mut users = vec![(
            DEFAULT_AUTHORIZED_USER.0.to_owned(),
            DEFAULT_AUTHORIZED_USER.1.to_owned(),
            DEFAULT_AUTHORIZED_USER.2.to_owned(),
        )];
        users.extend(self.users);
        let state = Arc::new(State {
            issuer: self.issuer,
            primary,
            accounts,
            users,
            access_tokens: self.access_tokens,
            token_uri: Mutex::new(String::new()),
            lifetime: Mutex::new(self.lifetime),
            injection: Injection::new(self.latency),
            requests: AtomicUsize::new(0),
            rejected: AtomicUsize::new(0),
            per_audience: Mutex::default(),
            last_assertion: Mutex::new(None),
        });
        let runtime = crate::runtime::current()?;
        let server = HttpServer::start(&runtime, state.clone(), self.tls.as_ref(), None)?;
        let token_uri = format!("{}{OAUTH_TOKEN_PATH}", server.base_url());
        *lock(&state.token_uri) = token_uri.clone();
        Ok(OAuthEmulator {
            state,
            server,
            token_uri,
        })
    }
}

impl OAuthEmulator {
    crate::fault::fault_knobs!(OAuthEmulator, "token requests");

    /// A builder: knows `ServiceAccount::new(DEFAULT_EMAIL)` unless given accounts.
    pub fn builder() -> OAuthEmulatorBuilder {
        OAuthEmulatorBuilder {
            issuer: Issuer::new(),
            accounts: Vec::new(),
            users: Vec::new(),
            access_tokens: AccessTokens::new(),
            lifetime: Duration::from_secs(3600),
            latency: Duration::ZERO,
            tls: None,
        }
    }

    /// Starts one with the defaults.
    pub async fn start() -> io::Result<OAuthEmulator> {
        OAuthEmulator::builder().start().await
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT/token` (`https://` with TLS): the `token_uri` for key files and
    /// the `aud` assertions must carry.
    pub fn token_uri(&self) -> String {
        self.token_uri.clone()
    }

    /// The first service account it knows.
    pub fn service_account(&self) -> &ServiceAccount {
        &self.state.primary
    }

    /// The key file of [`service_account`](OAuthEmulator::service_account), pointing at this server.
    pub fn key_json(&self) -> String {
        self.service_account().key_json(&self.token_uri)
    }

    /// The `authorized_user` file of [`DEFAULT_AUTHORIZED_USER`].
    pub fn authorized_user_json(&self) -> String {
        let (id, secret, refresh) = DEFAULT_AUTHORIZED_USER;
        authorized_user_json(id, secret, refresh)
    }

    /// The issuer of its ID tokens.
    pub fn issuer(&self) -> &Issuer {
        &self.state.issuer
    }

    /// A verifier trusting exactly its issuer.
    pub fn verifier(&self) -> Verifier {
        self.state.issuer.verifier()
    }

    /// The registry its access tokens are recorded in.
    pub fn access_tokens(&self) -> &AccessTokens {
        &self.state.access_tokens
    }

    /// Changes the lifetime of the ID tokens it mints from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        *lock(&self.state.lifetime) = lifetime;
    }

    /// How many `POST /token` requests it received.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// How many requests for an ID token for `audience` it received (valid or not).
    pub fn id_token_requests(&self, audience: &str) -> usize {
        lock(&self.state.per_audience)
            .get(audience)
            .copied()
            .unwrap_or(0)
    }

    /// How many requests it refused with an OAuth error (injected faults not counted).
    pub fn rejected(&self) -> usize {
        self.state.rejected.load(Ordering::SeqCst)
    }

    /// The payload of the latest assertion it received (no signature), for checking what the
    /// client signed.
    pub fn last_assertion(&self) -> Option<serde_json::Value> {
        lock(&self.state.last_assertion).clone()
    }

    /// Stops it: the port is closed and every connection dropped.
    pub async fn shutdown(&self) {
        self.server.shutdown().await;
    }
}

impl fmt::Debug for OAuthEmulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthEmulator")
            .field("token_uri", &self.token_uri)
            .field("accounts", &self.state.accounts)
            .finish_non_exhaustive()
    }
}

/// What a valid assertion asks for.
struct Grant {
    email: String,
    target_audience: Option<String>,
}

impl Handler for State {
    async fn handle(self: Arc<Self>, request: Request<Bytes>) -> Reply {
        if request.uri().path() != OAUTH_TOKEN_PATH {
            return Ok(json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({ "error": "not_found" }),
            ));
        }
        if request.method() != Method::POST {
            return Ok(json(
                StatusCode::METHOD_NOT_ALLOWED,
                &oauth_error_body("invalid_request", "POST required"),
            ));
        }
        self.requests.fetch_add(1, Ordering::SeqCst);
        let form = String::from_utf8_lossy(request.body()).into_owned();
        let grant_type = form_param(&form, "grant_type").unwrap_or_default();
        let assertion = form_param(&form, "assertion").unwrap_or_default();
        let claims = crate::jwt::parse(&assertion).ok().map(|p| p.payload);
        let target_audience = claims
            .as_ref()
            .and_then(|c| c.get("target_audience"))
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        if let Some(audience) = &target_audience {
            *lock(&self.per_audience)
                .entry(audience.clone())
                .or_default() += 1;
        }
        if let Some(claims) = claims {
            *lock(&self.last_assertion) = Some(serde_json::Value::Object(claims));
        }
        if let Some(fault) = self.injection.next().await {
            return self.inject(fault, target_audience).await;
        }
        let outcome = match grant_type.as_str() {
            JWT_BEARER_GRANT => self
                .check_assertion(&assertion)
                .map(|grant| self.grant(grant)),
            "refresh_token" => self.refresh(&form),
            "" => Err(oauth_error(
                "invalid_request",
                "Missing required parameter: grant_type",
            )),
            _ => Err(oauth_error(
                "unsupported_grant_type",
                "Invalid grant_type: ".to_owned() + &grant_type,
            )),
        };
        outcome.unwrap_or_else(|refusal| {
            self.rejected.fetch_add(1, Ordering::SeqCst);
            refusal.reply()
        })
    }
}

impl State {
    async fn inject(&self, fault: Fault, target_audience: Option<String>) -> Reply {
        if let Some(reply) = self.injection.common(&fault).await {
            return reply;
        }
        let audience = target_audience.unwrap_or_else(|| "https://unknown.run.app".into());
        let email = self.primary.email();
        let body = match fault {
            Fault::Garbage => serde_json::json!({ "id_token": "this-is-not-a-jwt" }),
            Fault::NoExp => serde_json::json!({
                "id_token": self.issuer.token(&audience).email(email).without_expiry().mint()
            }),
            _ => serde_json::json!({
                "access_token": self.access_tokens.issue(email, ACCESS_TOKEN_LIFETIME),
                "expires_in": ACCESS_TOKEN_LIFETIME.as_secs(),
                "token_type": "Bearer",
            }),
        };
        Ok(json(StatusCode::OK, &body))
    }

    /// Checks a service account's assertion as Google does.
    fn check_assertion(&self, assertion: &str) -> Result<Grant, OAuthError> {
        if assertion.is_empty() {
            return Err(oauth_error(
                "invalid_request",
                "Missing required parameter: assertion",
            ));
        }
        let parsed = crate::jwt::parse(assertion)
            .map_err(|why| oauth_error("invalid_grant", format!("Invalid JWT: {why}.")))?;
        if parsed.alg() != Some("RS256") {
            return Err(oauth_error(
                "invalid_grant",
                "Invalid JWT: the algorithm must be RS256.",
            ));
        }
        let iss = parsed.str_claim("iss").unwrap_or_default();
        let candidates: Vec<&ServiceAccount> =
            self.accounts.iter().filter(|a| a.email() == iss).collect();
        if candidates.is_empty() {
            return Err(oauth_error(
                "invalid_grant",
                format!("Invalid grant: account not found: `{iss}`."),
            ));
        }
        // A key file's assertion may name its key; gcp_auth's carries no `kid`.
        let signed = candidates.iter().any(|account| {
            parsed.kid().is_none_or(|kid| kid == account.key_id())
                && parsed.signature_matches(&account.key().public())
        });
        if !signed {
            return Err(oauth_error("invalid_grant", "Invalid JWT Signature."));
        }
        let token_uri = lock(&self.token_uri).clone();
        let aud = parsed.str_claim("aud").unwrap_or_default();
        if aud != token_uri {
            return Err(oauth_error(
                "invalid_grant",
                format!(
                    "Invalid JWT: the audience must be the token URI `{token_uri}`, got `{aud}`."
                ),
            ));
        }
        let now = crate::jwt::unix(SystemTime::now());
        let timely = match (parsed.time_claim("iat"), parsed.time_claim("exp")) {
            (Some(iat), Some(exp)) => {
                iat < exp
                    && exp - iat <= MAX_ASSERTION_LIFETIME
                    && iat <= now + CLOCK_LEEWAY
                    && exp + CLOCK_LEEWAY > now
            }
            _ => false,
        };
        if !timely {
            return Err(oauth_error(
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable \
                 timeframe. Check your iat and exp values in the JWT claim.",
            ));
        }
        let target_audience = parsed
            .str_claim("target_audience")
            .filter(|a| !a.is_empty())
            .map(str::to_owned);
        let scope = parsed.str_claim("scope").unwrap_or_default();
        if target_audience.is_none() && scope.trim().is_empty() {
            return Err(oauth_error(
                "invalid_scope",
                "Invalid OAuth scope or ID token audience provided.",
            ));
        }
        Ok(Grant {
            email: iss.to_owned(),
            target_audience,
        })
    }

    fn grant(&self, grant: Grant) -> Reply {
        let body = match grant.target_audience {
            Some(audience) => {
                let lifetime = *lock(&self.lifetime);
                serde_json::json!({
                    "id_token": self.issuer.mint(&audience, &grant.email, lifetime)
                })
            }
            None => serde_json::json!({
                "access_token": self.access_tokens.issue(&grant.email, ACCESS_TOKEN_LIFETIME),
                "expires_in": ACCESS_TOKEN_LIFETIME.as_secs(),
                "token_type": "Bearer",
            }),
        };
        Ok(json(StatusCode::OK, &body))
    }

    fn refresh(&self, form: &str) -> Result<Reply, OAuthError> {
        let param = |name| form_param(form, name).unwrap_or_default();
        let (id, secret, refresh) = (
            param("client_id"),
            param("client_secret"),
            param("refresh_token"),
        );
        let known = self
            .users
            .iter()
            .any(|(i, s, r)| *i == id && *s == secret && *r == refresh);
        if !known {
            return Err(oauth_error("invalid_grant", "Bad Request"));
        }
        Ok(Ok(json(
            StatusCode::OK,
            &serde_json::json!({
                "access_token": self.access_tokens.issue(&id, ACCESS_TOKEN_LIFETIME),
                "expires_in": ACCESS_TOKEN_LIFETIME.as_secs(),
                "token_type": "Bearer",
                "scope": "openid https://www.googleapis.com/auth/cloud-platform",
            }),
        )))
    }
}
