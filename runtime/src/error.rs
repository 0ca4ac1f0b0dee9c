//! Errors from building and warming a channel. Each says what was wrong and what to do.

use std::fmt;
use std::sync::Arc;

use crate::token::TokenError;

/// Why a channel could not be built or warmed up.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// The host is not a bare host name.
    InvalidHost {
        /// What was given.
        host: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The URL is not `https://host` (or `http://` to a loopback address).
    InvalidUrl {
        /// What was given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Plaintext was asked for towards an address that is not loopback.
    PlaintextNotLoopback {
        /// The address that would have been dialled.
        address: String,
    },
    /// The CA certificate given is not usable PEM.
    CaCertificate(String),
    /// No root certificate to verify servers with.
    NoRootCertificates,
    /// The TLS configuration could not be built.
    Tls(String),
    /// The header name is not one Cloud Run reads tokens from.
    InvalidHeader(String),
    /// `warm_up` could not get a token.
    Token(Arc<TokenError>),
    /// `warm_up` could not connect.
    Connect {
        /// The host.
        host: String,
        /// What the connection attempt said.
        cause: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidHost { host, reason } => write!(
                f,
                "`{host}` is not a Cloud Run host: {reason}; give the bare host, e.g. `svc-abc123-ew.a.run.app`"
            ),
            Self::InvalidUrl { url, reason } => write!(
                f,
                "`{url}` is not a usable service URL: {reason}; write `https://host` (or `http://127.0.0.1:port` for a local server)"
            ),
            Self::PlaintextNotLoopback { address } => write!(
                f,
                "refusing to send ID tokens in plaintext to {address}: plaintext is allowed only to loopback addresses; use TLS (the default)"
            ),
            Self::CaCertificate(why) => write!(f, "the CA certificate is not usable PEM: {why}"),
            Self::NoRootCertificates => f.write_str(
                "no root certificates found to verify servers with; install the system's CA bundle (e.g. `ca-certificates`), set SSL_CERT_FILE, or pass `ca_certificate`",
            ),
            Self::Tls(why) => write!(f, "TLS configuration failed: {why}"),
            Self::InvalidHeader(name) => write!(
                f,
                "`{name}` is not a header Cloud Run reads tokens from; use `authorization` or `x-serverless-authorization`"
            ),
            Self::Token(error) => write!(f, "could not get an ID token: {error}"),
            Self::Connect { host, cause } => write!(f, "could not connect to {host}: {cause}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Token(error) => Some(&**error),
            _ => None,
        }
    }
}
