//! Application Default Credentials, for ID tokens: the credentials file named by
//! `GOOGLE_APPLICATION_CREDENTIALS`, else gcloud's ADC file, else the metadata server.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokio::sync::OnceCell;

use super::metadata::{METADATA_HOST_ENV, check_flavor};
use crate::fetch::{self as client, Failure};
use crate::token::credentials_file::{CREDENTIALS_ENV, CredentialsJson, Kind, well_known_file};
use crate::token::{
    ExternalAccount, IdTokenSource, ImpersonatedServiceAccount, MetadataServer, ServiceAccountKey,
    TokenError, TokenFuture,
};

/// The source Application Default Credentials pick, found on the first fetch (creating it does
/// no I/O):
///
/// 1. the file named by `GOOGLE_APPLICATION_CREDENTIALS`;
/// 2. gcloud's ADC file, `application_default_credentials.json` in `$CLOUDSDK_CONFIG`, else
///    `~/.config/gcloud` (`%APPDATA%\gcloud` on Windows);
/// 3. the metadata server (`GCE_METADATA_HOST`, else 169.254.169.254), if it answers a short
///    probe.
///
/// A `service_account` file becomes a [`ServiceAccountKey`], an
/// `impersonated_service_account` file an [`ImpersonatedServiceAccount`], an
/// `external_account` file (workload identity federation) an [`ExternalAccount`]. Files that
/// cannot mint ID tokens (`authorized_user`) are an error that says what to use instead;
/// finding nothing is [`TokenError::NotFound`], listing every place looked at. A failed search
/// is repeated at the next fetch.
///
/// ```
/// use std::time::Duration;
/// use cloud_run_grpc::token::{DefaultCredentials, IdTokenSource};
///
/// let adc = DefaultCredentials::new()
///     .metadata_host("127.0.0.1:8181")
///     .probe_timeout(Duration::from_millis(500));
/// assert_eq!(adc.name(), "application default credentials");
/// ```
pub struct DefaultCredentials {
    metadata_host: Option<String>,
    token_uri: Option<String>,
    iam_base_url: Option<String>,
    probe_timeout: Duration,
    resolved: OnceCell<Arc<dyn IdTokenSource>>,
}

/// The source Application Default Credentials would pick; resolved lazily, on the first fetch,
/// so creating it does no I/O. See [`DefaultCredentials`].
///
/// ```
/// use cloud_run_grpc::token::{IdTokenSource, default_source};
/// assert_eq!(default_source().name(), "application default credentials");
/// ```
pub fn default_source() -> DefaultCredentials {
    DefaultCredentials::new()
}

impl Default for DefaultCredentials {
    fn default() -> Self {
        Self::new()
    }
}

impl DefaultCredentials {
    /// The usual search, with Google's endpoints.
    pub fn new() -> Self {
        Self {
            metadata_host: None,
            token_uri: None,
            iam_base_url: None,
            probe_timeout: Duration::from_secs(2),
            resolved: OnceCell::new(),
        }
    }

    /// Probes and uses the metadata server at `host` (`host[:port]`) instead of
    /// `GCE_METADATA_HOST` or 169.254.169.254.
    pub fn metadata_host(mut self, host: impl Into<String>) -> Self {
        self.metadata_host = Some(host.into());
        self
    }

    /// Sends assertions and refresh tokens from credentials files to this token endpoint
    /// instead of the files' own `token_uri` (Google's): an emulator, say.
    pub fn token_uri(mut self, uri: impl Into<String>) -> Self {
        self.token_uri = Some(uri.into());
        self
    }

    /// Calls IAM Credentials at this base URL instead of the one an impersonation or
    /// `external_account` file names (Google's).
    pub fn iam_base_url(mut self, url: impl Into<String>) -> Self {
        self.iam_base_url = Some(url.into());
        self
    }

    /// How long the metadata server may take to answer the probe; default 2 seconds.
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.probe_timeout = timeout;
        self
    }

    /// Finds the source (once; a failure is retried at the next call) and returns it.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), cloud_run_grpc::token::TokenError> {
    /// use cloud_run_grpc::token::{IdTokenSource, default_source};
    /// let adc = default_source();
    /// println!("ID tokens come from the {}", adc.resolve().await?.name());
    /// # Ok(()) }
    /// ```
    pub async fn resolve(&self) -> Result<Arc<dyn IdTokenSource>, TokenError> {
        self.resolved.get_or_try_init(|| self.find()).await.cloned()
    }

    async fn find(&self) -> Result<Arc<dyn IdTokenSource>, TokenError> {
        let mut looked = Vec::new();

        match std::env::var_os(CREDENTIALS_ENV) {
            Some(path) if !path.is_empty() => {
                let origin = format!("{} (named by {CREDENTIALS_ENV})", path.to_string_lossy());
                return self.load_file(PathBuf::from(path), origin).await;
            }
            Some(_) => looked.push(format!("{CREDENTIALS_ENV}: set but empty")),
            None => looked.push(format!("{CREDENTIALS_ENV}: not set")),
        }

        match well_known_file() {
            Ok(path) => match std::fs::metadata(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => looked.push(format!(
                    "{}: no such file (`gcloud auth application-default login \
                     --impersonate-service-account=SA_EMAIL` writes one)",
                    path.display()
                )),
                _ => {
                    let origin = format!("{} (gcloud's ADC file)", path.display());
                    return self.load_file(path, origin).await;
                }
            },
            Err(why) => looked.push(format!("gcloud's ADC file: {why}")),
        }

        let metadata = match &self.metadata_host {
            Some(host) => MetadataServer::with_host(host.clone()),
            None => MetadataServer::new(),
        };
        match probe(metadata.host(), self.probe_timeout).await {
            Ok(()) => Ok(Arc::new(metadata)),
            Err(why) => {
                let hint = if self.metadata_host.is_none()
                    && std::env::var_os(METADATA_HOST_ENV).is_none()
                {
                    " (not on Google Cloud?)"
                } else {
                    ""
                };
                looked.push(format!(
                    "the metadata server at {}: {why}{hint}",
                    metadata.host()
                ));
                Err(TokenError::NotFound { looked })
            }
        }
    }

    /// The source for the credentials file at `path`; reading and parsing it (and loading the
    /// root certificates gcp_auth wants) is blocking work, done off the async threads.
    async fn load_file(
        &self,
        path: PathBuf,
        origin: String,
    ) -> Result<Arc<dyn IdTokenSource>, TokenError> {
        let token_uri = self.token_uri.clone();
        let iam_base_url = self.iam_base_url.clone();
        let load = move || -> Result<Arc<dyn IdTokenSource>, TokenError> {
            let json = CredentialsJson::read(&path, origin)?;
            match json.kind()? {
                Kind::ServiceAccount => {
                    let mut key = ServiceAccountKey::from_credentials(&json)?;
                    if let Some(uri) = &token_uri {
                        key = key.with_token_uri(uri)?;
                    }
                    Ok(Arc::new(key))
                }
                Kind::Impersonated => {
                    let mut source = ImpersonatedServiceAccount::from_credentials(&json)?;
                    if let Some(uri) = &token_uri {
                        source = source.with_token_uri(uri)?;
                    }
                    if let Some(url) = &iam_base_url {
                        source = source.with_iam_base_url(url)?;
                    }
                    Ok(Arc::new(source))
                }
                Kind::ExternalAccount => {
                    let mut source = ExternalAccount::from_credentials(&json)?;
                    if let Some(url) = &iam_base_url {
                        source = source.with_iam_base_url(url)?;
                    }
                    Ok(Arc::new(source))
                }
                kind => Err(TokenError::Unsupported {
                    source_name: format!("`{kind}` credentials in {}", json.origin),
                    reason: kind.why_unusable().unwrap_or_default(),
                    source: None,
                }),
            }
        };
        match tokio::task::spawn_blocking(load).await {
            Ok(result) => result,
            Err(e) => Err(TokenError::Unsupported {
                source_name: "application default credentials".into(),
                reason: format!("reading the credentials file failed: {e}"),
                source: Some(Arc::new(e)),
            }),
        }
    }
}

/// Asks the metadata server whether it is there: `GET /computeMetadata/v1/` must answer with
/// `Metadata-Flavor: Google`, which no other server on that address would.
async fn probe(host: &str, timeout: Duration) -> Result<(), String> {
    let request =
        super::metadata::request(host, "/computeMetadata/v1/").map_err(|(reason, _)| reason)?;
    match client::send(request, timeout).await {
        Ok(response) => {
            check_flavor(&response)?;
            match response.status {
                StatusCode::OK => Ok(()),
                status => Err(format!("answered the probe with HTTP {status}")),
            }
        }
        Err(Failure::Timeout(after)) => Err(format!("no answer within {after:?}")),
        Err(Failure::Unreachable { cause, .. }) => Err(format!("unreachable ({cause})")),
    }
}

impl fmt::Debug for DefaultCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefaultCredentials")
            .field("metadata_host", &self.metadata_host)
            .field("token_uri", &self.token_uri)
            .field("iam_base_url", &self.iam_base_url)
            .field("probe_timeout", &self.probe_timeout)
            .field("resolved", &self.resolved.get())
            .finish()
    }
}

impl IdTokenSource for DefaultCredentials {
    fn fetch<'a>(&'a self, audience: &'a str) -> TokenFuture<'a> {
        Box::pin(async move { self.resolve().await?.fetch(audience).await })
    }

    fn name(&self) -> String {
        match self.resolved.get() {
            Some(source) => source.name(),
            None => "application default credentials".into(),
        }
    }

    fn fetch_timeout(&self) -> Option<Duration> {
        self.resolved.get()?.fetch_timeout()
    }
}
