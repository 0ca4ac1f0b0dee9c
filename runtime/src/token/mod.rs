//! ID tokens and where they come from.
//!
//! Cloud Run admits a request only with a Google-signed OIDC ID token whose audience is the
//! service URL. An [`IdTokenSource`] obtains such tokens; the [`TokenCache`] keeps one fresh per
//! audience; [`default_source`] picks a source the way Application Default Credentials do.
//!
//! | source | for |
//! |---|---|
//! | [`MetadataServer`] | Cloud Run, GKE with Workload Identity, GCE |
//! | [`ServiceAccountKey`] | a service account's JSON key file |
//! | [`ImpersonatedServiceAccount`] | acting as a service account with other credentials (IAM `generateIdToken`) |
//! | [`ExternalAccount`] | workloads outside Google Cloud, through workload identity federation |
//! | [`GcloudCli`] | a developer's machine (`gcloud auth print-identity-token`) |
//! | [`StaticToken`] | tests, or tokens minted elsewhere |
//! | [`default_source`] | whichever the environment provides: a credentials file, else the metadata server |
//!
//! What lives where:
//!
//! - this file: [`IdToken`], the [`IdTokenSource`] trait and [`TokenFuture`];
//! - `source/`: one file per credential source, and the Application Default Credentials search;
//! - `cache/`: the [`TokenCache`] and its fetch state machine (`mod.rs`), apart from the
//!   [`RefreshPolicy`] and its schedule and backoff math (`policy.rs`);
//! - `clock.rs`: the one [`Clock`] the cache reads wall-clock time from;
//! - `credentials_file.rs`: reading credential files (key files, ADC files) without echoing a
//!   secret;
//! - `endpoint.rs`: asking a token endpoint (OAuth, IAM Credentials) and reading its answer;
//! - `jwt.rs`: reading a token's claims; `error.rs`: [`TokenError`].

pub(crate) mod cache;
mod clock;
mod credentials_file;
mod endpoint;
mod error;
mod jwt;
mod source;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

pub use cache::{RefreshPolicy, TokenCache, TokenCacheBuilder};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::TokenError;
pub use jwt::JwtError;
pub use source::{
    DefaultCredentials, ExternalAccount, GcloudCli, ImpersonatedServiceAccount, MetadataServer,
    ServiceAccountKey, StaticToken, default_source,
};

/// The gcp_auth crate whose access-token providers
/// [`ImpersonatedServiceAccount::with_source`] takes, re-exported so that its version always
/// matches.
pub use gcp_auth;

/// The future an [`IdTokenSource`] returns.
pub type TokenFuture<'a> = Pin<Box<dyn Future<Output = Result<IdToken, TokenError>> + Send + 'a>>;

/// Something that can obtain a Google-signed ID token for an audience.
///
/// Implementations do one fetch per call; caching, refresh and single flight are the
/// [`TokenCache`]'s job, so a source stays simple.
///
/// ```
/// use cloud_run_grpc::token::{IdToken, IdTokenSource, TokenError, TokenFuture};
///
/// #[derive(Debug)]
/// struct FromVault;
///
/// impl IdTokenSource for FromVault {
///     fn fetch<'a>(&'a self, audience: &'a str) -> TokenFuture<'a> {
///         Box::pin(async move {
///             Err(TokenError::Unsupported {
///                 source_name: self.name(),
///                 reason: format!("the vault has no token for {audience}"),
///                 source: None,
///             })
///         })
///     }
///     fn name(&self) -> String {
///         "vault".into()
///     }
/// }
/// ```
pub trait IdTokenSource: Send + Sync + fmt::Debug + 'static {
    /// Fetches a new ID token whose `aud` is `audience`.
    fn fetch<'a>(&'a self, audience: &'a str) -> TokenFuture<'a>;

    /// A short description for errors and logs, e.g. `metadata server at 169.254.169.254`.
    fn name(&self) -> String;
}

impl<S: IdTokenSource + ?Sized> IdTokenSource for Arc<S> {
    fn fetch<'a>(&'a self, audience: &'a str) -> TokenFuture<'a> {
        (**self).fetch(audience)
    }

    fn name(&self) -> String {
        (**self).name()
    }
}

impl<S: IdTokenSource + ?Sized> IdTokenSource for Box<S> {
    fn fetch<'a>(&'a self, audience: &'a str) -> TokenFuture<'a> {
        (**self).fetch(audience)
    }

    fn name(&self) -> String {
        (**self).name()
    }
}

/// A Google-signed OIDC ID token, with the claims read from its payload.
///
/// The expiry comes from the token's own `exp` claim, never from an assumed lifetime. `Debug`
/// shows the expiry, audience and email but never the token.
///
/// Cloning is a reference-count increment: the cache hands out clones on every read.
#[derive(Clone, PartialEq, Eq)]
pub struct IdToken {
    inner: Arc<Inner>,
}

#[derive(PartialEq, Eq)]
struct Inner {
    jwt: String,
    claims: jwt::Claims,
}

impl IdToken {
    /// Reads the claims of `jwt`. Fails when it is not a JWT or has no `exp`.
    ///
    /// ```
    /// # use cloud_run_grpc::token::{IdToken, JwtError};
    /// assert!(matches!(IdToken::from_jwt("not-a-jwt"), Err(JwtError::NotAJwt)));
    /// ```
    pub fn from_jwt(jwt: impl Into<String>) -> Result<Self, JwtError> {
        let mut jwt: String = jwt.into();
        let trimmed = jwt.trim();
        if trimmed.len() != jwt.len() {
            jwt = trimmed.to_owned();
        }
        let claims = jwt::claims(&jwt)?;
        Ok(Self {
            inner: Arc::new(Inner { jwt, claims }),
        })
    }

    /// The token itself: a secret. Put it in a header, never in a log.
    pub fn secret(&self) -> &str {
        &self.inner.jwt
    }

    /// When the token stops being accepted (its `exp`).
    pub fn expires_at(&self) -> SystemTime {
        self.inner.claims.expires_at
    }

    /// The token's `aud` claim, if it has one.
    pub fn audience(&self) -> Option<&str> {
        self.inner.claims.audience.as_deref()
    }

    /// The token's `email` claim, if it has one.
    pub fn email(&self) -> Option<&str> {
        self.inner.claims.email.as_deref()
    }
}

impl fmt::Debug for IdToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdToken")
            .field("expires_at", &humantime(self.inner.claims.expires_at))
            .field("audience", &self.inner.claims.audience)
            .field("email", &self.inner.claims.email)
            .finish_non_exhaustive()
    }
}

/// Seconds since the Unix epoch, which is what `exp` is and what a reader can compare.
pub(crate) fn humantime(t: SystemTime) -> String {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => format!("unix:{}", d.as_secs()),
        Err(_) => "before 1970".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn debug_never_shows_the_token() {
        let jwt = jwt::unsigned(&json!({"exp": 2_000_000_000u64, "aud": "https://svc"}));
        let token = IdToken::from_jwt(jwt.clone()).unwrap();
        let shown = format!("{token:?}");
        assert!(!shown.contains(&jwt));
        for part in jwt.split('.') {
            assert!(!shown.contains(part), "{shown} shows part of the token");
        }
        assert!(shown.contains("unix:2000000000"), "{shown}");
        assert!(shown.contains("https://svc"), "{shown}");
    }
}
