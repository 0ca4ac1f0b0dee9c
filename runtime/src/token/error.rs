//! Why a token could not be had. Each variant names the source and says what to do; none ever
//! holds a token.

use std::fmt;
use std::time::Duration;

use super::JwtError;

/// A failure to obtain an ID token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// The endpoint could not be reached (refused, reset, DNS).
    Unreachable {
        /// The source, e.g. `metadata server at 169.254.169.254`.
        source_name: String,
        /// What the connection attempt said.
        cause: String,
    },
    /// The endpoint did not answer in time.
    Timeout {
        /// The source.
        source_name: String,
        /// How long we waited.
        after: Duration,
    },
    /// The endpoint answered with a status other than 200.
    Status {
        /// The source.
        source_name: String,
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body, which usually says why.
        body: String,
    },
    /// The endpoint answered 200 but not with a usable token.
    BadToken {
        /// The source.
        source_name: String,
        /// What is wrong with it.
        reason: JwtError,
    },
    /// The answer could not be understood (not the JSON we expected, a field missing).
    BadResponse {
        /// The source.
        source_name: String,
        /// What was wrong.
        reason: String,
    },
    /// The credentials cannot produce ID tokens, or are not valid; `reason` says what to use.
    Unsupported {
        /// The source.
        source_name: String,
        /// Why, and what to do instead.
        reason: String,
    },
    /// A credentials file could not be used.
    Credentials {
        /// Where the file is.
        path: String,
        /// What is wrong with it and what to do.
        reason: String,
    },
    /// No credentials were found in any of the places Application Default Credentials look.
    NotFound {
        /// Every place that was looked at, with what was found there.
        looked: Vec<String>,
    },
    /// A command-line tool (gcloud) failed.
    Command {
        /// The command, without secrets.
        command: String,
        /// What it said or why it could not run.
        reason: String,
    },
}

impl TokenError {
    /// Whether retrying later may help: network trouble and server errors, not bad credentials.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Timeout { .. } => true,
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            Self::BadToken { .. } | Self::BadResponse { .. } => true,
            Self::Unsupported { .. }
            | Self::Credentials { .. }
            | Self::NotFound { .. }
            | Self::Command { .. } => false,
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable { source_name, cause } => {
                write!(f, "cannot reach the {source_name}: {cause}")
            }
            Self::Timeout { source_name, after } => {
                write!(f, "the {source_name} did not answer within {after:?}")
            }
            Self::Status {
                source_name,
                status,
                body,
            } => {
                write!(f, "the {source_name} answered HTTP {status}")?;
                if !body.is_empty() {
                    write!(f, ": {body}")?;
                }
                Ok(())
            }
            Self::BadToken {
                source_name,
                reason,
            } => {
                write!(
                    f,
                    "the {source_name} answered with an unusable token: {reason}"
                )
            }
            Self::BadResponse {
                source_name,
                reason,
            } => {
                write!(
                    f,
                    "the {source_name} gave an answer we cannot read: {reason}"
                )
            }
            Self::Unsupported {
                source_name,
                reason,
            } => {
                write!(f, "the {source_name} cannot provide an ID token: {reason}")
            }
            Self::Credentials { path, reason } => {
                write!(f, "the credentials file {path} cannot be used: {reason}")
            }
            Self::NotFound { looked } => {
                f.write_str("no Google credentials found; looked at: ")?;
                f.write_str(&looked.join("; "))?;
                f.write_str(
                    ". On Google Cloud, run with a service account; elsewhere run `gcloud auth \
                     application-default login --impersonate-service-account=SA_EMAIL`, set \
                     GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, or use \
                     `GcloudCli`",
                )
            }
            Self::Command { command, reason } => write!(f, "`{command}` failed: {reason}"),
        }
    }
}

impl std::error::Error for TokenError {}

/// Keeps an error body short and on one line; bodies from token endpoints can be whole HTML pages.
pub(crate) fn excerpt(body: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.len() > MAX {
        let mut cut = MAX;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}
