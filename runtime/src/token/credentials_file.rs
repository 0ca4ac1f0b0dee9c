//! Application Default Credentials files: where they are, what kind each is, and reading their
//! fields without ever echoing a secret into an error.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::TokenError;
use super::bounded::read_file;
use crate::error::Cause;

/// The environment variable naming a credentials file, read first.
pub(crate) const CREDENTIALS_ENV: &str = "GOOGLE_APPLICATION_CREDENTIALS";

/// The environment variable naming gcloud's configuration folder, where the gcloud ADC file is.
pub(crate) const CLOUDSDK_CONFIG_ENV: &str = "CLOUDSDK_CONFIG";

/// The file `gcloud auth application-default login` writes, inside gcloud's configuration folder.
pub(crate) const ADC_FILE_NAME: &str = "application_default_credentials.json";

/// Google's OAuth 2.0 token endpoint.
pub(crate) const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// The most a credentials file may hold; real ones are 2–3 KiB.
const MAX_FILE: u64 = 1 << 20;

/// What errors say for credentials given as a string rather than a file.
const INLINE_ORIGIN: &str = "<JSON string>";

/// The `type` of a credentials file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    ServiceAccount,
    Impersonated,
    AuthorizedUser,
    ExternalAccount,
    ExternalAccountAuthorizedUser,
    Other(String),
}

impl Kind {
    fn parse(kind: &str) -> Self {
        match kind {
            "service_account" => Self::ServiceAccount,
            "impersonated_service_account" => Self::Impersonated,
            "authorized_user" => Self::AuthorizedUser,
            "external_account" => Self::ExternalAccount,
            "external_account_authorized_user" => Self::ExternalAccountAuthorizedUser,
            other => Self::Other(short(other, 60)),
        }
    }

    /// Why these credentials cannot mint ID tokens for Cloud Run, and what to use instead;
    /// `None` for the kinds that can.
    pub(crate) fn why_unusable(&self) -> Option<String> {
        let instead = "use a service account instead: impersonate one \
            (`gcloud auth application-default login --impersonate-service-account=SA_EMAIL`, \
            or `ImpersonatedServiceAccount`), use its key file (`ServiceAccountKey`), or on a \
            developer machine use `GcloudCli`";
        match self {
            Self::ServiceAccount | Self::Impersonated | Self::ExternalAccount => None,
            Self::AuthorizedUser => Some(format!(
                "`authorized_user` credentials (written by `gcloud auth application-default \
                 login`) hold a user's refresh token, and Google mints ID tokens for an \
                 arbitrary audience only for service accounts; {instead}"
            )),
            Self::ExternalAccountAuthorizedUser => Some(format!(
                "`external_account_authorized_user` credentials (workforce identity federation) \
                 belong to a user, and Google mints ID tokens for an arbitrary audience only for \
                 service accounts; {instead}"
            )),
            Self::Other(kind) => Some(format!(
                "its `type` is `{kind}`, which this crate does not know; expected \
                 `service_account`, `impersonated_service_account` or `external_account`"
            )),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ServiceAccount => "service_account",
            Self::Impersonated => "impersonated_service_account",
            Self::AuthorizedUser => "authorized_user",
            Self::ExternalAccount => "external_account",
            Self::ExternalAccountAuthorizedUser => "external_account_authorized_user",
            Self::Other(kind) => kind,
        })
    }
}

/// A credentials JSON object and where it came from (a path, or [`INLINE_ORIGIN`]).
pub(crate) struct CredentialsJson {
    pub(crate) origin: String,
    /// The file it was read from, if any: advice that recreates the file names it.
    pub(crate) path: Option<PathBuf>,
    fields: Map<String, Value>,
}

impl fmt::Debug for CredentialsJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Field names only: the values include private keys and refresh tokens.
        f.debug_struct("CredentialsJson")
            .field("origin", &self.origin)
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl CredentialsJson {
    /// Reads and parses the file at `path`, which errors call by that path: what every
    /// source's `from_file` does.
    pub(crate) fn from_file(path: &Path) -> Result<Self, TokenError> {
        Self::read(path, path.display().to_string())
    }

    /// Parses credentials given as a string, which errors call [`INLINE_ORIGIN`]: what every
    /// source's `from_json` does.
    pub(crate) fn from_json(json: &str) -> Result<Self, TokenError> {
        Self::parse(INLINE_ORIGIN.into(), json.as_bytes())
    }

    /// Reads and parses the file at `path`; `origin` is what errors call it. At most
    /// [`MAX_FILE`] bytes are read: a credentials file is a few kilobytes, and a path such as
    /// `/dev/zero` must fail fast, not fill the memory.
    pub(crate) fn read(path: &Path, origin: String) -> Result<Self, TokenError> {
        let bytes = match read_file(path, MAX_FILE) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => {
                return Err(TokenError::Credentials {
                    path: origin,
                    reason: format!(
                        "{e}, and a credentials file is a few kilobytes of JSON; check the path"
                    ),
                    source: None,
                });
            }
            Err(e) => {
                return Err(TokenError::Credentials {
                    path: origin.clone(),
                    reason: read_failure(path, &e),
                    source: Some(Arc::new(e)),
                });
            }
        };
        let mut json = Self::parse(origin, &bytes)?;
        json.path = Some(path.to_owned());
        Ok(json)
    }

    /// Parses credentials JSON; `origin` is what errors call it.
    pub(crate) fn parse(origin: String, bytes: &[u8]) -> Result<Self, TokenError> {
        let value: Value = match serde_json::from_slice(bytes) {
            Ok(value) => value,
            Err(e) => {
                // Syntax errors name a position, never the input; data errors could quote it, so
                // they are neither shown nor kept as the source.
                let (what, source) = match e.classify() {
                    serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                        (e.to_string(), Some(Arc::new(e) as Cause))
                    }
                    _ => (format!("at line {} column {}", e.line(), e.column()), None),
                };
                return Err(TokenError::Credentials {
                    path: origin,
                    reason: format!(
                        "it is not JSON ({what}); a credentials file is the JSON key downloaded \
                         from the Cloud console or written by `gcloud iam service-accounts keys \
                         create` or `gcloud auth application-default login`"
                    ),
                    source,
                });
            }
        };
        match value {
            Value::Object(fields) => Ok(Self {
                origin,
                path: None,
                fields,
            }),
            other => Err(TokenError::Credentials {
                path: origin,
                reason: format!(
                    "it is JSON {}, not an object with a `type` field; a credentials file is \
                     the JSON key downloaded from the Cloud console or written by `gcloud iam \
                     service-accounts keys create`",
                    json_kind(&other)
                ),
                source: None,
            }),
        }
    }

    /// An object found inside this one (an impersonation file's `source_credentials`); `advice`
    /// says how to get a file that has it.
    pub(crate) fn nested(&self, name: &str, advice: &str) -> Result<Self, TokenError> {
        match self.optional_object(name)? {
            Some(nested) => Ok(nested),
            None => Err(self.error(format!("it lacks `{name}`; {advice}"))),
        }
    }

    /// An object found inside this one, if there is one.
    pub(crate) fn optional_object(&self, name: &str) -> Result<Option<Self>, TokenError> {
        match self.fields.get(name) {
            Some(Value::Object(fields)) => Ok(Some(Self {
                origin: format!("{} (its `{name}`)", self.origin),
                path: self.path.clone(),
                fields: fields.clone(),
            })),
            None | Some(Value::Null) => Ok(None),
            Some(_) => Err(self.error(format!("its `{name}` is not a JSON object"))),
        }
    }

    /// Whether the field is present (and not `null`).
    pub(crate) fn has(&self, name: &str) -> bool {
        !matches!(self.fields.get(name), None | Some(Value::Null))
    }

    /// An optional whole number, at most `u64::MAX`.
    pub(crate) fn optional_u64(&self, name: &str) -> Result<Option<u64>, TokenError> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
            Some(_) => Err(self.error(format!("`{name}` must be a whole number"))),
        }
    }

    /// An optional object whose values are all strings (HTTP headers), in the file's order.
    /// Errors name the fields, never their values.
    pub(crate) fn optional_string_map(
        &self,
        name: &str,
    ) -> Result<Vec<(String, String)>, TokenError> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Object(entries)) => entries
                .iter()
                .map(|(key, value)| match value {
                    Value::String(value) => Ok((key.clone(), value.clone())),
                    _ => Err(self.error(format!("`{name}.{}` must be a string", short(key, 60)))),
                })
                .collect(),
            Some(_) => Err(self.error(format!("`{name}` must be an object of strings"))),
        }
    }

    /// The `type` field.
    pub(crate) fn kind(&self) -> Result<Kind, TokenError> {
        match self.fields.get("type") {
            Some(Value::String(kind)) => Ok(Kind::parse(kind)),
            Some(_) => {
                Err(self
                    .error("its `type` is not a string; is this a Google credentials file?".into()))
            }
            None => Err(self.error(
                "it has no `type` field, so it is not a Google credentials file; use the JSON \
                 key downloaded from the Cloud console or written by `gcloud iam \
                 service-accounts keys create`"
                    .into(),
            )),
        }
    }

    /// Fails unless the `type` is `expected`, saying what the file is and what to do.
    pub(crate) fn expect_kind(&self, expected: Kind, wanted: &str) -> Result<(), TokenError> {
        let kind = self.kind()?;
        if kind == expected {
            return Ok(());
        }
        let mut reason = format!(
            "it holds `{kind}` credentials, but {wanted} (`\"type\": \"{expected}\"`) is needed here"
        );
        if let Some(why) = kind.why_unusable() {
            reason.push_str("; ");
            reason.push_str(&why);
        } else if kind == Kind::ExternalAccount {
            reason.push_str(
                "; read it with `ExternalAccount` (workload identity federation), or let \
                 `default_source()` pick the source",
            );
        }
        Err(self.error(reason))
    }

    /// The string fields `names`, all required; the error lists every one missing.
    pub(crate) fn required<const N: usize>(
        &self,
        names: [&str; N],
        advice: &str,
    ) -> Result<[&str; N], TokenError> {
        let mut missing = Vec::new();
        let mut not_strings = Vec::new();
        let mut found = [""; N];
        for (slot, name) in found.iter_mut().zip(names) {
            match self.fields.get(name) {
                Some(Value::String(value)) if !value.trim().is_empty() => *slot = value,
                Some(Value::String(_)) | None | Some(Value::Null) => {
                    missing.push(format!("`{name}`"))
                }
                Some(_) => not_strings.push(format!("`{name}`")),
            }
        }
        let mut problems = Vec::new();
        if !missing.is_empty() {
            problems.push(format!("it lacks {}", missing.join(", ")));
        }
        if !not_strings.is_empty() {
            let verb = if not_strings.len() == 1 {
                "must be a string"
            } else {
                "must be strings"
            };
            problems.push(format!("{} {verb}", not_strings.join(", ")));
        }
        if problems.is_empty() {
            Ok(found)
        } else {
            Err(self.error(format!("{}; {advice}", problems.join(" and "))))
        }
    }

    /// An optional string field.
    pub(crate) fn optional(&self, name: &str) -> Result<Option<&str>, TokenError> {
        match self.fields.get(name) {
            Some(Value::String(value)) if !value.trim().is_empty() => Ok(Some(value)),
            Some(Value::String(_)) | Some(Value::Null) | None => Ok(None),
            Some(_) => Err(self.error(format!("`{name}` must be a string"))),
        }
    }

    /// An optional list of strings.
    pub(crate) fn optional_list(&self, name: &str) -> Result<Vec<String>, TokenError> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(self.error(format!("`{name}` must be a list of strings"))),
                })
                .collect(),
            Some(_) => Err(self.error(format!("`{name}` must be a list of strings"))),
        }
    }

    pub(crate) fn error(&self, reason: String) -> TokenError {
        TokenError::Credentials {
            path: self.origin.clone(),
            reason,
            source: None,
        }
    }
}

fn read_failure(path: &Path, error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::NotFound => "it does not exist; check the path, or create a key file with \
             `gcloud iam service-accounts keys create key.json --iam-account=SA_EMAIL`"
            .into(),
        _ if path.is_dir() => "it is a directory; give the path of the JSON file inside it".into(),
        ErrorKind::PermissionDenied => format!(
            "it cannot be read ({error}); make it readable by the user this program runs as"
        ),
        _ => format!("it cannot be read ({error})"),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// At most `max` characters of `text`, on one line, for quoting untrusted names in errors.
pub(crate) fn short(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

/// Where `gcloud auth application-default login` writes its file: `$CLOUDSDK_CONFIG`, else
/// `%APPDATA%\gcloud` on Windows and `~/.config/gcloud` elsewhere.
pub(crate) fn well_known_file() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os(CLOUDSDK_CONFIG_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join(ADC_FILE_NAME));
    }
    #[cfg(windows)]
    {
        match std::env::var_os("APPDATA").filter(|d| !d.is_empty()) {
            Some(dir) => Ok(PathBuf::from(dir).join("gcloud").join(ADC_FILE_NAME)),
            None => Err(format!("neither {CLOUDSDK_CONFIG_ENV} nor APPDATA is set")),
        }
    }
    #[cfg(not(windows))]
    {
        match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
            Some(dir) => Ok(PathBuf::from(dir)
                .join(".config")
                .join("gcloud")
                .join(ADC_FILE_NAME)),
            None => Err(format!("neither {CLOUDSDK_CONFIG_ENV} nor HOME is set")),
        }
    }
}

/// An endpoint named in a credentials file (`token_uri`, the IAM URL): https on
/// `*.googleapis.com`, or a loopback address for emulators. A file is data that may come from
/// anywhere, so it must not be able to send credentials elsewhere. Returns the URL without a
/// trailing slash.
pub(crate) fn file_endpoint(url: &str) -> Result<String, String> {
    cloud_run_grpc_endpoint::google_endpoint(url).map_err(|problem| refused(url, &problem))
}

/// An endpoint given in code (`with_token_uri`, `with_iam_base_url`): https anywhere, or http
/// to a loopback address. Returns the URL without a trailing slash.
pub(crate) fn code_endpoint(url: &str) -> Result<String, String> {
    cloud_run_grpc_endpoint::endpoint(url).map_err(|problem| refused(url, &problem))
}

/// [`code_endpoint`] for a source's builder: a refusal is an error of the source `name()`.
pub(crate) fn code_endpoint_of(
    name: impl FnOnce() -> String,
    url: &str,
) -> Result<String, TokenError> {
    code_endpoint(url).map_err(|reason| TokenError::Unsupported {
        source_name: name(),
        reason,
        source: None,
    })
}

/// Why `url` is refused, without the user info (a password) it may carry.
fn refused(url: &str, problem: &cloud_run_grpc_endpoint::Problem) -> String {
    let shown = cloud_run_grpc_endpoint::redacted(url.trim());
    format!("`{}` is refused: {problem}", short(&shown, 200))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<CredentialsJson, TokenError> {
        CredentialsJson::parse("f.json".into(), text.as_bytes())
    }

    #[test]
    fn file_endpoints_are_googles_or_loopback() {
        assert_eq!(
            file_endpoint("https://oauth2.googleapis.com/token/").unwrap(),
            "https://oauth2.googleapis.com/token"
        );
        for ok in [
            "https://oauth2-psc.p.googleapis.com/token",
            "http://127.0.0.1:8080/token",
            "http://[::1]:8080/token",
            "https://localhost:1/token",
        ] {
            assert!(file_endpoint(ok).is_ok(), "{ok}");
        }
        let refused = file_endpoint("https://oauth2.example.com/token").unwrap_err();
        assert!(
            refused.starts_with("`https://oauth2.example.com/token` is refused: credentials are sent only to Google's endpoints"),
            "{refused}"
        );
        for wrong in [
            "http://oauth2.googleapis.com/token",
            "ftp://127.0.0.1/x",
            "/token",
            "not a url",
        ] {
            assert!(file_endpoint(wrong).is_err(), "{wrong}");
        }
    }

    #[test]
    fn a_refused_endpoint_is_named_without_its_password() {
        for refused in [
            file_endpoint("https://admin:hunter2@oauth2.example.com/token"),
            code_endpoint("http://admin:hunter2@oauth2.example.com/token"),
        ] {
            let refused = refused.unwrap_err();
            assert!(refused.contains("oauth2.example.com"), "{refused}");
            assert!(!refused.contains("hunter2"), "{refused}");
        }
    }

    #[test]
    fn code_endpoints_are_https_anywhere_or_loopback() {
        assert!(code_endpoint("https://oauth2.example.com/token").is_ok());
        assert!(code_endpoint("http://localhost:1/token").is_ok());
        let refused = code_endpoint("http://oauth2.example.com/token").unwrap_err();
        assert!(
            refused.contains("allowed only to a loopback address"),
            "{refused}"
        );
    }

    #[test]
    fn lists_every_missing_field() {
        let json = parse(r#"{"type":"service_account","client_email":7}"#).unwrap();
        let err = json
            .required(["client_email", "private_key", "token_uri"], "do X")
            .unwrap_err()
            .to_string();
        assert!(err.contains("lacks `private_key`, `token_uri`"), "{err}");
        assert!(err.contains("`client_email` must be a string"), "{err}");
        assert!(err.ends_with("do X"), "{err}");
    }

    #[test]
    fn data_errors_never_quote_the_input() {
        let err = parse(r#"["-----BEGIN PRIVATE KEY-----"]"#)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("BEGIN"), "{err}");
        assert!(err.contains("an array"), "{err}");
        let err = parse(r#"{"private_key": "secret"#).unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
        assert!(err.contains("not JSON"), "{err}");
    }

    #[test]
    fn debug_shows_field_names_only() {
        let json = parse(r#"{"private_key":"hush"}"#).unwrap();
        let shown = format!("{json:?}");
        assert!(
            shown.contains("private_key") && !shown.contains("hush"),
            "{shown}"
        );
    }

    #[test]
    fn short_quotes_are_bounded_and_on_one_line() {
        assert_eq!(short("a\nb", 10), "a b");
        assert_eq!(short("abcdef", 3), "abc…");
    }
}
