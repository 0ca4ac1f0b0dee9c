//! Throw-away service accounts and their JSON key files.

use std::fmt;
use std::sync::Arc;

use crate::issuer::DEFAULT_PROJECT_ID;
use crate::keys::{self, Key};

/// A made-up service account with a fixed RSA test key, for key-file credentials.
///
/// The [`OAuthEmulator`](crate::OAuthEmulator) accepts assertions signed with the key of every
/// service account it was given. Its `Debug` never shows the private key.
///
/// ```
/// use cloud_run_grpc_testkit::ServiceAccount;
///
/// let account = ServiceAccount::new("ci@my-project.iam.gserviceaccount.com");
/// assert_eq!(account.project_id(), "my-project");
/// let json: serde_json::Value =
///     serde_json::from_str(&account.key_json("http://127.0.0.1:1/token")).unwrap();
/// assert_eq!(json["type"], "service_account");
/// assert_eq!(json["token_uri"], "http://127.0.0.1:1/token");
/// assert!(json["private_key"].as_str().unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));
/// ```
#[derive(Clone)]
pub struct ServiceAccount {
    email: String,
    project_id: String,
    key: Arc<Key>,
}

impl ServiceAccount {
    /// A service account with this email and the testkit's first service-account key. The
    /// project id is taken from `NAME@PROJECT.iam.gserviceaccount.com`, else
    /// [`DEFAULT_PROJECT_ID`].
    pub fn new(email: impl Into<String>) -> Self {
        let email = email.into();
        let project_id = email
            .split_once('@')
            .and_then(|(_, domain)| domain.strip_suffix(".iam.gserviceaccount.com"))
            .unwrap_or(DEFAULT_PROJECT_ID)
            .to_owned();
        ServiceAccount {
            email,
            project_id,
            key: keys::SERVICE_ACCOUNT_1.clone(),
        }
    }

    /// The same account with the testkit's second service-account key instead: an OAuth
    /// emulator that only knows the first rejects its assertions (`Invalid JWT Signature.`).
    pub fn with_other_key(mut self) -> Self {
        self.key = keys::SERVICE_ACCOUNT_2.clone();
        self
    }

    /// The account's email (`client_email`).
    pub fn email(&self) -> &str {
        &self.email
    }

    /// The project id.
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// The key id (`private_key_id`).
    pub fn key_id(&self) -> &str {
        self.key.kid
    }

    /// A numeric client id derived from the email, as Google's are.
    pub fn client_id(&self) -> String {
        crate::issuer::subject_for(&self.email)
    }

    /// The private key, PKCS#8 PEM (`private_key`).
    pub fn private_key_pem(&self) -> &str {
        self.key.pem
    }

    /// The key file Google would let you download, with `token_uri` pointing where you say
    /// (usually [`OAuthEmulator::token_uri`](crate::OAuthEmulator::token_uri)).
    pub fn key_json(&self, token_uri: &str) -> String {
        let json = serde_json::json!({
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.key.kid,
            "private_key": self.key.pem,
            "client_email": self.email,
            "client_id": self.client_id(),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": format!(
                "https://www.googleapis.com/robot/v1/metadata/x509/{}",
                crate::http::percent_encode(&self.email)
            ),
            "universe_domain": "googleapis.com",
        });
        // Pretty, like the files Google hands out.
        serde_json::to_string_pretty(&json).unwrap_or_else(|_| json.to_string())
    }

    pub(crate) fn key(&self) -> &Arc<Key> {
        &self.key
    }
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("email", &self.email)
            .field("key_id", &self.key.kid)
            .finish_non_exhaustive()
    }
}
