//! The subject token: what the workload's own identity provider says about it, read from the
//! `credential_source` of an `external_account` file — a file, a URL, or an executable.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Request, header};
use http_body_util::Full;
use serde_json::Value;

use super::executable::Executable;
use crate::excerpt::excerpt;
use crate::fetch as client;
use crate::token::TokenError;
use crate::token::bounded::read_file_async;
use crate::token::credentials_file::{CredentialsJson, short};
use crate::token::endpoint::{html_page, no_answer, what_it_has};

/// Subject tokens are JWTs or SAML assertions of a few kilobytes; as Google's libraries do,
/// nothing longer is read.
pub(super) const MAX_SUBJECT_TOKEN: u64 = 1 << 20;

/// Where the subject token comes from.
pub(super) enum SubjectSource {
    /// A file some other process keeps fresh (a Kubernetes projected token, a CI job's token).
    File { path: PathBuf, format: Format },
    /// A local server's GET endpoint (Azure's metadata server, GitHub's token URL).
    Url {
        url: String,
        headers: Vec<(HeaderName, HeaderValue)>,
        format: Format,
    },
    /// A program that prints Google's executable-response JSON.
    Executable(Executable),
}

/// How the token is written: the whole text, or one field of a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Format {
    Text,
    Json(String),
}

/// What errors about the subject token say about the file it was configured in.
pub(super) struct Context<'a> {
    /// The `external_account` file, as errors name it.
    pub(super) origin: &'a str,
    /// How long a URL source may take.
    pub(super) timeout: Duration,
    /// The pool provider, for an executable's environment.
    pub(super) audience: &'a str,
    /// The subject token type, for an executable's environment.
    pub(super) subject_token_type: &'a str,
    /// The service account to impersonate, for an executable's environment.
    pub(super) target: &'a str,
}

impl SubjectSource {
    /// How long reading the subject token may take when a program runs: its own timeout.
    pub(super) fn program_timeout(&self) -> Option<Duration> {
        match self {
            Self::Executable(program) => Some(program.timeout()),
            Self::File { .. } | Self::Url { .. } => None,
        }
    }

    /// Reads `credential_source`. Refuses what this crate cannot read (AWS, certificates) and
    /// anything ambiguous, each with what to write instead.
    pub(super) fn parse(source: &CredentialsJson, recreate: &str) -> Result<Self, TokenError> {
        if let Some(environment) = source.optional("environment_id")? {
            let reason = if environment.starts_with("aws") {
                format!(
                    "its `environment_id` is `{}`: AWS credentials (a SigV4-signed \
                     `GetCallerIdentity` request) are not supported by cloud-run-grpc; on AWS, \
                     federate through an OIDC provider instead and read its token with a \
                     `file`, `url` or `executable` credential source",
                    short(environment, 40)
                )
            } else {
                format!(
                    "its `environment_id` `{}` is not one this crate knows; {recreate}",
                    short(environment, 40)
                )
            };
            return Err(source.error(reason));
        }
        if source.has("certificate") {
            return Err(source.error(
                "it holds a `certificate` (X.509 workload identity over mTLS), which \
                 cloud-run-grpc does not support; use a `file`, `url` or `executable` credential \
                 source"
                    .into(),
            ));
        }
        let kinds: Vec<&str> = ["file", "url", "executable"]
            .into_iter()
            .filter(|kind| source.has(kind))
            .collect();
        match kinds.as_slice() {
            ["file"] => {
                let path = source
                    .optional("file")?
                    .ok_or_else(|| source.error(format!("`file` is empty; {recreate}")))?;
                Ok(Self::File {
                    path: PathBuf::from(path),
                    format: format(source)?,
                })
            }
            ["url"] => {
                let url = source
                    .optional("url")?
                    .ok_or_else(|| source.error(format!("`url` is empty; {recreate}")))?;
                let url =
                    cloud_run_grpc_endpoint::credential_source_url(url).map_err(|problem| {
                        source.error(format!(
                            "its `url` `{}` is refused: {problem}",
                            short(&cloud_run_grpc_endpoint::redacted(url.trim()), 200)
                        ))
                    })?;
                Ok(Self::Url {
                    url,
                    headers: headers(source)?,
                    format: format(source)?,
                })
            }
            ["executable"] => Ok(Self::Executable(Executable::parse(
                &source.nested("executable", recreate)?,
            )?)),
            [] => Err(source.error(format!(
                "it names no subject-token source: it needs `file`, `url` or `executable`; \
                 {recreate}"
            ))),
            several => Err(source.error(format!(
                "it names several subject-token sources ({}); keep exactly one",
                several
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// What the token comes from, for names and errors: `file /var/run/token`.
    pub(super) fn describe(&self) -> String {
        match self {
            Self::File { path, .. } => format!("file {}", path.display()),
            Self::Url { url, .. } => format!("URL {}", cloud_run_grpc_endpoint::redacted(url)),
            Self::Executable(executable) => {
                format!("executable `{}`", executable.program())
            }
        }
    }

    /// The `gcloud … create-cred-config` flags that write this source back.
    pub(super) fn gcloud_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        let format_flags = |flags: &mut Vec<String>, format: &Format| {
            if let Format::Json(field) = format {
                flags.push("--credential-source-type=json".to_owned());
                flags.push(format!(
                    "--credential-source-field-name={}",
                    shell_word(field)
                ));
            }
        };
        match self {
            Self::File { path, format } => {
                flags.push(format!(
                    "--credential-source-file={}",
                    shell_word(&path.display().to_string())
                ));
                format_flags(&mut flags, format);
            }
            Self::Url {
                url,
                headers,
                format,
            } => {
                flags.push(format!("--credential-source-url={}", shell_word(url)));
                if !headers.is_empty() {
                    // Header values are often secrets (a bearer token): only their names.
                    let names: Vec<String> = headers
                        .iter()
                        .map(|(name, _)| format!("{}=VALUE", name.as_str()))
                        .collect();
                    flags.push(format!("--credential-source-headers={}", names.join(",")));
                }
                format_flags(&mut flags, format);
            }
            Self::Executable(executable) => flags.extend(executable.gcloud_flags()),
        }
        flags
    }

    /// Reads the subject token, within the source's own bounds.
    pub(super) async fn read(&self, context: &Context<'_>) -> Result<String, TokenError> {
        match self {
            Self::File { path, format } => read_subject_file(path, format, context).await,
            Self::Url {
                url,
                headers,
                format,
            } => read_url(url, headers, format, context).await,
            Self::Executable(executable) => executable.subject_token(context).await,
        }
    }
}

impl fmt::Debug for SubjectSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File { path, format } => f
                .debug_struct("File")
                .field("path", path)
                .field("format", format)
                .finish(),
            // Header values are often secrets: their names only.
            Self::Url {
                url,
                headers,
                format,
            } => f
                .debug_struct("Url")
                .field("url", &cloud_run_grpc_endpoint::redacted(url))
                .field(
                    "headers",
                    &headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
                )
                .field("format", format)
                .finish(),
            Self::Executable(executable) => f.debug_tuple("Executable").field(executable).finish(),
        }
    }
}

fn format(source: &CredentialsJson) -> Result<Format, TokenError> {
    let Some(format) = source.optional_object("format")? else {
        return Ok(Format::Text);
    };
    match format.optional("type")? {
        None | Some("text") => Ok(Format::Text),
        Some("json") => match format.optional("subject_token_field_name")? {
            Some(field) => Ok(Format::Json(field.to_owned())),
            None => Err(format.error(
                "its `type` is `json` but it has no `subject_token_field_name`: name the JSON \
                 field the token is in (`--credential-source-field-name`)"
                    .into(),
            )),
        },
        Some(other) => Err(format.error(format!(
            "its `type` is `{}`; use `text` or `json`",
            short(other, 40)
        ))),
    }
}

fn headers(source: &CredentialsJson) -> Result<Vec<(HeaderName, HeaderValue)>, TokenError> {
    source
        .optional_string_map("headers")?
        .into_iter()
        .map(|(name, value)| {
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                source.error(format!(
                    "`headers` names `{}`, which is not an HTTP header name",
                    short(&name, 60)
                ))
            })?;
            // Never quote the value: it is often a bearer token.
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                source.error(format!(
                    "the value of `headers.{}` is not a valid HTTP header value (it has a line \
                     break or a control character)",
                    short(&name, 60)
                ))
            })?;
            value.set_sensitive(true);
            Ok((header, value))
        })
        .collect()
}

/// A file is read whole (up to [`MAX_SUBJECT_TOKEN`]), off the async threads.
async fn read_subject_file(
    path: &Path,
    format: &Format,
    context: &Context<'_>,
) -> Result<String, TokenError> {
    let shown = path.display().to_string();
    let failure = |reason: String, source: Option<Arc<dyn std::error::Error + Send + Sync>>| {
        TokenError::Credentials {
            path: format!(
                "{shown} (the subject-token file, `credential_source.file` of {})",
                context.origin
            ),
            reason,
            source,
        }
    };
    let bytes = match read_file_async(path, MAX_SUBJECT_TOKEN).await {
        Ok(bytes) => bytes,
        Err(e) => {
            let reason = match e.kind() {
                std::io::ErrorKind::NotFound => format!(
                    "it does not exist; check the path, and that whatever writes the subject \
                     token there (a projected service-account token volume, your CI's \
                     identity step) ran first ({e})"
                ),
                std::io::ErrorKind::PermissionDenied => format!(
                    "it cannot be read ({e}); make it readable by the user this program runs as"
                ),
                std::io::ErrorKind::FileTooLarge => {
                    format!("{e}, and a subject token is a few kilobytes; check the path")
                }
                _ => format!("it cannot be read ({e})"),
            };
            return Err(failure(reason, Some(Arc::new(e))));
        }
    };
    token_in(&bytes, format).map_err(|why| {
        failure(
            format!(
                "{why}; the process that writes the subject token should replace it with a \
                 fresh one before the old one expires"
            ),
            None,
        )
    })
}

/// A URL is asked with a GET and its headers, bounded in time and size; any 2xx is an answer.
async fn read_url(
    url: &str,
    headers: &[(HeaderName, HeaderValue)],
    format: &Format,
    context: &Context<'_>,
) -> Result<String, TokenError> {
    let source_name = format!(
        "subject-token URL {} (`credential_source.url` of {})",
        cloud_run_grpc_endpoint::redacted(url),
        context.origin
    );
    let mut request = Request::get(url);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let request = request
        .header(header::ACCEPT, "*/*")
        .body(Full::<Bytes>::default())
        .map_err(|e| TokenError::Unsupported {
            source_name: source_name.clone(),
            reason: format!("the URL cannot be requested ({e})"),
            source: Some(Arc::new(e)),
        })?;
    let response = client::send(request, context.timeout)
        .await
        .map_err(|failure| no_answer(&source_name, failure))?;
    let status = response.status.as_u16();
    if !response.status.is_success() {
        let advice = match status {
            401 | 403 => {
                "; check the `headers` the file sends with the request (a token in them \
                          may have expired) and that this workload may ask for a token there"
            }
            404 => "; check the URL in the file",
            _ => "",
        };
        let body = excerpt(&response.body);
        return Err(TokenError::Status {
            source_name,
            status,
            body: format!(
                "{}{advice}",
                if body.is_empty() { "no body" } else { &body }
            ),
        });
    }
    if let Some(page) = html_page(&response) {
        return Err(TokenError::BadResponse {
            source_name,
            reason: format!(
                "{page} came back instead of a token; check the URL and that no proxy answers \
                 in its place"
            ),
        });
    }
    token_in(&response.body, format).map_err(|reason| TokenError::BadResponse {
        source_name,
        reason,
    })
}

/// The token in a file's or an answer's bytes, or why there is none. Never quotes the bytes:
/// they may hold a token.
fn token_in(bytes: &[u8], format: &Format) -> Result<String, String> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Err(format!("it is not UTF-8 text ({} bytes)", bytes.len()));
    };
    let text = text.trim();
    if text.is_empty() {
        return Err("it is empty".into());
    }
    let token = match format {
        Format::Text => text.to_owned(),
        Format::Json(field) => {
            let value: Value = serde_json::from_str(text).map_err(|e| {
                format!(
                    "it is not JSON ({} bytes, error at line {} column {}), but the file's \
                     `credential_source.format.type` is `json`",
                    text.len(),
                    e.line(),
                    e.column()
                )
            })?;
            let Value::Object(fields) = value else {
                return Err("it is JSON but not an object".into());
            };
            match fields.get(field.as_str()) {
                Some(Value::String(token)) => token.trim().to_owned(),
                Some(_) => return Err(format!("its `{}` is not a string", short(field, 60))),
                None => {
                    let has = what_it_has(&fields);
                    return Err(format!(
                        "it has no `{}` ({has}), the field `subject_token_field_name` names",
                        short(field, 60)
                    ));
                }
            }
        }
    };
    if token.is_empty() {
        return Err(match format {
            Format::Text => "it is empty".into(),
            Format::Json(field) => format!("its `{}` is empty", short(field, 60)),
        });
    }
    Ok(token)
}

/// `word`, quoted for a POSIX shell when it needs to be.
pub(super) fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn text_tokens_are_trimmed_and_never_empty() {
        assert_eq!(token_in(b" a.b.c\n", &Format::Text).unwrap(), "a.b.c");
        assert_eq!(token_in(b" \n", &Format::Text).unwrap_err(), "it is empty");
        assert!(
            token_in(b"\xff\xfe", &Format::Text)
                .unwrap_err()
                .contains("not UTF-8")
        );
    }

    #[test]
    fn json_tokens_come_from_their_field_and_errors_never_quote_them() {
        let json = Format::Json("id_token".into());
        assert_eq!(
            token_in(br#"{"id_token": "eyJ.x.y"}"#, &json).unwrap(),
            "eyJ.x.y"
        );
        let missing = token_in(br#"{"access_token": "eyJsecret"}"#, &json).unwrap_err();
        assert!(missing.contains("no `id_token`"), "{missing}");
        assert!(missing.contains("`access_token`"), "{missing}");
        assert!(!missing.contains("eyJsecret"), "{missing}");
        let not_json = token_in(b"eyJsecret.not.json", &json).unwrap_err();
        assert!(not_json.contains("is not JSON"), "{not_json}");
        assert!(!not_json.contains("eyJsecret"), "{not_json}");
        assert!(
            token_in(br#"{"id_token": 7}"#, &json)
                .unwrap_err()
                .contains("not a string")
        );
        assert!(
            token_in(br#"{"id_token": " "}"#, &json)
                .unwrap_err()
                .contains("is empty")
        );
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("/var/run/token"), "/var/run/token");
        assert_eq!(shell_word("/my dir/it's"), r"'/my dir/it'\''s'");
        assert_eq!(shell_word(""), "''");
    }

    proptest! {
        #[test]
        fn token_reading_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256), field in "[a-z_]{0,8}") {
            let _ = token_in(&bytes, &Format::Text);
            let _ = token_in(&bytes, &Format::Json(field));
        }
    }
}
