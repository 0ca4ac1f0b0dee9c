//! Workload identity federation: ID tokens for workloads outside Google Cloud (GitHub Actions,
//! GitLab, Azure, Kubernetes clusters elsewhere), from an `external_account` credentials file.
//!
//! Three steps per fetch, each its own file:
//!
//! 1. `subject.rs` (and `executable.rs`): the workload's own token from its identity provider,
//!    read from the file's `credential_source`;
//! 2. `sts.rs`: exchanged at Google's Security Token Service for a federated access token,
//!    which is kept and reused while it is valid;
//! 3. IAM Credentials `generateIdToken` for the service account the file impersonates, the
//!    same call [`ImpersonatedServiceAccount`](super::ImpersonatedServiceAccount) makes.

mod executable;
mod sts;
mod subject;

use std::fmt;
use std::path::Path;
use std::time::Duration;

use tokio::sync::Mutex;

use super::impersonated::{GenerateIdToken, parse_impersonation_url};
use crate::token::credentials_file::{
    CredentialsJson, Kind, code_endpoint_of, file_endpoint, short,
};
use crate::token::{IdToken, IdTokenSource, TokenError, TokenFuture};
use sts::{Client, Exchange, FederatedToken};
use subject::{Context, SubjectSource, shell_word};

/// Google's STS, unless the file names another (in `token_url`, or through `universe_domain`).
const GOOGLE_TOKEN_URL: &str = "https://sts.googleapis.com/v1/token";

/// The prefix of a pool provider's full resource name.
const IAM_RESOURCE_PREFIX: &str = "//iam.googleapis.com/";

/// What to run to get a good file when the file is beyond repair.
const RECREATE: &str = "recreate the file with `gcloud iam workload-identity-pools \
    create-cred-config` (or `gcloud iam workforce-pools create-cred-config`)";

/// ID tokens through workload identity federation, from an `external_account` credentials
/// file (as written by `gcloud iam workload-identity-pools create-cred-config`).
///
/// Each fetch reads the workload's subject token from the file's `credential_source` — a
/// file, a URL (with its headers; text or JSON), or, only when
/// `GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1`, a program — exchanges it at the Security
/// Token Service (`token_url`) for a federated access token, and has IAM Credentials mint an
/// ID token for the service account named in `service_account_impersonation_url`, at that
/// URL's scheme and host. The federated access token is kept for its `expires_in` (less a
/// margin), so a refresh of the ID token goes back to STS only when it has to.
///
/// The federated identity needs `iam.serviceAccounts.getOpenIdToken` on that service account
/// (`roles/iam.serviceAccountOpenIdTokenCreator`). Endpoints named in the file (STS, IAM) must
/// be https on `*.googleapis.com` or a loopback address (an emulator); subject-token URLs may
/// be https anywhere, or plain http to loopback or the link-local metadata address.
/// [`default_source`](super::default_source) picks this source for an `external_account`
/// file; AWS-signed subject tokens (`environment_id: aws1`) and certificate (mTLS) sources
/// are refused with an error that says so.
///
/// A whole fetch — subject token, exchange, ID token — runs within the token cache's fetch
/// timeout ([`RefreshPolicy::fetch_timeout`](crate::token::RefreshPolicy::fetch_timeout), 15
/// seconds by default), each step within [`ExternalAccount::timeout`]. A program is given its
/// own `timeout_millis` (30 seconds by default): with one, the cache waits for the program's
/// timeout plus two steps, if that is longer ([`IdTokenSource::fetch_timeout`]).
///
/// ```no_run
/// use cloud_run_grpc::CloudRunChannel;
/// use cloud_run_grpc::token::ExternalAccount;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let source = ExternalAccount::from_file("/etc/gcp/github-actions.json")?;
/// let channel = CloudRunChannel::builder("bookstore-abc123-ew.a.run.app")
///     .token_source(source)
///     .build()?;
/// # Ok(()) }
/// ```
pub struct ExternalAccount {
    origin: String,
    subject: SubjectSource,
    exchange: Exchange,
    target: String,
    iam_base_url: String,
    recreate: String,
    timeout: Duration,
    /// One exchange at a time; the token it got, while it lasts.
    federated: Mutex<Option<FederatedToken>>,
}

impl ExternalAccount {
    /// Reads an `external_account` credentials file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, TokenError> {
        Self::from_credentials(&CredentialsJson::from_file(path.as_ref())?)
    }

    /// Reads `external_account` credentials given as a string.
    ///
    /// ```
    /// use cloud_run_grpc::token::{ExternalAccount, TokenError};
    ///
    /// // Without `service_account_impersonation_url` there is no service account to mint ID
    /// // tokens for; the error gives the command that writes a file with one.
    /// let json = r#"{"type": "external_account",
    ///     "audience": "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/ci/providers/github",
    ///     "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
    ///     "token_url": "https://sts.googleapis.com/v1/token",
    ///     "credential_source": {"file": "/var/run/token"}}"#;
    /// let err = ExternalAccount::from_json(json).unwrap_err();
    /// assert!(matches!(err, TokenError::Credentials { .. }));
    /// assert!(err.to_string().contains(
    ///     "gcloud iam workload-identity-pools create-cred-config \
    ///      projects/123/locations/global/workloadIdentityPools/ci/providers/github \
    ///      --service-account=SA_EMAIL --credential-source-file=/var/run/token"
    /// ));
    /// ```
    pub fn from_json(json: &str) -> Result<Self, TokenError> {
        Self::from_credentials(&CredentialsJson::from_json(json)?)
    }

    pub(crate) fn from_credentials(json: &CredentialsJson) -> Result<Self, TokenError> {
        json.expect_kind(Kind::ExternalAccount, "an `external_account` file")?;
        let [audience, subject_token_type] =
            json.required(["audience", "subject_token_type"], RECREATE)?;
        let audience = audience.trim().to_owned();
        let subject = SubjectSource::parse(&json.nested("credential_source", RECREATE)?, RECREATE)?;
        let user_project = json
            .optional("workforce_pool_user_project")?
            .map(|p| p.trim().to_owned());
        if user_project.is_some() && !is_workforce(&audience) {
            return Err(json.error(
                "it names a `workforce_pool_user_project`, which only workforce pool \
                 credentials (`//iam.googleapis.com/locations/…/workforcePools/…`) have; remove \
                 it, or check `audience`"
                    .into(),
            ));
        }
        let output = json.path.as_ref().map_or_else(
            || "credentials.json".to_owned(),
            |p| p.display().to_string(),
        );
        let command = |service_account: &str| {
            create_cred_config(
                &audience,
                &subject,
                subject_token_type,
                user_project.as_deref(),
                service_account,
                &output,
            )
        };
        let Some(url) = json.optional("service_account_impersonation_url")? else {
            return Err(json.error(format!(
                "it has no `service_account_impersonation_url`: Cloud Run needs an ID token, \
                 which Google mints only for a service account, and federated credentials \
                 without one yield access tokens only. Recreate it naming the service account \
                 to act as: `{}`, then let the pool's identities mint its ID tokens: `{}`",
                command("SA_EMAIL"),
                grant_command(&audience, "SA_EMAIL"),
            )));
        };
        let recreate = format!("recreate the file with `{}`", command("SA_EMAIL"));
        let (iam_base_url, target) =
            parse_impersonation_url(url, &recreate).map_err(|w| json.error(w))?;
        let token_url = match json.optional("token_url")? {
            Some(url) => url.to_owned(),
            None => match json.optional("universe_domain")? {
                Some(domain) => format!("https://sts.{}/v1/token", domain.trim()),
                None => GOOGLE_TOKEN_URL.to_owned(),
            },
        };
        let token_url = file_endpoint(&token_url)
            .map_err(|why| json.error(format!("its `token_url` {why}")))?;
        let recreate = format!("recreate the file with `{}`", command(&target));
        let client = match (json.optional("client_id")?, json.optional("client_secret")?) {
            (Some(id), Some(secret)) => Some(Client {
                id: id.to_owned(),
                secret: secret.to_owned(),
            }),
            _ => None,
        };
        Ok(Self {
            origin: json.origin.clone(),
            exchange: Exchange {
                token_url,
                audience: audience.clone(),
                subject_token_type: subject_token_type.trim().to_owned(),
                user_project,
                client,
            },
            recreate,
            subject,
            target,
            iam_base_url,
            timeout: Duration::from_secs(10),
            federated: Mutex::new(None),
        })
    }

    /// Calls IAM Credentials at `url` (scheme and host, e.g. an emulator's) instead of the
    /// host of the file's `service_account_impersonation_url`. It must be https (to any host:
    /// it is your code's choice), or http to a loopback address.
    pub fn with_iam_base_url(mut self, url: impl AsRef<str>) -> Result<Self, TokenError> {
        self.iam_base_url = code_endpoint_of(|| self.name(), url.as_ref())?;
        Ok(self)
    }

    /// Exchanges subject tokens at `url` instead of the file's `token_url`. It must be https
    /// (to any host), or http to a loopback address.
    pub fn with_token_url(mut self, url: impl AsRef<str>) -> Result<Self, TokenError> {
        self.exchange.token_url = code_endpoint_of(|| self.name(), url.as_ref())?;
        Ok(self)
    }

    /// How long each step may take (reading a subject-token URL, the exchange, the ID
    /// token); default 10 seconds. An executable has its own `timeout_millis`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The service account whose ID tokens are minted.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The workload identity pool provider the subject token is exchanged for
    /// (`//iam.googleapis.com/projects/…/providers/…`).
    pub fn pool_audience(&self) -> &str {
        &self.exchange.audience
    }

    /// Where subject tokens are exchanged (STS's `token_url`).
    pub fn token_url(&self) -> &str {
        &self.exchange.token_url
    }

    /// The IAM Credentials base URL.
    pub fn iam_base_url(&self) -> &str {
        &self.iam_base_url
    }

    async fn fetch_token(&self, audience: &str) -> Result<IdToken, TokenError> {
        let access_token = self.federated_token().await?;
        let source_name = format!(
            "IAM Credentials at {} (generateIdToken for {} with the federated token)",
            self.iam_base_url, self.target
        );
        let advice = |status: u16, code: &str| self.iam_advice(status, code);
        let minted = GenerateIdToken {
            iam_base_url: &self.iam_base_url,
            target: &self.target,
            delegates: &[],
            source_name: &source_name,
            advice: &advice,
            timeout: self.timeout,
        }
        .call(&access_token.secret, audience)
        .await;
        if let Err(TokenError::Status { status: 401, .. }) = &minted {
            // IAM no longer takes this federated token (revoked, or the pool changed): the
            // next fetch exchanges a new one rather than resending it.
            let mut slot = self.federated.lock().await;
            if slot
                .as_ref()
                .is_some_and(|t| t.secret == access_token.secret)
            {
                *slot = None;
            }
        }
        minted
    }

    /// The federated token, exchanged only when the kept one is about to expire.
    async fn federated_token(&self) -> Result<FederatedToken, TokenError> {
        let mut slot = self.federated.lock().await;
        if let Some(token) = slot.as_ref().filter(|t| t.fresh()) {
            return Ok(token.clone());
        }
        let context = Context {
            origin: &self.origin,
            timeout: self.timeout,
            audience: &self.exchange.audience,
            subject_token_type: &self.exchange.subject_token_type,
            target: &self.target,
        };
        let subject_token = self.subject.read(&context).await?;
        let advice = |status: u16, code: &str| self.sts_advice(status, code);
        let token = self
            .exchange
            .exchange(&subject_token, self.timeout, &advice)
            .await?;
        tracing::debug!(
            token_url = %self.exchange.token_url,
            subject = %self.subject.describe(),
            reused_for = ?token.reused_for(),
            "exchanged a subject token for a federated access token"
        );
        *slot = Some(token.clone());
        Ok(token)
    }

    fn sts_advice(&self, status: u16, code: &str) -> Option<String> {
        let audience = &self.exchange.audience;
        let subject = self.subject.describe();
        Some(match code {
            "invalid_grant" => format!(
                "STS refused the subject token from the {subject}: check that it is current \
                 (whatever writes it must renew it before it expires) and that its issuer, \
                 audience and subject match the provider {audience} (its issuer URI, allowed \
                 audiences and attribute mapping)"
            ),
            "unauthorized_client" => format!(
                "the provider {audience} refuses this identity: its attribute condition does \
                 not admit the subject token's claims"
            ),
            "invalid_target" => format!(
                "the workload identity pool or provider {audience} does not exist or is \
                 disabled; check the file's `audience`, or {}",
                self.recreate
            ),
            "invalid_request" | "invalid_scope" | "unsupported_grant_type" => format!(
                "check the file's `audience` ({audience}) and `subject_token_type` ({}), or {}",
                self.exchange.subject_token_type, self.recreate
            ),
            _ => match status {
                403 => "enable the Security Token Service API (sts.googleapis.com) in the \
                        pool's project"
                    .to_owned(),
                404 => format!("check the file's `token_url` ({})", self.exchange.token_url),
                _ => return None,
            },
        })
    }

    fn iam_advice(&self, status: u16, code: &str) -> Option<String> {
        let target = &self.target;
        Some(match (status, code) {
            (403, _) | (_, "PERMISSION_DENIED") => format!(
                "the federated identity may not mint ID tokens for {target}: grant the pool's \
                 identities `roles/iam.serviceAccountOpenIdTokenCreator` (permission \
                 `iam.serviceAccounts.getOpenIdToken`) on it, e.g. `{}`, and check that the \
                 IAM Service Account Credentials API is enabled",
                grant_command(&self.exchange.audience, target)
            ),
            (404, _) | (_, "NOT_FOUND") => format!(
                "the service account {target} does not exist; check the file's \
                 `service_account_impersonation_url`"
            ),
            (401, _) | (_, "UNAUTHENTICATED") => "IAM refused the federated access token; the \
                 next attempt exchanges a new one"
                .to_owned(),
            (400, _) | (_, "INVALID_ARGUMENT") => {
                "check the service account's email and the audience".to_owned()
            }
            _ => return None,
        })
    }
}

/// Whether `audience` is a workforce pool's (users, not workloads).
fn is_workforce(audience: &str) -> bool {
    audience.contains("/workforcePools/")
}

/// The `gcloud … create-cred-config` command that writes this file again, impersonating
/// `service_account`. Header values are left out: they are often secrets.
fn create_cred_config(
    audience: &str,
    subject: &SubjectSource,
    subject_token_type: &str,
    user_project: Option<&str>,
    service_account: &str,
    output: &str,
) -> String {
    let pools = if is_workforce(audience) {
        "workforce-pools"
    } else {
        "workload-identity-pools"
    };
    let provider = audience
        .strip_prefix(IAM_RESOURCE_PREFIX)
        .unwrap_or(audience);
    let mut words = vec![
        format!("gcloud iam {pools} create-cred-config"),
        shell_word(provider),
        format!("--service-account={}", shell_word(service_account)),
    ];
    words.extend(subject.gcloud_flags());
    if subject_token_type.trim() != "urn:ietf:params:oauth:token-type:jwt" {
        words.push(format!(
            "--subject-token-type={}",
            shell_word(subject_token_type.trim())
        ));
    }
    if let Some(project) = user_project {
        words.push(format!(
            "--workforce-pool-user-project={}",
            shell_word(project)
        ));
    }
    words.push(format!("--output-file={}", shell_word(output)));
    words.join(" ")
}

/// The command that lets every identity of the provider's pool mint ID tokens for
/// `service_account`.
fn grant_command(audience: &str, service_account: &str) -> String {
    let pool = audience
        .strip_prefix(IAM_RESOURCE_PREFIX)
        .and_then(|rest| rest.split_once("/providers/").map(|(pool, _)| pool))
        .map_or_else(
            || "projects/PROJECT_NUMBER/locations/global/workloadIdentityPools/POOL".to_owned(),
            str::to_owned,
        );
    format!(
        "gcloud iam service-accounts add-iam-policy-binding {} \
         --role=roles/iam.serviceAccountOpenIdTokenCreator \
         --member={}",
        shell_word(service_account),
        shell_word(&format!("principalSet://iam.googleapis.com/{pool}/*"))
    )
}

impl fmt::Debug for ExternalAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The client secret, header values and tokens never show.
        f.debug_struct("ExternalAccount")
            .field("origin", &self.origin)
            .field("pool_audience", &self.exchange.audience)
            .field("subject", &self.subject)
            .field("token_url", &self.exchange.token_url)
            .field("target", &self.target)
            .field("iam_base_url", &self.iam_base_url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl IdTokenSource for ExternalAccount {
    fn fetch<'a>(&'a self, audience: &'a str) -> TokenFuture<'a> {
        Box::pin(self.fetch_token(audience))
    }

    fn name(&self) -> String {
        format!(
            "workload identity federation (subject token from the {}) as {}",
            self.subject.describe(),
            short(&self.target, 100)
        )
    }

    /// A program's `timeout_millis` (30 seconds by default, up to 120) plus the exchange and
    /// the ID token's time: longer than the cache's default fetch timeout.
    fn fetch_timeout(&self) -> Option<Duration> {
        let program = self.subject.program_timeout()?;
        Some(program.saturating_add(self.timeout.saturating_mul(2)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const AUDIENCE: &str = "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/ci/providers/github";
    const IMPERSONATION: &str = "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/invoker@p.iam.gserviceaccount.com:generateAccessToken";

    fn file(edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) -> String {
        let mut json = json!({
            "type": "external_account",
            "audience": AUDIENCE,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": "https://sts.googleapis.com/v1/token",
            "service_account_impersonation_url": IMPERSONATION,
            "credential_source": {"file": "/var/run/token"},
        });
        edit(json.as_object_mut().unwrap());
        json.to_string()
    }

    fn refusal(edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) -> String {
        ExternalAccount::from_json(&file(edit))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn reads_a_file_sourced_config() {
        let source = ExternalAccount::from_json(&file(|_| {})).unwrap();
        assert_eq!(source.target(), "invoker@p.iam.gserviceaccount.com");
        assert_eq!(
            source.iam_base_url(),
            "https://iamcredentials.googleapis.com"
        );
        assert_eq!(source.token_url(), "https://sts.googleapis.com/v1/token");
        assert_eq!(source.pool_audience(), AUDIENCE);
        assert_eq!(
            source.name(),
            "workload identity federation (subject token from the file /var/run/token) as \
             invoker@p.iam.gserviceaccount.com"
        );
    }

    #[test]
    fn a_program_asks_the_cache_for_its_timeout_and_two_steps() {
        let program = |source: serde_json::Value| {
            ExternalAccount::from_json(&file(|f| {
                f.insert("credential_source".into(), source);
            }))
            .unwrap()
            .timeout(Duration::from_secs(5))
            .fetch_timeout()
        };
        let slow = json!({"executable": {"command": "/bin/idp --print", "timeout_millis": 90_000}});
        assert_eq!(program(slow), Some(Duration::from_secs(100)));
        let default = json!({"executable": {"command": "/bin/idp --print"}});
        assert_eq!(program(default), Some(Duration::from_secs(40)));
        assert_eq!(program(json!({"file": "/var/run/token"})), None);
    }

    #[test]
    fn the_token_url_defaults_to_googles_sts_in_the_files_universe() {
        let source = ExternalAccount::from_json(&file(|f| {
            f.remove("token_url");
        }))
        .unwrap();
        assert_eq!(source.token_url(), "https://sts.googleapis.com/v1/token");
        let why = refusal(|f| {
            f.remove("token_url");
            f.insert("universe_domain".into(), "example.com".into());
        });
        assert!(
            why.contains("`https://sts.example.com/v1/token` is refused"),
            "{why}"
        );
    }

    #[test]
    fn endpoints_off_google_are_refused() {
        let why = refusal(|f| {
            f.insert(
                "token_url".into(),
                "https://sts.evil.example/v1/token".into(),
            );
        });
        assert!(why.contains("its `token_url`"), "{why}");
        assert!(why.contains("only to Google's endpoints"), "{why}");
        let why = refusal(|f| {
            f.insert(
                "service_account_impersonation_url".into(),
                "http://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/a@b:generateAccessToken".into(),
            );
        });
        assert!(why.contains("plaintext"), "{why}");
        let why = refusal(|f| {
            f.insert(
                "credential_source".into(),
                json!({"url": "http://10.0.0.1/token"}),
            );
        });
        assert!(
            why.contains("its `url` `http://10.0.0.1/token` is refused"),
            "{why}"
        );
    }

    #[test]
    fn without_impersonation_the_error_gives_the_exact_commands() {
        let why = refusal(|f| {
            f.remove("service_account_impersonation_url");
            f.insert(
                "credential_source".into(),
                json!({"url": "http://169.254.169.254/token?r=1", "headers": {"Authorization": "Bearer hush-secret"},
                       "format": {"type": "json", "subject_token_field_name": "value"}}),
            );
        });
        assert!(
            why.contains(
                "`gcloud iam workload-identity-pools create-cred-config \
                 projects/123/locations/global/workloadIdentityPools/ci/providers/github \
                 --service-account=SA_EMAIL \
                 --credential-source-url='http://169.254.169.254/token?r=1' \
                 --credential-source-headers=authorization=VALUE \
                 --credential-source-type=json --credential-source-field-name=value \
                 --output-file=credentials.json`"
            ),
            "{why}"
        );
        assert!(
            why.contains(
                "gcloud iam service-accounts add-iam-policy-binding SA_EMAIL \
                 --role=roles/iam.serviceAccountOpenIdTokenCreator \
                 --member='principalSet://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/ci/*'"
            ),
            "{why}"
        );
        assert!(!why.contains("hush"), "{why}");
    }

    #[test]
    fn workforce_files_name_their_own_command_and_project() {
        let why = refusal(|f| {
            f.remove("service_account_impersonation_url");
            f.insert(
                "audience".into(),
                "//iam.googleapis.com/locations/global/workforcePools/staff/providers/okta".into(),
            );
            f.insert("workforce_pool_user_project".into(), "my-project".into());
        });
        assert!(
            why.contains(
                "gcloud iam workforce-pools create-cred-config \
                 locations/global/workforcePools/staff/providers/okta --service-account=SA_EMAIL \
                 --credential-source-file=/var/run/token --workforce-pool-user-project=my-project"
            ),
            "{why}"
        );
        let why = refusal(|f| {
            f.insert("workforce_pool_user_project".into(), "my-project".into());
        });
        assert!(why.contains("only workforce pool"), "{why}");
    }

    #[test]
    fn credential_sources_are_checked() {
        let with = |source: serde_json::Value| {
            refusal(|f| {
                f.insert("credential_source".into(), source);
            })
        };
        assert!(with(json!({})).contains("needs `file`, `url` or `executable`"));
        assert!(
            with(json!({"file": "/a", "url": "https://b"}))
                .contains("several subject-token sources (`file`, `url`)")
        );
        let aws = with(json!({"environment_id": "aws1", "region_url": "http://169.254.169.254/x"}));
        assert!(aws.contains("AWS credentials"), "{aws}");
        assert!(aws.contains("not supported"), "{aws}");
        assert!(
            with(json!({"certificate": {"use_default_certificate_config": true}})).contains("mTLS")
        );
        assert!(
            with(json!({"file": "/a", "format": {"type": "json"}}))
                .contains("no `subject_token_field_name`")
        );
        assert!(
            with(json!({"file": "/a", "format": {"type": "xml"}})).contains("use `text` or `json`")
        );
        assert!(
            with(json!({"executable": {"command": "/bin/x", "timeout_millis": 1000}}))
                .contains("between 5 and 120 seconds")
        );
        assert!(with(json!({"executable": {}})).contains("no `command`"));
        let header =
            with(json!({"url": "https://idp/token", "headers": {"X-Token": "bad\nvalue-secret"}}));
        assert!(
            header.contains("`headers.X-Token` is not a valid HTTP header value"),
            "{header}"
        );
        assert!(!header.contains("value-secret"), "{header}");
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let source = ExternalAccount::from_json(&file(|f| {
            f.insert("client_id".into(), "client-id-1".into());
            f.insert("client_secret".into(), "hush-client-secret".into());
            f.insert(
                "credential_source".into(),
                json!({"url": "https://idp.example/token", "headers": {"Authorization": "Bearer hush-header"}}),
            );
        }))
        .unwrap();
        let shown = format!("{source:?}");
        assert!(shown.contains("authorization"), "{shown}");
        assert!(!shown.contains("hush"), "{shown}");
    }
}
