//! Why a token could not be had. Each variant names the source and says what to do; none ever
//! holds a token.

use std::sync::Arc;
use std::time::Duration;

use super::JwtError;

/// A failure to obtain an ID token.
///
/// Each variant names the source and says what to do; [`source`](std::error::Error::source)
/// leads to the underlying error (a connection error, an I/O error, a JWT that cannot be read)
/// where there is one.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The endpoint could not be reached (refused, reset, DNS).
    #[error("cannot reach the {source_name}: {cause}")]
    Unreachable {
        /// The source, e.g. `metadata server at 169.254.169.254`.
        source_name: String,
        /// What the connection attempt said.
        cause: String,
        /// The connection error itself, if there is one.
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
    /// The endpoint did not answer in time.
    #[error("the {source_name} did not answer within {after:?}")]
    Timeout {
        /// The source.
        source_name: String,
        /// How long we waited.
        after: Duration,
    },
    /// The endpoint answered with a status other than 200.
    #[error("the {source_name} answered HTTP {status}{}", colon_then(body))]
    Status {
        /// The source.
        source_name: String,
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body, which usually says why.
        body: String,
    },
    /// The endpoint answered 200 but not with a usable token.
    #[error("the {source_name} answered with an unusable token: {reason}")]
    BadToken {
        /// The source.
        source_name: String,
        /// What is wrong with it.
        #[source]
        reason: JwtError,
    },
    /// The answer could not be understood (not the JSON we expected, a field missing).
    #[error("the {source_name} gave an answer we cannot read: {reason}")]
    BadResponse {
        /// The source.
        source_name: String,
        /// What was wrong.
        reason: String,
    },
    /// The credentials cannot produce ID tokens, or are not valid; `reason` says what to use.
    #[error("the {source_name} cannot provide an ID token: {reason}")]
    Unsupported {
        /// The source.
        source_name: String,
        /// Why, and what to do instead.
        reason: String,
        /// The error behind it, if there is one.
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
    /// A credentials file could not be used.
    #[error("the credentials file {path} cannot be used: {reason}")]
    Credentials {
        /// Where the file is.
        path: String,
        /// What is wrong with it and what to do.
        reason: String,
        /// The error behind it (reading the file), if there is one.
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
    /// No credentials were found in any of the places Application Default Credentials look.
    #[error(
        "no Google credentials found; looked at: {}. On Google Cloud, run with a service \
         account; elsewhere run `gcloud auth application-default login \
         --impersonate-service-account=SA_EMAIL`, set GOOGLE_APPLICATION_CREDENTIALS to a \
         service-account key file, or use `GcloudCli`",
        looked.join("; ")
    )]
    NotFound {
        /// Every place that was looked at, with what was found there.
        looked: Vec<String>,
    },
    /// The source answered with a token for another audience: Cloud Run would refuse it.
    #[error(
        "the {source_name} answered with a token for {} instead of `{requested}`; a source must \
         mint tokens for the audience it is asked for (a `StaticToken` minted for another \
         service? a proxy rewriting the request?)",
        got_audiences(got)
    )]
    WrongAudience {
        /// The source.
        source_name: String,
        /// The audience asked for.
        requested: String,
        /// The token's `aud`, every entry of it.
        got: Vec<String>,
    },
    /// The service refused our tokens (HTTP 401) and the cache waits before it tries another.
    #[error(
        "the service refused the ID tokens from the {source_name} ({message}); the next try is \
         in {retry_in:?}"
    )]
    Refused {
        /// The source.
        source_name: String,
        /// Why the service refused them, as it said.
        message: String,
        /// How long until a token is sent again.
        retry_in: Duration,
    },
    /// A command-line tool (gcloud) failed.
    #[error("`{command}` failed: {reason}")]
    Command {
        /// The command, without secrets.
        command: String,
        /// What it said or why it could not run.
        reason: String,
        /// The error behind it (starting the command), if there is one.
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
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
            | Self::WrongAudience { .. }
            | Self::Refused { .. }
            | Self::Command { .. } => false,
        }
    }
}

/// The audiences of a token, as an error names them.
fn got_audiences(got: &[String]) -> String {
    match got {
        [] => "no audience (no `aud`)".to_owned(),
        [one] => format!("`{}`", super::credentials_file::short(one, 200)),
        many => {
            let quoted: Vec<String> = many
                .iter()
                .take(5)
                .map(|a| format!("`{}`", super::credentials_file::short(a, 200)))
                .collect();
            format!("the audiences {}", quoted.join(", "))
        }
    }
}

/// `": body"`, or nothing for an empty body.
fn colon_then(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}
