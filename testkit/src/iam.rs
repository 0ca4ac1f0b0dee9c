//! An emulator of the IAM Service Account Credentials API
//! (`https://iamcredentials.googleapis.com`).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};

use crate::access_tokens::AccessTokens;
use crate::fault::{Fault, Injection};
use crate::http::{Handler, HttpServer, Reply, json, percent_encode};
use crate::issuer::Issuer;
use crate::sync::lock;
use crate::tls::TestCa;
use crate::verifier::Verifier;

const PREFIX: &str = "/v1/projects/-/serviceAccounts/";
const ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// An emulated IAM Credentials API on `127.0.0.1` (HTTP, or HTTPS with
/// [`tls`](IamEmulatorBuilder::tls)):
///
/// - `POST /v1/projects/-/serviceAccounts/{email}:generateIdToken` with JSON
///   `{"audience", "includeEmail", "delegates"}` answers `{"token": …}`: an ID token for that
///   audience, minted by its [`Issuer`] for `{email}` (the `email` claim only with
///   `includeEmail: true`).
/// - `POST …/{email}:generateAccessToken` with `{"scope": [...], "delegates", "lifetime"}`
///   answers `{"accessToken", "expireTime"}` (recorded in its [`AccessTokens`]).
///
/// Both require `Authorization: Bearer <access token>` with a token from its [`AccessTokens`]
/// registry — share the registry of the [`OAuthEmulator`](crate::OAuthEmulator) or
/// [`MetadataEmulator`](crate::MetadataEmulator) that issues the caller's tokens — else 401 in
/// Google's error shape. Inject a 403 with `fail_with(Fault::permission_denied())`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use cloud_run_grpc_testkit::{IamEmulator, OAuthEmulator};
///
/// let oauth = OAuthEmulator::start().await?;
/// let iam = IamEmulator::builder().access_tokens(oauth.access_tokens().clone()).start().await?;
/// let url = iam.impersonation_url("target@p.iam.gserviceaccount.com");
/// assert!(url.ends_with("/v1/projects/-/serviceAccounts/target%40p.iam.gserviceaccount.com:generateAccessToken"));
/// # Ok(()) }
/// ```
pub struct IamEmulator {
    state: Arc<State>,
    server: HttpServer,
    base_url: String,
}

/// Configures an [`IamEmulator`]; [`start`](IamEmulatorBuilder::start) runs it.
#[derive(Debug)]
pub struct IamEmulatorBuilder {
    issuer: Issuer,
    access_tokens: AccessTokens,
    lifetime: Duration,
    latency: Duration,
    tls: Option<TestCa>,
}

/// One `generateIdToken` request as the emulator received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenerateIdTokenRequest {
    /// The service account in the path (the one to impersonate).
    pub service_account: String,
    /// The account the caller's access token belongs to.
    pub caller: String,
    /// `audience`.
    pub audience: String,
    /// `includeEmail`.
    pub include_email: bool,
    /// `delegates`.
    pub delegates: Vec<String>,
}

struct State {
    issuer: Issuer,
    access_tokens: AccessTokens,
    lifetime: Mutex<Duration>,
    injection: Injection,
    requests: AtomicUsize,
    rejected: AtomicUsize,
    last_request: Mutex<Option<GenerateIdTokenRequest>>,
}

impl IamEmulatorBuilder {
    /// The issuer of its ID tokens (default [`Issuer::new`]).
    pub fn issuer(mut self, issuer: Issuer) -> Self {
        self.issuer = issuer;
        self
    }

    /// The registry whose access tokens it accepts (and adds `generateAccessToken`'s to).
    pub fn access_tokens(mut self, registry: AccessTokens) -> Self {
        self.access_tokens = registry;
        self
    }

    /// The lifetime of its ID tokens (default one hour).
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
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
    /// running on (restarts included) until dropped; an error outside a runtime.
    pub async fn start(self) -> io::Result<IamEmulator> {
        let state = Arc::new(State {
            issuer: self.issuer,
            access_tokens: self.access_tokens,
            lifetime: Mutex::new(self.lifetime),
            injection: Injection::new(self.latency),
            requests: AtomicUsize::new(0),
            rejected: AtomicUsize::new(0),
            last_request: Mutex::new(None),
        });
        let runtime = crate::runtime::current()?;
        let server = HttpServer::start(&runtime, state.clone(), self.tls.as_ref(), None)?;
        Ok(IamEmulator {
            base_url: server.base_url(),
            state,
            server,
        })
    }
}

impl IamEmulator {
    crate::fault::fault_knobs!(IamEmulator, "requests");

    /// A builder with a fresh [`AccessTokens`] registry (which no one else issues into: give it
    /// the registry of the emulator that issues the caller's tokens).
    pub fn builder() -> IamEmulatorBuilder {
        IamEmulatorBuilder {
            issuer: Issuer::new(),
            access_tokens: AccessTokens::new(),
            lifetime: Duration::from_secs(3600),
            latency: Duration::ZERO,
            tls: None,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS): what stands for
    /// `https://iamcredentials.googleapis.com`.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// `{base_url}/v1/projects/-/serviceAccounts/{email}:generateIdToken`.
    pub fn generate_id_token_url(&self, email: &str) -> String {
        format!(
            "{}{PREFIX}{}:generateIdToken",
            self.base_url,
            percent_encode(email)
        )
    }

    /// `{base_url}/v1/projects/-/serviceAccounts/{email}:generateAccessToken`: the
    /// `service_account_impersonation_url` of an `impersonated_service_account` ADC file.
    pub fn impersonation_url(&self, email: &str) -> String {
        format!(
            "{}{PREFIX}{}:generateAccessToken",
            self.base_url,
            percent_encode(email)
        )
    }

    /// The issuer of its ID tokens.
    pub fn issuer(&self) -> &Issuer {
        &self.state.issuer
    }

    /// A verifier trusting exactly its issuer.
    pub fn verifier(&self) -> Verifier {
        self.state.issuer.verifier()
    }

    /// The registry whose access tokens it accepts.
    pub fn access_tokens(&self) -> &AccessTokens {
        &self.state.access_tokens
    }

    /// Changes the lifetime of the ID tokens it mints from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        *lock(&self.state.lifetime) = lifetime;
    }

    /// How many `generateIdToken` / `generateAccessToken` requests it received.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// How many it refused (bad credentials or request; injected faults not counted).
    pub fn rejected(&self) -> usize {
        self.state.rejected.load(Ordering::SeqCst)
    }

    /// The latest `generateIdToken` request it answered with a token.
    pub fn last_request(&self) -> Option<GenerateIdTokenRequest> {
        lock(&self.state.last_request).clone()
    }

    /// Stops it: the port is closed and every connection dropped.
    pub async fn shutdown(&self) {
        self.server.shutdown().await;
    }
}

impl fmt::Debug for IamEmulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IamEmulator")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// A request refused with a Google API error: `{"error": {"code", "message", "status"}}`.
struct Refusal {
    status: StatusCode,
    name: &'static str,
    message: String,
}

fn google_error(status: StatusCode, name: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        name,
        message: message.into(),
    }
}

impl Refusal {
    fn reply(self) -> Reply {
        Ok(json(
            self.status,
            &serde_json::json!({
                "error": { "code": self.status.as_u16(), "message": self.message, "status": self.name }
            }),
        ))
    }
}

enum Endpoint {
    IdToken,
    AccessToken,
}

impl Handler for State {
    async fn handle(self: Arc<Self>, request: Request<Bytes>) -> Reply {
        let path = request.uri().path();
        let route = path.strip_prefix(PREFIX).and_then(|rest| {
            if let Some(email) = rest.strip_suffix(":generateIdToken") {
                Some((email, Endpoint::IdToken))
            } else {
                rest.strip_suffix(":generateAccessToken")
                    .map(|email| (email, Endpoint::AccessToken))
            }
        });
        // Google routes by method and path: a known path asked with another method than POST
        // is as unknown as any other.
        let route = route.filter(|_| request.method() == Method::POST);
        let Some((email, method)) = route else {
            return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Unknown method.").reply();
        };
        let email = crate::http::form_param(&format!("e={email}"), "e").unwrap_or_default();
        self.requests.fetch_add(1, Ordering::SeqCst);
        if let Some(fault) = self.injection.next().await {
            return self.inject(fault, &email, &method).await;
        }
        let answer = self.answer(&request, email, method);
        answer.unwrap_or_else(|refusal| {
            self.rejected.fetch_add(1, Ordering::SeqCst);
            refusal.reply()
        })
    }
}

impl State {
    /// An injected fault's answer, in the shape of the endpoint asked: `{"token"}` for
    /// `generateIdToken`, `{"accessToken", "expireTime"}` for `generateAccessToken`.
    async fn inject(&self, fault: Fault, email: &str, method: &Endpoint) -> Reply {
        if let Some(reply) = self.injection.common(&fault).await {
            return reply;
        }
        let body = match (fault, method) {
            (Fault::Garbage, Endpoint::IdToken) => {
                serde_json::json!({ "token": "this-is-not-a-jwt" })
            }
            (Fault::NoExp, Endpoint::IdToken) => serde_json::json!({
                "token": self.issuer.token("https://unknown.run.app").email(email).without_expiry().mint()
            }),
            // An access token no registry issued: the answer looks right, the token is refused
            // wherever it is used.
            (Fault::Garbage, Endpoint::AccessToken) => serde_json::json!({
                "accessToken": "this-is-not-an-access-token",
                "expireTime": rfc3339(SystemTime::now() + ACCESS_TOKEN_LIFETIME),
            }),
            (Fault::NoExp, Endpoint::AccessToken) => serde_json::json!({
                "accessToken": self.access_tokens.issue(email, ACCESS_TOKEN_LIFETIME),
            }),
            _ => serde_json::json!({}),
        };
        Ok(json(StatusCode::OK, &body))
    }

    fn answer(
        &self,
        request: &Request<Bytes>,
        email: String,
        method: Endpoint,
    ) -> Result<Reply, Refusal> {
        let caller = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|token| self.access_tokens.email_for(token.trim()))
            .ok_or_else(|| {
                google_error(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHENTICATED",
                    "Request had invalid authentication credentials. Expected OAuth 2 access \
                     token, login cookie or other valid authentication credential.",
                )
            })?;
        if email.is_empty() || !email.contains('@') {
            return Err(google_error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                "The service account in the path must be an email address.",
            ));
        }
        let body: serde_json::Value = serde_json::from_slice(request.body()).map_err(|_| {
            google_error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                "Invalid JSON payload received.",
            )
        })?;
        let delegates: Vec<String> = body
            .get("delegates")
            .and_then(|d| d.as_array())
            .map(|d| {
                d.iter()
                    .filter_map(|v| v.as_str())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        match method {
            Endpoint::IdToken => {
                let audience = body
                    .get("audience")
                    .and_then(|a| a.as_str())
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| {
                        google_error(
                            StatusCode::BAD_REQUEST,
                            "INVALID_ARGUMENT",
                            "audience is required.",
                        )
                    })?
                    .to_owned();
                let include_email =
                    body.get("includeEmail").and_then(|v| v.as_bool()) == Some(true);
                let lifetime = *lock(&self.lifetime);
                let mut token = self
                    .issuer
                    .token(&audience)
                    .lifetime(lifetime)
                    .claim("sub", crate::issuer::subject_for(&email))
                    .claim("azp", crate::issuer::subject_for(&email));
                if include_email {
                    token = token.email(&email);
                }
                let token = token.mint();
                *lock(&self.last_request) = Some(GenerateIdTokenRequest {
                    service_account: email,
                    caller,
                    audience,
                    include_email,
                    delegates,
                });
                Ok(Ok(json(
                    StatusCode::OK,
                    &serde_json::json!({ "token": token }),
                )))
            }
            Endpoint::AccessToken => {
                let token = self.access_tokens.issue(&email, ACCESS_TOKEN_LIFETIME);
                let expire = SystemTime::now() + ACCESS_TOKEN_LIFETIME;
                Ok(Ok(json(
                    StatusCode::OK,
                    &serde_json::json!({
                        "accessToken": token,
                        "expireTime": rfc3339(expire),
                    }),
                )))
            }
        }
    }
}

/// `2024-01-02T03:04:05Z`, as Google's JSON timestamps.
fn rfc3339(time: SystemTime) -> String {
    let secs = crate::jwt::unix(time);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm), for dates after 1970.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats_known_dates() {
        let at = |secs| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        assert_eq!(super::rfc3339(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(at(1_700_000_000)), "2023-11-14T22:13:20Z");
    }
}
