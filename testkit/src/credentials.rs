//! Application Default Credentials files: writing them where the code under test looks.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// The file name gcloud gives Application Default Credentials, under `CLOUDSDK_CONFIG`
/// (`~/.config/gcloud` by default).
pub const ADC_FILE_NAME: &str = "application_default_credentials.json";

/// A credentials JSON file in a fresh temporary directory, removed (with the directory) on drop.
///
/// The file is named [`ADC_FILE_NAME`], so [`dir`](CredentialsFile::dir) can serve as
/// `CLOUDSDK_CONFIG` and [`path`](CredentialsFile::path) as `GOOGLE_APPLICATION_CREDENTIALS`.
/// Its `Debug` shows the path only.
///
/// ```
/// use cloud_run_grpc_testkit::{CredentialsFile, ServiceAccount};
///
/// let account = ServiceAccount::new("ci@p.iam.gserviceaccount.com");
/// let file = CredentialsFile::write(&account.key_json("http://127.0.0.1:9/token")).unwrap();
/// assert_eq!(std::fs::read_to_string(file.path()).unwrap(), file.json());
/// let path = file.path().to_owned();
/// drop(file);
/// assert!(!path.exists());
/// ```
pub struct CredentialsFile {
    dir: tempfile::TempDir,
    path: PathBuf,
    json: String,
}

impl CredentialsFile {
    /// Writes `json` (any text: tests of broken files are welcome) to a new file.
    pub fn write(json: &str) -> io::Result<Self> {
        CredentialsFile::write_named(ADC_FILE_NAME, json.as_bytes())
    }

    /// Writes `contents` to a new file called `name` (e.g. `key.json`, or bytes that are not
    /// UTF-8) in a fresh temporary directory.
    pub fn write_named(name: &str, contents: &[u8]) -> io::Result<Self> {
        // Dropping `dir` removes it, also when the write below fails.
        let dir = tempfile::Builder::new()
            .prefix("cloud-run-grpc-testkit-")
            .tempdir()?;
        let path = dir.path().join(name);
        std::fs::write(&path, contents)?;
        Ok(CredentialsFile {
            dir,
            path,
            json: String::from_utf8_lossy(contents).into_owned(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory holding it (usable as `CLOUDSDK_CONFIG`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What was written (lossily decoded if it was not UTF-8).
    pub fn json(&self) -> &str {
        &self.json
    }
}

impl fmt::Debug for CredentialsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialsFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// An `impersonated_service_account` ADC file, as `gcloud auth application-default login
/// --impersonate-service-account=TARGET` writes: `source_credentials` is the JSON of the
/// source (a `service_account` key or an `authorized_user`), `impersonation_url` is IAM's
/// `…/serviceAccounts/TARGET:generateAccessToken` URL
/// ([`IamEmulator::impersonation_url`](crate::IamEmulator::impersonation_url)).
pub fn impersonated_service_account_json(
    source_credentials: &str,
    impersonation_url: &str,
    delegates: &[&str],
) -> String {
    let source = serde_json::from_str::<serde_json::Value>(source_credentials)
        .unwrap_or_else(|_| serde_json::Value::String(source_credentials.to_owned()));
    let json = serde_json::json!({
        "type": "impersonated_service_account",
        "service_account_impersonation_url": impersonation_url,
        "source_credentials": source,
        "delegates": delegates,
    });
    serde_json::to_string_pretty(&json).unwrap_or_else(|_| json.to_string())
}

/// An `authorized_user` ADC file, as `gcloud auth application-default login` writes for a
/// person. Such credentials cannot mint ID tokens for an arbitrary audience.
pub fn authorized_user_json(client_id: &str, client_secret: &str, refresh_token: &str) -> String {
    let json = serde_json::json!({
        "type": "authorized_user",
        "client_id": client_id,
        "client_secret": client_secret,
        "refresh_token": refresh_token,
        "universe_domain": "googleapis.com",
    });
    serde_json::to_string_pretty(&json).unwrap_or_else(|_| json.to_string())
}

/// An `external_account` ADC file (workload identity federation), as `gcloud iam
/// workload-identity-pools create-cred-config` writes: the pool provider's `audience`, STS's
/// `token_url`, `credential_source` as given (`{"file": PATH}`, `{"url": URL, "headers": {…},
/// "format": {"type": "json", "subject_token_field_name": …}}`, `{"executable": {"command":
/// …}}`), and the `service_account_impersonation_url` when given (ID tokens need one).
/// [`StsEmulator::external_account_json`](crate::StsEmulator::external_account_json) fills in
/// the emulator's audience and URL.
pub fn external_account_json(
    audience: &str,
    token_url: &str,
    credential_source: &serde_json::Value,
    impersonation_url: Option<&str>,
) -> String {
    let mut json = serde_json::json!({
        "universe_domain": "googleapis.com",
        "type": "external_account",
        "audience": audience,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": token_url,
        "credential_source": credential_source,
    });
    if let Some(url) = impersonation_url {
        json["service_account_impersonation_url"] = url.into();
    }
    serde_json::to_string_pretty(&json).unwrap_or_else(|_| json.to_string())
}
