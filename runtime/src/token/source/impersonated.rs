//! ID tokens for another service account, minted by IAM Credentials `generateIdToken` with an
//! access token of the caller's own credentials.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, header};
use http_body_util::Full;
use percent_encoding::utf8_percent_encode;
use tokio::sync::OnceCell;

use super::service_account::{ServiceAccountKey, oauth_advice};
use crate::error::chain;
use crate::fetch::UNRESERVED;
use crate::token::credentials_file::{
    CredentialsJson, GOOGLE_TOKEN_URI, Kind, code_endpoint_of, file_endpoint, short,
};
use crate::token::endpoint::Endpoint;
use crate::token::{IdToken, IdTokenSource, TokenError, TokenFuture};

/// Google's IAM Credentials API.
pub(crate) const GOOGLE_IAM_BASE_URL: &str = "https://iamcredentials.googleapis.com";

/// The scope the access token for `generateIdToken` needs.
const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

const SERVICE_ACCOUNTS_PATH: &str = "/v1/projects/-/serviceAccounts/";

/// Fetches ID tokens for a target service account by impersonating it: an access token of the
/// source credentials (through gcp_auth) authorises
/// `POST {iam}/v1/projects/-/serviceAccounts/{target}:generateIdToken` with the audience,
/// `includeEmail: true` and the delegation chain.
///
/// The source credentials need `iam.serviceAccounts.getOpenIdToken` on the target (the role
/// `roles/iam.serviceAccountOpenIdTokenCreator`, or `roles/iam.serviceAccountTokenCreator`).
/// This is how a developer machine or CI job with user or federated credentials calls a Cloud
/// Run service as a service account, without a key file.
///
/// ```no_run
/// use cloud_run_grpc::CloudRunChannel;
/// use cloud_run_grpc::token::ImpersonatedServiceAccount;
///
/// # fn main() -> Result<(), cloud_run_grpc::Error> {
/// // The source credentials are whatever gcp_auth finds (ADC), chosen on the first fetch.
/// let source = ImpersonatedServiceAccount::new("invoker@my-project.iam.gserviceaccount.com");
/// let channel = CloudRunChannel::builder("bookstore-abc123-ew.a.run.app")
///     .token_source(source)
///     .build()?;
/// # Ok(()) }
/// ```
///
/// The file `gcloud auth application-default login --impersonate-service-account=SA_EMAIL`
/// writes (type `impersonated_service_account`) is read by [`from_file`](Self::from_file), and
/// picked by [`default_source`](super::default_source).
pub struct ImpersonatedServiceAccount {
    target: String,
    delegates: Vec<String>,
    iam_base_url: String,
    source: SourceCredentials,
    timeout: Duration,
}

/// Where the access token that authorises the impersonation comes from.
enum SourceCredentials {
    /// gcp_auth's Application Default Credentials, found on the first fetch.
    Default(OnceCell<Arc<dyn gcp_auth::TokenProvider>>),
    /// A provider the caller gave.
    Provider(Arc<dyn gcp_auth::TokenProvider>),
    /// A service-account key, from an impersonation file.
    Key(Box<ServiceAccountKey>),
    /// A user's refresh token, from an impersonation file.
    User(UserRefreshToken),
}

/// `authorized_user` source credentials: exchanged for an access token at each fetch, which
/// happens about once an hour.
struct UserRefreshToken {
    client_id: String,
    client_secret: String,
    refresh_token: String,
    token_uri: String,
}

/// What fixes an impersonation file that lacks something.
const RECREATE: &str = "recreate the file with `gcloud auth application-default login \
                        --impersonate-service-account=SA_EMAIL`";

impl ImpersonatedServiceAccount {
    /// Impersonates `target` (a service account's email) with the source credentials gcp_auth
    /// finds (`GOOGLE_APPLICATION_CREDENTIALS`, the gcloud ADC file, the metadata server, the
    /// gcloud CLI), looked for on the first fetch.
    pub fn new(target: impl Into<String>) -> Self {
        Self::with(target.into(), SourceCredentials::Default(OnceCell::new()))
    }

    /// Impersonates `target` with access tokens from `source`, any gcp_auth provider (e.g.
    /// `gcp_auth::CustomServiceAccount`, or `gcp_auth::provider().await?`).
    pub fn with_source(
        target: impl Into<String>,
        source: Arc<dyn gcp_auth::TokenProvider>,
    ) -> Self {
        Self::with(target.into(), SourceCredentials::Provider(source))
    }

    fn with(target: String, source: SourceCredentials) -> Self {
        Self {
            target: target.trim().to_owned(),
            delegates: Vec::new(),
            iam_base_url: GOOGLE_IAM_BASE_URL.to_owned(),
            source,
            timeout: Duration::from_secs(10),
        }
    }

    /// Reads an `impersonated_service_account` credentials file, as written by
    /// `gcloud auth application-default login --impersonate-service-account=SA_EMAIL`: the
    /// target, the IAM URL and the delegates come from its `service_account_impersonation_url`
    /// and `delegates`, the source credentials (`authorized_user` or `service_account`) from its
    /// `source_credentials`.
    ///
    /// Endpoints named in the file (the IAM URL, the source credentials' `token_uri`) must be
    /// https on `*.googleapis.com` or a loopback address (an emulator); choose others in code
    /// with [`with_iam_base_url`](Self::with_iam_base_url) and
    /// [`with_token_uri`](Self::with_token_uri).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, TokenError> {
        Self::from_credentials(&CredentialsJson::from_file(path.as_ref())?)
    }

    /// Reads an `impersonated_service_account` credentials file given as a string.
    ///
    /// ```
    /// use cloud_run_grpc::token::{ImpersonatedServiceAccount, TokenError};
    ///
    /// let json = r#"{"type": "impersonated_service_account",
    ///                "service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken"}"#;
    /// let err = ImpersonatedServiceAccount::from_json(json).unwrap_err();
    /// assert!(matches!(err, TokenError::Credentials { .. }));
    /// assert!(err.to_string().contains("lacks `source_credentials`"));
    /// ```
    pub fn from_json(json: &str) -> Result<Self, TokenError> {
        Self::from_credentials(&CredentialsJson::from_json(json)?)
    }

    pub(crate) fn from_credentials(json: &CredentialsJson) -> Result<Self, TokenError> {
        json.expect_kind(Kind::Impersonated, "an impersonation file")?;
        let [url] = json.required(["service_account_impersonation_url"], RECREATE)?;
        let (iam_base_url, target) =
            parse_impersonation_url(url, RECREATE).map_err(|w| json.error(w))?;
        let delegates = json.optional_list("delegates")?;
        let source_json = json.nested("source_credentials", RECREATE)?;
        let source = match source_json.kind()? {
            Kind::ServiceAccount => {
                SourceCredentials::Key(Box::new(ServiceAccountKey::from_credentials(&source_json)?))
            }
            Kind::AuthorizedUser => {
                let [client_id, client_secret, refresh_token] = source_json.required(
                    ["client_id", "client_secret", "refresh_token"],
                    "log in again with `gcloud auth application-default login \
                     --impersonate-service-account=SA_EMAIL`",
                )?;
                let token_uri = source_json
                    .optional("token_uri")?
                    .unwrap_or(GOOGLE_TOKEN_URI);
                let token_uri = file_endpoint(token_uri)
                    .map_err(|why| source_json.error(format!("its `token_uri` {why}")))?;
                SourceCredentials::User(UserRefreshToken {
                    client_id: client_id.to_owned(),
                    client_secret: client_secret.to_owned(),
                    refresh_token: refresh_token.to_owned(),
                    token_uri,
                })
            }
            other => {
                return Err(source_json.error(format!(
                    "source credentials of type `{other}` are not supported here; use \
                     `authorized_user` (from `gcloud auth application-default login`) or \
                     `service_account`, or give a gcp_auth provider to \
                     `ImpersonatedServiceAccount::with_source`"
                )));
            }
        };
        Ok(Self {
            delegates,
            iam_base_url,
            ..Self::with(target, source)
        })
    }

    /// Service accounts in the delegation chain, each with `getOpenIdToken` rights on the
    /// next, the last on the target: emails or `projects/-/serviceAccounts/{email}`.
    pub fn delegates<I, S>(mut self, delegates: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.delegates = delegates.into_iter().map(Into::into).collect();
        self
    }

    /// Calls IAM Credentials at `url` (scheme and host, e.g. an emulator's) instead of
    /// `https://iamcredentials.googleapis.com`. It must be https (to any host: it is your code's
    /// choice), or http to a loopback address.
    ///
    /// ```
    /// # use cloud_run_grpc::token::ImpersonatedServiceAccount;
    /// let source = ImpersonatedServiceAccount::new("sa@p.iam.gserviceaccount.com")
    ///     .with_iam_base_url("http://127.0.0.1:8090")?;
    /// assert_eq!(source.iam_base_url(), "http://127.0.0.1:8090");
    /// # Ok::<(), cloud_run_grpc::token::TokenError>(())
    /// ```
    pub fn with_iam_base_url(mut self, url: impl AsRef<str>) -> Result<Self, TokenError> {
        self.iam_base_url = code_endpoint_of(|| self.name(), url.as_ref())?;
        Ok(self)
    }

    /// Where source credentials read from a file get their access token (their key's or
    /// Google's token endpoint by default). It must be https, or http to a loopback address.
    /// Sources given with [`new`](Self::new) or [`with_source`](Self::with_source) are not
    /// affected.
    pub fn with_token_uri(mut self, uri: impl AsRef<str>) -> Result<Self, TokenError> {
        let name = || format!("source credentials of {}", self.name());
        let token_uri = code_endpoint_of(name, uri.as_ref())?;
        self.source = match self.source {
            SourceCredentials::Key(key) => {
                SourceCredentials::Key(Box::new(key.with_token_uri(&token_uri)?))
            }
            SourceCredentials::User(user) => {
                SourceCredentials::User(UserRefreshToken { token_uri, ..user })
            }
            other => other,
        };
        Ok(self)
    }

    /// How long each request (access token, ID token) may take; default 10 seconds.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The service account impersonated.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The IAM Credentials base URL.
    pub fn iam_base_url(&self) -> &str {
        &self.iam_base_url
    }

    async fn access_token(&self) -> Result<String, TokenError> {
        let source_name = || format!("source credentials for impersonating {}", self.target);
        let provider = match &self.source {
            SourceCredentials::User(user) => return user.access_token(self, self.timeout).await,
            SourceCredentials::Key(key) => key.access_tokens(),
            SourceCredentials::Provider(provider) => provider.clone(),
            SourceCredentials::Default(cell) => cell
                .get_or_try_init(gcp_auth::provider)
                .await
                .map_err(|e| TokenError::Unsupported {
                    source_name: source_name(),
                    reason: format!(
                        "gcp_auth found no credentials to impersonate with ({}); set \
                         GOOGLE_APPLICATION_CREDENTIALS, or run `gcloud auth \
                         application-default login`",
                        chain(&e)
                    ),
                    source: Some(Arc::new(e)),
                })?
                .clone(),
        };
        let token =
            provider
                .token(&[CLOUD_PLATFORM])
                .await
                .map_err(|e| TokenError::Unreachable {
                    source_name: source_name(),
                    cause: format!("no access token: {}", chain(&e)),
                    source: Some(Arc::new(e)),
                })?;
        Ok(token.as_str().to_owned())
    }

    async fn fetch_token(&self, audience: &str) -> Result<IdToken, TokenError> {
        // gcp_auth's providers have no timeout of their own.
        let access_token = tokio::time::timeout(self.timeout, self.access_token())
            .await
            .map_err(|_| TokenError::Timeout {
                source_name: format!("source credentials for impersonating {}", self.target),
                after: self.timeout,
            })??;
        let source_name = self.name();
        let advice = |status: u16, code: &str| self.iam_advice(status, code);
        GenerateIdToken {
            iam_base_url: &self.iam_base_url,
            target: &self.target,
            delegates: &self.delegates,
            source_name: &source_name,
            advice: &advice,
            timeout: self.timeout,
        }
        .call(&access_token, audience)
        .await
    }

    fn iam_advice(&self, status: u16, code: &str) -> Option<String> {
        let target = &self.target;
        Some(match (status, code) {
            (403, _) | (_, "PERMISSION_DENIED") => format!(
                "the source credentials may not mint ID tokens for {target}: grant them \
                 `roles/iam.serviceAccountOpenIdTokenCreator` (or \
                 `roles/iam.serviceAccountTokenCreator`) on it, e.g. `gcloud iam \
                 service-accounts add-iam-policy-binding {target} --member=user:YOU@example.com \
                 --role=roles/iam.serviceAccountOpenIdTokenCreator`, and check that the IAM \
                 Service Account Credentials API is enabled"
            ),
            (404, _) | (_, "NOT_FOUND") => {
                format!("the service account {target} does not exist; check its email")
            }
            (401, _) | (_, "UNAUTHENTICATED") => "the source credentials' access token was \
                 refused; refresh them, e.g. `gcloud auth application-default login`"
                .to_owned(),
            (400, _) | (_, "INVALID_ARGUMENT") => {
                "check the target's email, the audience and the delegates".to_owned()
            }
            _ => return None,
        })
    }
}

impl UserRefreshToken {
    async fn access_token(
        &self,
        owner: &ImpersonatedServiceAccount,
        timeout: Duration,
    ) -> Result<String, TokenError> {
        let source_name = format!(
            "token endpoint {} (user credentials for impersonating {})",
            self.token_uri, owner.target
        );
        let wrong_endpoint = format!(
            "check that the token URI ({}) is Google's token endpoint ({GOOGLE_TOKEN_URI})",
            self.token_uri
        );
        let advice = |status: u16, code: &str| match code {
            "invalid_grant" => Some(
                "the refresh token was revoked or has expired; log in again with `gcloud auth \
                 application-default login --impersonate-service-account=SA_EMAIL`"
                    .to_owned(),
            ),
            _ => oauth_advice(status, code),
        };
        let endpoint = Endpoint {
            source_name: &source_name,
            field: "access_token",
            wrong_endpoint: &wrong_endpoint,
            advice: &advice,
        };
        let fields = [
            ("grant_type", "refresh_token"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.as_str()),
            ("refresh_token", self.refresh_token.as_str()),
        ];
        Ok(endpoint
            .post_form(&self.token_uri, &fields, timeout)
            .await?
            .token)
    }
}

/// One IAM Credentials `generateIdToken` call: what [`ImpersonatedServiceAccount`] and
/// [`ExternalAccount`](super::ExternalAccount) both ask for, with the access token of their
/// own credentials.
pub(crate) struct GenerateIdToken<'a> {
    /// `https://iamcredentials.googleapis.com`, or an emulator's.
    pub(crate) iam_base_url: &'a str,
    /// The service account whose ID token is minted.
    pub(crate) target: &'a str,
    /// The delegation chain, emails or resource names.
    pub(crate) delegates: &'a [String],
    /// The step, as errors name it.
    pub(crate) source_name: &'a str,
    /// Advice for an error answer, from its HTTP status and error status.
    pub(crate) advice: &'a (dyn Fn(u16, &str) -> Option<String> + Sync),
    /// How long the request may take.
    pub(crate) timeout: Duration,
}

impl GenerateIdToken<'_> {
    /// `POST {iam}/v1/projects/-/serviceAccounts/{target}:generateIdToken` with the audience,
    /// `includeEmail: true` and the delegates, authorised by `access_token`.
    pub(crate) async fn call(
        &self,
        access_token: &str,
        audience: &str,
    ) -> Result<IdToken, TokenError> {
        let wrong_endpoint = format!(
            "check that the IAM Credentials URL ({}) is Google's ({GOOGLE_IAM_BASE_URL}) and \
             that no proxy answers in its place",
            self.iam_base_url
        );
        let endpoint = Endpoint {
            source_name: self.source_name,
            field: "token",
            wrong_endpoint: &wrong_endpoint,
            advice: self.advice,
        };
        let url = format!(
            "{}{SERVICE_ACCOUNTS_PATH}{}:generateIdToken",
            self.iam_base_url,
            utf8_percent_encode(self.target, UNRESERVED)
        );
        let delegates: Vec<String> = self.delegates.iter().map(|d| delegate(d)).collect();
        let body = serde_json::json!({
            "audience": audience,
            "includeEmail": true,
            "delegates": delegates,
        });
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {access_token}")).map_err(|_| {
                TokenError::BadResponse {
                    source_name: self.source_name.to_owned(),
                    reason: "the access token to authorise it with is not a valid header value"
                        .into(),
                }
            })?;
        authorization.set_sensitive(true);
        let request = Request::post(url.as_str())
            .header(header::AUTHORIZATION, authorization)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| TokenError::Unsupported {
                source_name: self.source_name.to_owned(),
                reason: format!(
                    "`{}` is not a usable service account email ({e})",
                    short(self.target, 100)
                ),
                source: Some(Arc::new(e)),
            })?;
        let answer = endpoint.send(request, self.timeout).await?;
        endpoint.minted_id_token(answer)
    }
}

/// Splits `https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{email}:generateAccessToken`
/// into the base URL and the email; `recreate` says how to get a file with a good one.
pub(crate) fn parse_impersonation_url(
    url: &str,
    recreate: &str,
) -> Result<(String, String), String> {
    let wrong = || {
        format!(
            "its `service_account_impersonation_url` (`{}`) is not an IAM Credentials URL like \
             `{GOOGLE_IAM_BASE_URL}{SERVICE_ACCOUNTS_PATH}SA_EMAIL:generateAccessToken`; \
             {recreate}",
            short(&cloud_run_grpc_endpoint::redacted(url.trim()), 200)
        )
    };
    let url = url.trim();
    let at = url.find(SERVICE_ACCOUNTS_PATH).ok_or_else(wrong)?;
    let base = file_endpoint(&url[..at])
        .map_err(|why| format!("its `service_account_impersonation_url` at {why}"))?;
    let rest = &url[at + SERVICE_ACCOUNTS_PATH.len()..];
    let target = rest.rsplit_once(':').map_or(rest, |(email, _)| email);
    let target = target.replace("%40", "@");
    if target.is_empty() || target.contains(['/', '?', '#']) {
        return Err(wrong());
    }
    Ok((base, target))
}

/// IAM wants delegates as resource names.
fn delegate(delegate: &str) -> String {
    if delegate.starts_with("projects/") {
        delegate.to_owned()
    } else {
        format!("projects/-/serviceAccounts/{delegate}")
    }
}

impl fmt::Debug for ImpersonatedServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImpersonatedServiceAccount")
            .field("target", &self.target)
            .field("delegates", &self.delegates)
            .field("iam_base_url", &self.iam_base_url)
            .field("source", &self.source)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl fmt::Debug for SourceCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default(_) => f.write_str("ApplicationDefault"),
            Self::Provider(_) => f.write_str("Provider"),
            Self::Key(key) => f.debug_tuple("Key").field(key).finish(),
            // The client id is public; the secret and the refresh token never show.
            Self::User(user) => f
                .debug_struct("User")
                .field("client_id", &user.client_id)
                .field("token_uri", &user.token_uri)
                .finish_non_exhaustive(),
        }
    }
}

impl IdTokenSource for ImpersonatedServiceAccount {
    fn fetch<'a>(&'a self, audience: &'a str) -> TokenFuture<'a> {
        Box::pin(self.fetch_token(audience))
    }

    fn name(&self) -> String {
        format!(
            "IAM Credentials at {} impersonating {}",
            self.iam_base_url, self.target
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_impersonation_url() {
        let (base, target) = parse_impersonation_url(
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken",
            "recreate it",
        )
        .unwrap();
        assert_eq!(base, "https://iamcredentials.googleapis.com");
        assert_eq!(target, "sa@p.iam.gserviceaccount.com");
        let (base, _) = parse_impersonation_url(
            "http://127.0.0.1:9/v1/projects/-/serviceAccounts/sa%40p:generateIdToken",
            "recreate it",
        )
        .unwrap();
        assert_eq!(base, "http://127.0.0.1:9");
        for wrong in [
            "https://iamcredentials.googleapis.com/v1/sa:generateAccessToken",
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/:x",
            "http://iam.example.com/v1/projects/-/serviceAccounts/sa:generateAccessToken",
            "https://iam.example.com/v1/projects/-/serviceAccounts/sa:generateAccessToken",
        ] {
            let why = parse_impersonation_url(wrong, "recreate it").unwrap_err();
            assert!(
                why.ends_with("recreate it") || why.contains("is refused"),
                "{why}"
            );
        }
    }

    #[test]
    fn delegates_become_resource_names() {
        assert_eq!(delegate("a@b"), "projects/-/serviceAccounts/a@b");
        assert_eq!(
            delegate("projects/-/serviceAccounts/a@b"),
            "projects/-/serviceAccounts/a@b"
        );
    }

    #[test]
    fn user_secrets_never_show() {
        let json = serde_json::json!({
            "type": "impersonated_service_account",
            "service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken",
            "delegates": ["d@p.iam.gserviceaccount.com"],
            "source_credentials": {
                "type": "authorized_user",
                "client_id": "client-1.apps.googleusercontent.com",
                "client_secret": "hush-secret",
                "refresh_token": "1//refresh-secret",
            },
        });
        let source = ImpersonatedServiceAccount::from_json(&json.to_string()).unwrap();
        assert_eq!(source.target(), "sa@p.iam.gserviceaccount.com");
        let shown = format!("{source:?}");
        assert!(shown.contains("client-1"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
