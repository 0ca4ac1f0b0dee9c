//! An emulator of Google's Security Token Service (`https://sts.googleapis.com/v1/token`), and
//! of the external OIDC identity provider whose tokens it exchanges.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::Full;

use crate::access_tokens::AccessTokens;
use crate::fault::{Fault, Injection};
use crate::http::{Handler, HttpServer, OAuthError, Reply, form_param, json, oauth_error, respond};
use crate::iam::{IamEmulator, IamEmulatorBuilder};
use crate::keys::{self, Key};
use crate::sync::lock;
use crate::tls::TestCa;

/// The path the emulator serves the token exchange at, as Google's STS does.
pub const STS_TOKEN_PATH: &str = "/v1/token";
/// The grant type of an RFC 8693 token exchange.
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The token type STS issues (and the only one it may be asked for).
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The subject token type of an OIDC token (`…:id_token` is accepted too).
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// The workload identity pool provider the emulator stands for unless told otherwise: the
/// `audience` of an `external_account` file.
pub const DEFAULT_POOL_AUDIENCE: &str = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/testkit-pool/providers/testkit-provider";
/// The `iss` of the emulated external identity provider's tokens (`.invalid`: it is no real
/// host).
pub const IDENTITY_PROVIDER_ISSUER: &str = "https://token.identity-provider.testkit.invalid";
/// The `sub` of subject tokens minted without one.
pub const DEFAULT_SUBJECT: &str = "repo:acme/bookstore:ref:refs/heads/main";

const SUBJECT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
/// Google's documented answer for an audience that is no provider's full resource name.
const BAD_AUDIENCE: &str = "Invalid value for \"audience\". This value should be the full \
    resource name of the Identity Provider. See \
    https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token for the list of \
    possible formats.";
/// Google's answer for a well-formed audience that names no (enabled) provider.
const UNKNOWN_AUDIENCE: &str = "The target service indicated by the \"audience\" parameters is \
    invalid. This might either be because the pool or provider is disabled or deleted or \
    because it doesn't exist.";

/// An emulated Security Token Service: `POST /v1/token` on `127.0.0.1`, over HTTP or, with
/// [`tls`](StsEmulatorBuilder::tls), HTTPS. It stands for one workload identity pool provider
/// ([`audience`](StsEmulator::audience)) that trusts one external OIDC identity provider,
/// whose tokens [`subject_token`](StsEmulator::subject_token) mints.
///
/// A form-encoded RFC 8693 exchange is checked as Google's STS checks it: `grant_type` must be
/// [`TOKEN_EXCHANGE_GRANT`], `requested_token_type` [`ACCESS_TOKEN_TYPE`], `audience` the
/// provider's full resource name, `subject_token_type` an OIDC type (`…:jwt` or
/// `…:id_token`), and `subject_token` an RS256 JWT signed by the identity provider, with its
/// `iss` ([`IDENTITY_PROVIDER_ISSUER`]), an `aud` the provider allows
/// ([`subject_token_audience`](StsEmulator::subject_token_audience)), and an `exp` still to
/// come. The answer is Google's: `{"access_token", "issued_token_type", "token_type":
/// "Bearer", "expires_in"}`, the access token recorded in its [`AccessTokens`] for the
/// federated principal (`principal://iam.googleapis.com/projects/…/subject/SUB`), so that an
/// [`IamEmulator`](crate::IamEmulator) sharing the registry accepts it. A refusal is HTTP 400
/// with RFC 6749's error JSON, `{"error": "invalid_grant", "error_description": …}`
/// (`invalid_request`, `invalid_target`, `unsupported_grant_type` for the other mistakes,
/// with Google's wording where it is documented).
///
/// Faults ([`fail_with`](StsEmulator::fail_with)) come before the checks: `Status`, `Html`,
/// `Hang` and `Disconnect` as for every emulator; `Garbage` answers 200 with a body that is
/// not JSON, `MissingToken` 200 JSON without `access_token`, `NoExp` 200 JSON without
/// `expires_in`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use cloud_run_grpc_testkit::{CredentialsFile, IamEmulator, StsEmulator};
///
/// let sts = StsEmulator::start().await?;
/// let iam = IamEmulator::builder().access_tokens(sts.access_tokens().clone()).start().await?;
/// let subject_token = CredentialsFile::write_named("token", sts.subject_token().as_bytes())?;
/// let adc = CredentialsFile::write(&sts.external_account_json(
///     &serde_json::json!({ "file": subject_token.path() }),
///     Some(&iam.impersonation_url("invoker@p.iam.gserviceaccount.com")),
/// ))?;
/// // GOOGLE_APPLICATION_CREDENTIALS=adc.path() federates the code under test through both.
/// assert!(adc.json().contains(&sts.token_url()));
/// assert_eq!(sts.requests(), 0);
/// # Ok(()) }
/// ```
pub struct StsEmulator {
    state: Arc<State>,
    server: HttpServer,
    token_url: String,
}

/// Configures an [`StsEmulator`]; [`start`](StsEmulatorBuilder::start) runs it.
#[derive(Debug)]
pub struct StsEmulatorBuilder {
    audience: String,
    access_tokens: AccessTokens,
    lifetime: Duration,
    latency: Duration,
    tls: Option<TestCa>,
}

/// One token-exchange request as the emulator received it (the subject token itself left out:
/// tests assert on its claims).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenExchangeRequest {
    /// `grant_type`.
    pub grant_type: String,
    /// `audience`: the pool provider.
    pub audience: String,
    /// `scope`, space-separated.
    pub scope: String,
    /// `requested_token_type`.
    pub requested_token_type: String,
    /// `subject_token_type`.
    pub subject_token_type: String,
    /// `options`, parsed, when sent (workforce pools send `{"userProject": …}`).
    pub options: Option<serde_json::Value>,
    /// The `sub` of the subject token, when it is a JWT.
    pub subject: Option<String>,
    /// The client id of HTTP Basic authentication, when sent.
    pub client_id: Option<String>,
}

/// The external identity provider (GitHub Actions, GitLab, a Kubernetes cluster) that the
/// emulated pool provider trusts: it signs subject tokens, STS verifies them.
#[derive(Clone)]
pub(crate) struct IdentityProvider {
    key: Arc<Key>,
    /// The `aud` the pool provider allows: by default `https://iam.googleapis.com/` and the
    /// provider's resource name, as Google's.
    allowed_audience: String,
}

impl fmt::Debug for IdentityProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityProvider")
            .field("iss", &IDENTITY_PROVIDER_ISSUER)
            .field("allowed_audience", &self.allowed_audience)
            .finish_non_exhaustive()
    }
}

impl IdentityProvider {
    fn for_pool(audience: &str) -> Self {
        let resource = audience.strip_prefix("//").unwrap_or(audience);
        IdentityProvider {
            key: keys::IDENTITY_PROVIDER_1.clone(),
            allowed_audience: format!("https://{resource}"),
        }
    }

    /// A subject token for `DEFAULT_SUBJECT`, valid for an hour, with `claims` added or
    /// replacing the defaults (a `null` one left out).
    pub(crate) fn mint(&self, claims: &serde_json::Value) -> String {
        let now = crate::jwt::unix(SystemTime::now());
        let mut payload = serde_json::Map::new();
        payload.insert("iss".into(), IDENTITY_PROVIDER_ISSUER.into());
        payload.insert("aud".into(), self.allowed_audience.clone().into());
        payload.insert("sub".into(), DEFAULT_SUBJECT.into());
        payload.insert("iat".into(), now.into());
        payload.insert(
            "exp".into(),
            (now + SUBJECT_TOKEN_LIFETIME.as_secs()).into(),
        );
        payload.insert("jti".into(), crate::issuer::unique_id().into());
        if let serde_json::Value::Object(claims) = claims {
            payload.extend(claims.clone());
        }
        payload.retain(|_, value| !value.is_null());
        crate::jwt::sign(&self.key, &serde_json::Value::Object(payload))
    }

    /// Checks a subject token as STS checks an OIDC provider's: signature, `iss`, `aud`,
    /// `exp`. Returns its `sub`.
    fn verify(&self, token: &str) -> Result<String, OAuthError> {
        let parsed = crate::jwt::parse(token)
            .map_err(|_| oauth_error("invalid_grant", "Unable to parse the ID Token."))?;
        if parsed.alg() != Some("RS256")
            || parsed.kid() != Some(self.key.kid)
            || !parsed.signature_matches(&self.key.public())
        {
            return Err(oauth_error("invalid_grant", "Invalid ID Token signature."));
        }
        let iss = parsed.str_claim("iss").unwrap_or_default();
        if iss != IDENTITY_PROVIDER_ISSUER {
            return Err(oauth_error(
                "invalid_grant",
                format!(
                    "The issuer in ID Token {iss} does not match the expected issuer \
                     {IDENTITY_PROVIDER_ISSUER}."
                ),
            ));
        }
        let aud = parsed.str_claim("aud").unwrap_or_default();
        if aud != self.allowed_audience {
            return Err(oauth_error(
                "invalid_grant",
                format!(
                    "The audience in ID Token [{aud}] does not match the expected audience \
                     {}.",
                    self.allowed_audience
                ),
            ));
        }
        let now = crate::jwt::unix(SystemTime::now());
        match parsed.time_claim("exp") {
            Some(exp) if exp > now => {}
            Some(exp) => {
                return Err(oauth_error(
                    "invalid_grant",
                    format!("ID Token expired at {exp}, now is {now}."),
                ));
            }
            None => {
                return Err(oauth_error(
                    "invalid_grant",
                    "The ID Token has no expiry (`exp`).",
                ));
            }
        }
        parsed
            .str_claim("sub")
            .filter(|sub| !sub.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| oauth_error("invalid_grant", "The ID Token has no subject (`sub`)."))
    }
}

struct State {
    audience: String,
    provider: IdentityProvider,
    access_tokens: AccessTokens,
    lifetime: Mutex<Duration>,
    injection: Injection,
    requests: AtomicUsize,
    rejected: AtomicUsize,
    last_request: Mutex<Option<TokenExchangeRequest>>,
}

impl StsEmulatorBuilder {
    /// The pool provider it stands for (default [`DEFAULT_POOL_AUDIENCE`]): a full resource
    /// name, `//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER`.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// The registry its access tokens go to, to share with the
    /// [`IamEmulator`](crate::IamEmulator).
    pub fn access_tokens(mut self, registry: AccessTokens) -> Self {
        self.access_tokens = registry;
        self
    }

    /// The `expires_in` of its access tokens (default one hour), in whole seconds, at least
    /// one.
    pub fn access_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
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
    pub async fn start(self) -> io::Result<StsEmulator> {
        let state = Arc::new(State {
            provider: IdentityProvider::for_pool(&self.audience),
            audience: self.audience,
            access_tokens: self.access_tokens,
            lifetime: Mutex::new(self.lifetime),
            injection: Injection::new(self.latency),
            requests: AtomicUsize::new(0),
            rejected: AtomicUsize::new(0),
            last_request: Mutex::new(None),
        });
        let runtime = crate::runtime::current()?;
        let server = HttpServer::start(&runtime, state.clone(), self.tls.as_ref(), None)?;
        let token_url = format!("{}{STS_TOKEN_PATH}", server.base_url());
        Ok(StsEmulator {
            state,
            server,
            token_url,
        })
    }
}

impl StsEmulator {
    crate::fault::fault_knobs!(StsEmulator, "exchanges");

    /// A builder, for the pool provider [`DEFAULT_POOL_AUDIENCE`] and a fresh
    /// [`AccessTokens`] registry.
    pub fn builder() -> StsEmulatorBuilder {
        StsEmulatorBuilder {
            audience: DEFAULT_POOL_AUDIENCE.to_owned(),
            access_tokens: AccessTokens::new(),
            lifetime: Duration::from_secs(3600),
            latency: Duration::ZERO,
            tls: None,
        }
    }

    /// Starts one with the defaults.
    pub async fn start() -> io::Result<StsEmulator> {
        StsEmulator::builder().start().await
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT/v1/token` (`https://` with TLS): the `token_url` of an
    /// `external_account` file.
    pub fn token_url(&self) -> String {
        self.token_url.clone()
    }

    /// The pool provider it stands for: the `audience` of an `external_account` file.
    pub fn audience(&self) -> &str {
        &self.state.audience
    }

    /// The `aud` its identity provider's tokens must carry:
    /// `https://iam.googleapis.com/projects/…/providers/…`, the default Google allows.
    pub fn subject_token_audience(&self) -> &str {
        &self.state.provider.allowed_audience
    }

    /// The federated principal its access tokens stand for, for a subject token whose `sub`
    /// is `subject`: `principal://iam.googleapis.com/projects/…/workloadIdentityPools/POOL/subject/SUB`.
    pub fn principal(&self, subject: &str) -> String {
        principal(&self.state.audience, subject)
    }

    /// A fresh subject token it accepts: an RS256 JWT from its identity provider for
    /// [`DEFAULT_SUBJECT`], valid for an hour.
    pub fn subject_token(&self) -> String {
        self.state.provider.mint(&serde_json::Value::Null)
    }

    /// A subject token from its identity provider with `claims` added or replacing the
    /// defaults (`iss`, `aud`, `sub`, `iat`, `exp`, `jti`; a `null` claim is left out):
    /// `{"sub": "other"}` for another workload, `{"exp": 1}` for an expired token,
    /// `{"aud": "elsewhere"}` for one STS refuses.
    pub fn subject_token_with(&self, claims: &serde_json::Value) -> String {
        self.state.provider.mint(claims)
    }

    /// An `external_account` credentials file pointing at it, as `gcloud iam
    /// workload-identity-pools create-cred-config` writes: `credential_source` as given
    /// (`{"file": PATH}`, `{"url": URL, "headers": {…}, "format": {…}}`, `{"executable":
    /// {…}}`), and `service_account_impersonation_url` when given
    /// ([`IamEmulator::impersonation_url`](crate::IamEmulator::impersonation_url)).
    pub fn external_account_json(
        &self,
        credential_source: &serde_json::Value,
        impersonation_url: Option<&str>,
    ) -> String {
        crate::credentials::external_account_json(
            &self.state.audience,
            &self.token_url,
            credential_source,
            impersonation_url,
        )
    }

    /// The registry its access tokens are recorded in.
    pub fn access_tokens(&self) -> &AccessTokens {
        &self.state.access_tokens
    }

    /// A builder of an [`IamEmulator`] that accepts its federated access tokens: it shares this
    /// emulator's [`access_tokens`](StsEmulator::access_tokens) registry, and is otherwise
    /// [`IamEmulator::builder`]'s.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
    /// let sts = cloud_run_grpc_testkit::StsEmulator::start().await?;
    /// let iam = sts.iam_builder().start().await?;
    /// let principal = sts.principal("workload");
    /// let token = sts.access_tokens().issue(&principal, std::time::Duration::from_secs(60));
    /// assert_eq!(iam.access_tokens().email_for(&token), Some(principal));
    /// # Ok(()) }
    /// ```
    pub fn iam_builder(&self) -> IamEmulatorBuilder {
        IamEmulator::builder().access_tokens(self.state.access_tokens.clone())
    }

    /// Changes the `expires_in` of the access tokens it issues from now on.
    pub fn set_access_token_lifetime(&self, lifetime: Duration) {
        *lock(&self.state.lifetime) = lifetime;
    }

    /// How many `POST /v1/token` requests it received.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// How many it refused with an error (injected faults not counted).
    pub fn rejected(&self) -> usize {
        self.state.rejected.load(Ordering::SeqCst)
    }

    /// The latest exchange it received.
    pub fn last_request(&self) -> Option<TokenExchangeRequest> {
        lock(&self.state.last_request).clone()
    }

    /// Stops it: the port is closed and every connection dropped.
    pub async fn shutdown(&self) {
        self.server.shutdown().await;
    }

    pub(crate) fn identity_provider(&self) -> IdentityProvider {
        self.state.provider.clone()
    }
}

impl fmt::Debug for StsEmulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StsEmulator")
            .field("token_url", &self.token_url)
            .field("audience", &self.state.audience)
            .finish_non_exhaustive()
    }
}

/// `principal://iam.googleapis.com/{pool}/subject/{subject}` for a provider `audience`.
fn principal(audience: &str, subject: &str) -> String {
    let resource = audience.strip_prefix("//").unwrap_or(audience);
    let pool = resource
        .split_once("/providers/")
        .map_or(resource, |(pool, _)| pool);
    format!("principal://{pool}/subject/{subject}")
}

impl Handler for State {
    async fn handle(self: Arc<Self>, request: Request<Bytes>) -> Reply {
        if request.uri().path() != STS_TOKEN_PATH {
            // Google's front end answers an unknown path with its HTML 404 page.
            let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
            return Ok(crate::pages::page(StatusCode::NOT_FOUND, path).map(Full::new));
        }
        if request.method() != Method::POST {
            return oauth_error("invalid_request", "The request method must be POST.").reply();
        }
        self.requests.fetch_add(1, Ordering::SeqCst);
        let form = String::from_utf8_lossy(request.body()).into_owned();
        let param = |name| form_param(&form, name).unwrap_or_default();
        let subject_token = param("subject_token");
        let subject = crate::jwt::parse(&subject_token)
            .ok()
            .and_then(|parsed| parsed.str_claim("sub").map(str::to_owned));
        let options = form_param(&form, "options").map(|options| {
            serde_json::from_str(&options).unwrap_or(serde_json::Value::String(options))
        });
        *lock(&self.last_request) = Some(TokenExchangeRequest {
            grant_type: param("grant_type"),
            audience: param("audience"),
            scope: param("scope"),
            requested_token_type: param("requested_token_type"),
            subject_token_type: param("subject_token_type"),
            options,
            subject,
            client_id: basic_client_id(&request),
        });
        if let Some(fault) = self.injection.next().await {
            return self.inject(fault).await;
        }
        match self.exchange(&form) {
            Ok(reply) => reply,
            Err(refusal) => {
                self.rejected.fetch_add(1, Ordering::SeqCst);
                refusal.reply()
            }
        }
    }
}

impl State {
    async fn inject(&self, fault: Fault) -> Reply {
        if let Some(reply) = self.injection.common(&fault).await {
            return reply;
        }
        let lifetime = lock(&self.lifetime).as_secs().max(1);
        Ok(match fault {
            Fault::Garbage => respond(
                StatusCode::OK,
                "application/json; charset=utf-8",
                "this is not JSON",
            ),
            Fault::NoExp => json(
                StatusCode::OK,
                &serde_json::json!({
                    "access_token": self.access_tokens.issue(
                        &principal(&self.audience, DEFAULT_SUBJECT),
                        Duration::from_secs(lifetime),
                    ),
                    "issued_token_type": ACCESS_TOKEN_TYPE,
                    "token_type": "Bearer",
                }),
            ),
            _ => json(
                StatusCode::OK,
                &serde_json::json!({
                    "issued_token_type": ACCESS_TOKEN_TYPE,
                    "token_type": "Bearer",
                    "expires_in": lifetime,
                }),
            ),
        })
    }

    /// Google's checks, in the order its errors suggest: the grant, what is asked for, the
    /// provider, then the subject token.
    fn exchange(&self, form: &str) -> Result<Reply, OAuthError> {
        let param = |name| form_param(form, name).unwrap_or_default();
        match param("grant_type").as_str() {
            TOKEN_EXCHANGE_GRANT => {}
            "" => {
                return Err(oauth_error(
                    "invalid_request",
                    "Missing required parameter: grant_type",
                ));
            }
            other => {
                return Err(oauth_error(
                    "unsupported_grant_type",
                    format!("Unsupported grant type: {other}"),
                ));
            }
        }
        if param("requested_token_type") != ACCESS_TOKEN_TYPE {
            return Err(oauth_error(
                "invalid_request",
                format!(
                    "Invalid value for \"requested_token_type\". The only supported value is \
                     {ACCESS_TOKEN_TYPE}."
                ),
            ));
        }
        let audience = param("audience");
        if !audience.starts_with("//iam.googleapis.com/") || !audience.contains("/providers/") {
            return Err(oauth_error("invalid_request", BAD_AUDIENCE));
        }
        if audience != self.audience {
            return Err(oauth_error("invalid_target", UNKNOWN_AUDIENCE));
        }
        match param("subject_token_type").as_str() {
            JWT_TOKEN_TYPE | ID_TOKEN_TYPE => {}
            other => {
                return Err(oauth_error(
                    "invalid_request",
                    format!(
                        "Invalid value for \"subject_token_type\": `{other}` is not supported \
                         by an OIDC provider; use {JWT_TOKEN_TYPE} or {ID_TOKEN_TYPE}."
                    ),
                ));
            }
        }
        let subject_token = param("subject_token");
        if subject_token.is_empty() {
            return Err(oauth_error(
                "invalid_request",
                "Missing required parameter: subject_token",
            ));
        }
        let subject = self.provider.verify(&subject_token)?;
        let lifetime = Duration::from_secs(lock(&self.lifetime).as_secs().max(1));
        let access_token = self
            .access_tokens
            .issue(&principal(&self.audience, &subject), lifetime);
        Ok(Ok(json(
            StatusCode::OK,
            &serde_json::json!({
                "access_token": access_token,
                "issued_token_type": ACCESS_TOKEN_TYPE,
                "token_type": "Bearer",
                "expires_in": lifetime.as_secs(),
            }),
        )))
    }
}

/// The client id of an `Authorization: Basic` header.
fn basic_client_id(request: &Request<Bytes>) -> Option<String> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    decoded.split_once(':').map(|(id, _)| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_name_the_pool_and_the_subject() {
        assert_eq!(
            principal(DEFAULT_POOL_AUDIENCE, "repo:a/b"),
            "principal://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/testkit-pool/subject/repo:a/b"
        );
    }
}
