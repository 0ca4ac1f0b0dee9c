//! ID tokens from a service-account key file: a JWT assertion signed with the key, exchanged at
//! the key's token endpoint for an ID token.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::pem::PemObject as _;

use crate::token::credentials_file::{
    CredentialsJson, GOOGLE_TOKEN_URI, Kind, code_endpoint_of, file_endpoint,
};
use crate::token::endpoint::Endpoint;
use crate::token::{IdToken, IdTokenSource, TokenError, TokenFuture};

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Assertions are valid for the longest time Google allows.
const ASSERTION_LIFETIME: u64 = 3600;

const NEW_KEY: &str = "create a new key with `gcloud iam service-accounts keys create key.json \
    --iam-account=SA_EMAIL`";

/// Fetches ID tokens with a service account's JSON key.
///
/// Each fetch signs a JWT assertion (`iss` and `sub` the account's email, `aud` the key's
/// `token_uri`, `target_audience` the audience) with the key, RS256 via gcp_auth's signer, and
/// posts it to `token_uri` with `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`; the
/// answer's `id_token` is the token.
///
/// Prefer keyless credentials where you can (the metadata server on Google Cloud,
/// [`ImpersonatedServiceAccount`](super::ImpersonatedServiceAccount) elsewhere): a key file is a
/// long-lived secret. Neither `Debug` nor any error shows the private key.
///
/// ```no_run
/// use cloud_run_grpc::CloudRunChannel;
/// use cloud_run_grpc::token::ServiceAccountKey;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let key = ServiceAccountKey::from_file("/secrets/invoker.json")?;
/// let channel = CloudRunChannel::builder("bookstore-abc123-ew.a.run.app")
///     .token_source(key)
///     .build()?;
/// # Ok(()) }
/// ```
///
/// A file that is not a service-account key says so, and what to do:
///
/// ```
/// use cloud_run_grpc::token::{ServiceAccountKey, TokenError};
///
/// let err = ServiceAccountKey::from_json(r#"{"type": "authorized_user"}"#).unwrap_err();
/// assert!(matches!(err, TokenError::Credentials { .. }));
/// assert!(err.to_string().contains("impersonate"));
/// ```
#[derive(Clone)]
pub struct ServiceAccountKey {
    client_email: String,
    key_id: Option<String>,
    token_uri: String,
    account: Arc<gcp_auth::CustomServiceAccount>,
    origin: String,
    timeout: Duration,
}

impl ServiceAccountKey {
    /// Reads the JSON key file at `path` (as downloaded from the Cloud console or written by
    /// `gcloud iam service-accounts keys create`).
    ///
    /// The file's `token_uri`, where the signed assertion goes, must be https on
    /// `*.googleapis.com` (private endpoints such as `oauth2-foo.p.googleapis.com` included) or
    /// a loopback address (an emulator): a file must not be able to send credentials anywhere
    /// else. [`with_token_uri`](Self::with_token_uri) chooses another endpoint in code.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, TokenError> {
        Self::from_credentials(&CredentialsJson::from_file(path.as_ref())?)
    }

    /// Reads a JSON key given as a string (e.g. from a secret manager).
    pub fn from_json(json: &str) -> Result<Self, TokenError> {
        Self::from_credentials(&CredentialsJson::from_json(json)?)
    }

    pub(crate) fn from_credentials(json: &CredentialsJson) -> Result<Self, TokenError> {
        json.expect_kind(Kind::ServiceAccount, "a service-account key")?;
        let advice = format!("the key file is incomplete; {NEW_KEY}");
        let [client_email, private_key] =
            json.required(["client_email", "private_key"], &advice)?;
        let token_uri = json.optional("token_uri")?.unwrap_or(GOOGLE_TOKEN_URI);
        let token_uri =
            file_endpoint(token_uri).map_err(|why| json.error(format!("its `token_uri` {why}")))?;
        let key_id = json.optional("private_key_id")?.map(str::to_owned);
        let account = account(client_email, private_key, &token_uri).map_err(|w| json.error(w))?;
        Ok(Self {
            client_email: client_email.to_owned(),
            key_id,
            token_uri,
            account: Arc::new(account),
            origin: json.origin.clone(),
            timeout: Duration::from_secs(10),
        })
    }

    /// Exchanges assertions at `uri` instead of the key's `token_uri` (an emulator, or a
    /// private endpoint). It must be https (to any host: it is your code's choice), or http to
    /// a loopback address.
    ///
    /// ```
    /// # use cloud_run_grpc::token::ServiceAccountKey;
    /// # fn check(key: ServiceAccountKey) {
    /// let refused = key.with_token_uri("http://tokens.example.com/token").unwrap_err();
    /// assert!(refused.to_string().contains("allowed only to a loopback address"));
    /// # }
    /// ```
    pub fn with_token_uri(self, uri: impl AsRef<str>) -> Result<Self, TokenError> {
        let token_uri = code_endpoint_of(|| self.name(), uri.as_ref())?;
        let account = account(
            &self.client_email,
            self.account.private_key_pem(),
            &token_uri,
        )
        .map_err(|reason| TokenError::Credentials {
            path: self.origin.clone(),
            reason,
            source: None,
        })?;
        Ok(Self {
            token_uri,
            account: Arc::new(account),
            ..self
        })
    }

    /// How long one exchange (connect and answer) may take; default 10 seconds.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The service account's email (`client_email`).
    pub fn client_email(&self) -> &str {
        &self.client_email
    }

    /// Where assertions are exchanged for ID tokens.
    pub fn token_uri(&self) -> &str {
        &self.token_uri
    }

    /// The same key as a gcp_auth access-token provider, for impersonation.
    pub(crate) fn access_tokens(&self) -> Arc<dyn gcp_auth::TokenProvider> {
        self.account.clone()
    }

    fn assertion(&self, audience: &str) -> Result<String, TokenError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let mut header = serde_json::json!({ "alg": "RS256", "typ": "JWT" });
        if let Some(kid) = &self.key_id {
            header["kid"] = kid.as_str().into();
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "sub": self.client_email,
            "aud": self.token_uri,
            "target_audience": audience,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        });
        let mut jwt = URL_SAFE_NO_PAD.encode(header.to_string());
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(claims.to_string(), &mut jwt);
        let signature =
            self.account
                .signer()
                .sign(jwt.as_bytes())
                .map_err(|e| TokenError::Credentials {
                    path: self.origin.clone(),
                    reason: format!("its private key could not sign the assertion; {NEW_KEY}"),
                    source: Some(Arc::new(e)),
                })?;
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut jwt);
        Ok(jwt)
    }

    async fn fetch_token(&self, audience: &str) -> Result<IdToken, TokenError> {
        let source_name = self.name();
        let wrong_endpoint = format!(
            "check that the token URI ({}) is Google's token endpoint ({GOOGLE_TOKEN_URI}) and \
             that no proxy answers in its place",
            self.token_uri
        );
        let endpoint = Endpoint {
            source_name: &source_name,
            field: "id_token",
            wrong_endpoint: &wrong_endpoint,
            advice: &oauth_advice,
        };
        let assertion = self.assertion(audience)?;
        let fields = [
            ("grant_type", JWT_BEARER),
            ("assertion", assertion.as_str()),
        ];
        let answer = endpoint
            .post_form(&self.token_uri, &fields, self.timeout)
            .await?;
        endpoint.minted_id_token(answer)
    }
}

/// What to do about an OAuth token endpoint's error answer.
pub(crate) fn oauth_advice(status: u16, code: &str) -> Option<String> {
    match code {
        "invalid_grant" => Some(format!(
            "the assertion was refused: the key may have been deleted or disabled, the service \
             account may be disabled or gone, or this machine's clock may be off; check the key \
             in the Cloud console (IAM > Service accounts > Keys) or {NEW_KEY}"
        )),
        "invalid_client" | "unauthorized_client" => Some(
            "the service account or its key is not recognised; check that the account exists \
             and is enabled"
                .to_owned(),
        ),
        _ if status == 429 || status >= 500 => {
            Some("the token endpoint is having trouble; the fetch will be retried".to_owned())
        }
        _ => None,
    }
}

/// gcp_auth's service account, which signs for us and can also fetch access tokens.
fn account(
    client_email: &str,
    private_key: &str,
    token_uri: &str,
) -> Result<gcp_auth::CustomServiceAccount, String> {
    let malformed = format!(
        "its `private_key` is not an RSA private key in PEM form (PKCS#8, `-----BEGIN PRIVATE \
         KEY-----`); the file may have been edited or cut short; {NEW_KEY}"
    );
    // Checked here first so that a bad key is reported as such, whatever gcp_auth would say.
    if PrivatePkcs8KeyDer::from_pem_slice(private_key.as_bytes()).is_err() {
        return Err(malformed);
    }
    let json = serde_json::json!({
        "type": "service_account",
        "client_email": client_email,
        "private_key": private_key,
        "token_uri": token_uri,
    });
    gcp_auth::CustomServiceAccount::from_json(&json.to_string()).map_err(|e| match e {
        gcp_auth::Error::Io(..) => format!(
            "the platform's root certificates could not be loaded ({e}); install the system's CA \
             bundle (e.g. `ca-certificates`)"
        ),
        _ => malformed,
    })
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("key_id", &self.key_id)
            .field("token_uri", &self.token_uri)
            .field("origin", &self.origin)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl IdTokenSource for ServiceAccountKey {
    fn fetch<'a>(&'a self, audience: &'a str) -> TokenFuture<'a> {
        Box::pin(self.fetch_token(audience))
    }

    fn name(&self) -> String {
        format!(
            "token endpoint {} (key of {})",
            self.token_uri, self.client_email
        )
    }
}
