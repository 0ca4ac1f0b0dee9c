//! Subject tokens printed by a program (`credential_source.executable`), run only when
//! `GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1`.
//!
//! The program's answer, its bounds and its cache follow Google's auth libraries
//! (`golang.org/x/oauth2/google/externalaccount/executablecredsource.go`, and Python's
//! `google.auth.pluggable`) check for check, so that a program written for them works here:
//!
//! ```json
//! {"version": 1, "success": true, "token_type": "urn:ietf:params:oauth:token-type:id_token",
//!  "id_token": "eyJ…", "expiration_time": 1700000000}
//! ```
//!
//! or `"token_type": "urn:ietf:params:oauth:token-type:saml2"` with `"saml_response"`, or
//! `{"version": 1, "success": false, "code": "…", "message": "…"}`. With an `output_file`, a
//! still-valid answer the program saved there is used without running it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::subject::{Context, MAX_SUBJECT_TOKEN, shell_word};
use crate::token::TokenError;
use crate::token::bounded::{self, RunError, read_file_async};
use crate::token::credentials_file::{CredentialsJson, short};

/// The opt-in, as Google's libraries name it: a credentials file alone must not be able to run
/// a program.
const ALLOW_EXECUTABLES_ENV: &str = "GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES";

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const MIN_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_TIMEOUT: Duration = Duration::from_secs(120);
const SUPPORTED_VERSION: i64 = 1;

const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
const SAML2: &str = "urn:ietf:params:oauth:token-type:saml2";

/// A program that prints the subject token, and where it may have saved its last answer.
pub(super) struct Executable {
    command: String,
    /// The file's `timeout_millis`, if it has one.
    timeout_millis: Option<Duration>,
    output_file: Option<PathBuf>,
}

/// Why an answer gave no token, and whether a saved answer that says so is simply stale
/// (expired, or a failure) rather than wrong.
struct Refusal {
    reason: String,
    stale: bool,
}

impl Refusal {
    fn wrong(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            stale: false,
        }
    }

    fn stale(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            stale: true,
        }
    }
}

impl Executable {
    /// How long the program may run (`timeout_millis`).
    pub(super) fn timeout(&self) -> Duration {
        self.timeout_millis.unwrap_or(DEFAULT_TIMEOUT)
    }

    /// Reads `credential_source.executable`: `command` (required), `timeout_millis` (5 to 120
    /// seconds, 30 by default), `output_file`.
    pub(super) fn parse(json: &CredentialsJson) -> Result<Self, TokenError> {
        let command = json.optional("command")?.ok_or_else(|| {
            json.error(
                "it has no `command`: name the program that prints the subject token \
                 (`--executable-command`)"
                    .into(),
            )
        })?;
        let timeout_millis = json
            .optional_u64("timeout_millis")?
            .map(Duration::from_millis);
        if let Some(timeout) = timeout_millis
            && !(MIN_TIMEOUT..=MAX_TIMEOUT).contains(&timeout)
        {
            return Err(json.error(format!(
                "its `timeout_millis` is {}; an executable's timeout must be between 5 and 120 \
                 seconds (5000 to 120000)",
                timeout.as_millis()
            )));
        }
        Ok(Self {
            command: command.trim().to_owned(),
            timeout_millis,
            output_file: json.optional("output_file")?.map(PathBuf::from),
        })
    }

    /// The program without its arguments: what names and logs call it, short and stable.
    pub(super) fn program(&self) -> &str {
        self.command.split_whitespace().next().unwrap_or_default()
    }

    pub(super) fn gcloud_flags(&self) -> Vec<String> {
        let mut flags = vec![format!(
            "--executable-command={}",
            shell_word(&self.command)
        )];
        if let Some(timeout) = self.timeout_millis {
            flags.push(format!(
                "--executable-timeout-millis={}",
                timeout.as_millis()
            ));
        }
        if let Some(file) = &self.output_file {
            flags.push(format!(
                "--executable-output-file={}",
                shell_word(&file.display().to_string())
            ));
        }
        flags
    }

    fn source_name(&self, context: &Context<'_>) -> String {
        format!(
            "executable `{}` (`credential_source.executable` of {})",
            self.program(),
            context.origin
        )
    }

    /// A still-valid saved answer, else the program's.
    pub(super) async fn subject_token(&self, context: &Context<'_>) -> Result<String, TokenError> {
        // As Python's library does, the opt-in comes first: without it nothing is run or read.
        if std::env::var_os(ALLOW_EXECUTABLES_ENV).is_none_or(|v| v != "1") {
            return Err(TokenError::Unsupported {
                source_name: self.source_name(context),
                reason: format!(
                    "executables must be explicitly allowed: set {ALLOW_EXECUTABLES_ENV}=1 in \
                     the environment of this program if you trust the credentials file that \
                     names it"
                ),
                source: None,
            });
        }
        if let Some(token) = self.saved_token(context).await? {
            return Ok(token);
        }
        self.run(context).await
    }

    /// The token in the output file, if it holds a successful, unexpired answer. A missing,
    /// empty or stale file means "run the program"; a malformed one is an error, so that
    /// whoever wrote it finds out.
    async fn saved_token(&self, context: &Context<'_>) -> Result<Option<String>, TokenError> {
        let Some(path) = &self.output_file else {
            return Ok(None);
        };
        let bytes = match read_file_async(path, MAX_SUBJECT_TOKEN).await {
            Ok(bytes) if !bytes.iter().all(u8::is_ascii_whitespace) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => {
                return Err(self.bad_output_file(path, context, e.to_string()));
            }
            _ => return Ok(None),
        };
        match self.parse_answer(&bytes, "output file") {
            Ok(token) => Ok(Some(token)),
            Err(refusal) if refusal.stale => Ok(None),
            Err(refusal) => Err(self.bad_output_file(path, context, refusal.reason)),
        }
    }

    fn bad_output_file(&self, path: &Path, context: &Context<'_>, reason: String) -> TokenError {
        TokenError::Credentials {
            path: format!(
                "{} (the `output_file` of {})",
                path.display(),
                self.source_name(context)
            ),
            reason: format!("{reason}; fix the program that writes it, or delete the file"),
            source: None,
        }
    }

    async fn run(&self, context: &Context<'_>) -> Result<String, TokenError> {
        let source_name = self.source_name(context);
        let mut words = self.command.split_whitespace();
        let program = words.next().unwrap_or_default();
        let mut command = tokio::process::Command::new(program);
        command
            .args(words)
            .env("GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE", context.audience)
            .env(
                "GOOGLE_EXTERNAL_ACCOUNT_TOKEN_TYPE",
                context.subject_token_type,
            )
            .env("GOOGLE_EXTERNAL_ACCOUNT_INTERACTIVE", "0")
            .env("GOOGLE_EXTERNAL_ACCOUNT_IMPERSONATED_EMAIL", context.target);
        if let Some(file) = &self.output_file {
            command.env("GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE", file);
        }
        let failed = |reason: String, source: Option<std::io::Error>| TokenError::Command {
            command: source_name.clone(),
            reason,
            source: source.map(|e| Arc::new(e) as _),
        };
        let finished = match bounded::run(command, self.timeout(), MAX_SUBJECT_TOKEN).await {
            Ok(finished) => finished,
            Err(RunError::Start(e)) => {
                let reason = if e.kind() == std::io::ErrorKind::NotFound {
                    format!(
                        "`{}` was not found; give its absolute path in `command`",
                        short(program, 200)
                    )
                } else {
                    format!("`{}` could not be started ({e})", short(program, 200))
                };
                return Err(failed(reason, Some(e)));
            }
            Err(RunError::TooLong(stream)) => {
                let reason = format!(
                    "it printed more than {} KiB on its {stream}; it must print Google's \
                     executable-response JSON",
                    MAX_SUBJECT_TOKEN / 1024
                );
                return Err(failed(reason, None));
            }
            Err(RunError::Read(e)) => {
                return Err(failed(
                    format!("its output could not be read: {e}"),
                    Some(e),
                ));
            }
            Err(RunError::Timeout) => {
                return Err(TokenError::Timeout {
                    source_name,
                    after: self.timeout(),
                });
            }
        };
        if !finished.status.success() {
            return Err(failed(finished.exited(), None));
        }
        let mut answer = finished.stdout;
        if answer.iter().all(u8::is_ascii_whitespace)
            && let Some(file) = &self.output_file
        {
            // A program may answer in its output file only, as Python's library allows.
            answer = match read_file_async(file, MAX_SUBJECT_TOKEN).await {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => {
                    return Err(failed(format!("its output file: {e}"), Some(e)));
                }
                Err(_) => Vec::new(),
            };
        }
        self.parse_answer(&answer, "response")
            .map_err(|refusal| failed(refusal.reason, None))
    }

    /// Google's checks on an answer, in Google's order. `what` says whether it is the
    /// program's response or its saved output file. No message quotes the answer: it may
    /// hold a token.
    fn parse_answer(&self, bytes: &[u8], what: &str) -> Result<String, Refusal> {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim();
        if text.is_empty() {
            return Err(Refusal::wrong(format!(
                "its {what} is empty; it must print Google's executable-response JSON"
            )));
        }
        let Ok(Value::Object(answer)) = serde_json::from_str::<Value>(text) else {
            return Err(Refusal::wrong(format!(
                "its {what} is not a JSON object ({} bytes); it must print Google's \
                 executable-response JSON (`version`, `success`, `token_type`, …)",
                text.len()
            )));
        };
        let missing = |field: &str| Refusal::wrong(format!("its {what} has no `{field}` field"));
        let version = match answer.get("version") {
            Some(Value::Number(n)) if n.as_i64() != Some(0) => n.as_i64().ok_or_else(|| {
                Refusal::wrong(format!("its {what} has an unsupported `version` ({n})"))
            })?,
            _ => return Err(missing("version")),
        };
        let Some(Value::Bool(success)) = answer.get("success") else {
            return Err(missing("success"));
        };
        let string = |field: &str| match answer.get(field) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.as_str()),
            _ => None,
        };
        if !success {
            return match (string("code"), string("message")) {
                (Some(code), Some(message)) => Err(Refusal::stale(format!(
                    "it reported a failure: ({}) {}",
                    short(code, 60),
                    short(message, 300)
                ))),
                _ => Err(Refusal::stale(format!(
                    "its {what} reports a failure without both `code` and `message`"
                ))),
            };
        }
        if !(1..=SUPPORTED_VERSION).contains(&version) {
            return Err(Refusal::wrong(format!(
                "its {what} has version {version}; only version {SUPPORTED_VERSION} is supported"
            )));
        }
        let expiration = match answer.get("expiration_time") {
            Some(Value::Number(n)) => n.as_i64().filter(|t| *t != 0),
            _ => None,
        };
        if expiration.is_none() && self.output_file.is_some() {
            return Err(missing("expiration_time"));
        }
        let Some(token_type) = string("token_type") else {
            return Err(missing("token_type"));
        };
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        if expiration.is_some_and(|exp| exp < now) {
            return Err(Refusal::stale(format!(
                "the token in its {what} has expired"
            )));
        }
        let field = match token_type {
            JWT | ID_TOKEN => "id_token",
            SAML2 => "saml_response",
            other => {
                return Err(Refusal::wrong(format!(
                    "its {what} has the unsupported `token_type` `{}`; use `{JWT}`, \
                     `{ID_TOKEN}` or `{SAML2}`",
                    short(other, 80)
                )));
            }
        };
        string(field)
            .map(|token| token.trim().to_owned())
            .ok_or_else(|| missing(field))
    }
}

impl fmt::Debug for Executable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executable")
            .field("program", &self.program())
            .field("timeout", &self.timeout())
            .field("output_file", &self.output_file)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn executable(output_file: bool) -> Executable {
        Executable {
            command: "/bin/true".into(),
            timeout_millis: None,
            output_file: output_file.then(|| PathBuf::from("/tmp/out.json")),
        }
    }

    fn parse(answer: serde_json::Value, output_file: bool) -> Result<String, Refusal> {
        executable(output_file).parse_answer(answer.to_string().as_bytes(), "response")
    }

    fn in_an_hour() -> i64 {
        i64::try_from(
            (SystemTime::now() + Duration::from_secs(3600))
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap()
    }

    #[test]
    fn takes_the_token_of_its_type() {
        let oidc = json!({"version": 1, "success": true, "token_type": ID_TOKEN, "id_token": "a.b.c", "expiration_time": in_an_hour()});
        assert_eq!(parse(oidc, true).ok().as_deref(), Some("a.b.c"));
        let jwt = json!({"version": 1, "success": true, "token_type": JWT, "id_token": "x.y.z"});
        assert_eq!(parse(jwt, false).ok().as_deref(), Some("x.y.z"));
        let saml = json!({"version": 1, "success": true, "token_type": SAML2, "saml_response": "PHNhbWw+"});
        assert_eq!(parse(saml, false).ok().as_deref(), Some("PHNhbWw+"));
    }

    #[test]
    fn checks_as_googles_libraries_do() {
        let reason = |answer, output_file| parse(answer, output_file).err().unwrap().reason;
        assert!(reason(json!({"success": true}), false).contains("no `version`"));
        assert!(reason(json!({"version": 1}), false).contains("no `success`"));
        assert!(reason(json!({"version": 2, "success": true}), false).contains("version 2"));
        assert!(
            reason(
                json!({"version": 1, "success": true, "token_type": JWT, "id_token": "t"}),
                true
            )
            .contains("no `expiration_time`")
        );
        assert!(reason(json!({"version": 1, "success": true}), false).contains("no `token_type`"));
        assert!(
            reason(
                json!({"version": 1, "success": true, "token_type": "x"}),
                false
            )
            .contains("unsupported `token_type`")
        );
        assert!(
            reason(
                json!({"version": 1, "success": true, "token_type": JWT}),
                false
            )
            .contains("no `id_token`")
        );
        assert!(
            reason(json!({"version": 1, "success": false}), false)
                .contains("without both `code` and `message`")
        );
    }

    #[test]
    fn expired_and_failed_answers_are_stale_not_wrong() {
        let expired = json!({"version": 1, "success": true, "token_type": JWT, "id_token": "t", "expiration_time": 1});
        let refusal = parse(expired, true).err().unwrap();
        assert!(refusal.stale && refusal.reason.contains("expired"));
        let failed = json!({"version": 1, "success": false, "code": "401", "message": "Caller not authorized."});
        let refusal = parse(failed, false).err().unwrap();
        assert!(refusal.stale);
        assert_eq!(
            refusal.reason,
            "it reported a failure: (401) Caller not authorized."
        );
    }

    #[test]
    fn answers_that_are_not_json_are_never_quoted() {
        let refusal = executable(false)
            .parse_answer(b"eyJhbGciOi.secret.token", "response")
            .err()
            .unwrap();
        assert!(
            refusal.reason.contains("not a JSON object"),
            "{}",
            refusal.reason
        );
        assert!(!refusal.reason.contains("secret"), "{}", refusal.reason);
    }
}
