//! Errors from building and warming a channel. Each says what was wrong and what to do, and
//! keeps the error it was caused by as its [`source`](std::error::Error::source).

use std::sync::Arc;

use crate::token::TokenError;

/// An underlying error, shared so that the errors holding it stay cheap to clone.
pub(crate) type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// Why a channel could not be built or warmed up.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The host is not a bare host name.
    #[error(
        "`{host}` is not a Cloud Run host: {reason}; give the bare host, e.g. `svc-abc123-ew.a.run.app`"
    )]
    InvalidHost {
        /// What was given.
        host: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The URL is not `https://host` (or `http://` to a loopback address).
    #[error(
        "`{url}` is not a usable service URL: {reason}; write `https://host` (or `http://127.0.0.1:port` for a local server)"
    )]
    InvalidUrl {
        /// What was given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Plaintext was asked for towards an address that is not loopback.
    #[error(
        "refusing to send ID tokens in plaintext to {address}: plaintext is allowed only to loopback addresses; use TLS (the default)"
    )]
    PlaintextNotLoopback {
        /// The address that would have been dialled.
        address: String,
    },
    /// The CA certificate given is not usable PEM; the source says why.
    #[error("the CA certificate is not usable PEM: {0}")]
    CaCertificate(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// No root certificate to verify servers with.
    #[error(
        "no root certificates found to verify servers with; install the system's CA bundle (e.g. `ca-certificates`), set SSL_CERT_FILE, or pass `ca_certificate`"
    )]
    NoRootCertificates,
    /// The TLS configuration could not be built; the source is rustls' error.
    #[error("TLS configuration failed: {0}")]
    Tls(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The header name is not one Cloud Run reads tokens from.
    #[error(
        "`{0}` is not a header Cloud Run reads tokens from; use `authorization` or `x-serverless-authorization`"
    )]
    InvalidHeader(String),
    /// `warm_up` could not get a token.
    #[error("could not get an ID token: {0}")]
    Token(#[source] TokenError),
    /// `warm_up` could not connect.
    #[error("could not connect to {host}: {source}")]
    Connect {
        /// The host.
        host: String,
        /// What the connection attempt failed with.
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
}

/// An error and its causes on one line: hyper's top-level messages alone say too little.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn causes_are_kept_and_messages_name_them() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let error = Error::Connect {
            host: "svc.a.run.app".into(),
            source: Arc::new(io),
        };
        assert_eq!(
            error.to_string(),
            "could not connect to svc.a.run.app: refused"
        );
        let source = error.source().expect("a source");
        assert_eq!(source.to_string(), "refused");

        let token = TokenError::Timeout {
            source_name: "metadata server".into(),
            after: std::time::Duration::from_secs(1),
        };
        let error = Error::Token(token);
        let source = error.source().expect("a source");
        assert!(source.downcast_ref::<TokenError>().is_some());
    }

    #[test]
    fn chains_skip_repeated_messages() {
        let inner = std::io::Error::other("reset");
        let outer = Error::Tls(Arc::new(inner));
        assert_eq!(chain(&outer), "TLS configuration failed: reset");
    }
}
