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
//! - `bounded.rs`: reading files and child processes within a size and a time bound;
//! - `clock.rs`: the one [`Clock`] the cache reads wall-clock time from;
//! - `credentials_file.rs`: reading credential files (key files, ADC files) without echoing a
//!   secret;
//! - `endpoint.rs`: asking a token endpoint (OAuth, IAM Credentials) and reading its answer;
//! - `jwt.rs`: reading a token's claims; `error.rs`: [`TokenError`].

mod bounded;
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
use std::time::{Duration, SystemTime};

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

    /// How long one fetch may take when that is longer than a token endpoint needs: a source
    /// that runs a program with its own timeout says so here. The cache gives each fetch the
    /// longer of this and [`RefreshPolicy::fetch_timeout`]; asked when a fetch starts and again
    /// when that time is up, so a source that learns it during the fetch (Application Default
    /// Credentials, found on the first one) is heard. `None`, the default, adds nothing.
    fn fetch_timeout(&self) -> Option<Duration> {
        None
    }
}

impl<S: IdTokenSource + ?Sized> IdTokenSource for Arc<S> {
    fn fetch<'a>(&'a self, audience: &'a str) -> TokenFuture<'a> {
        (**self).fetch(audience)
    }

    fn name(&self) -> String {
        (**self).name()
    }

    fn fetch_timeout(&self) -> Option<Duration> {
        (**self).fetch_timeout()
    }
}

impl<S: IdTokenSource + ?Sized> IdTokenSource for Box<S> {
    fn fetch<'a>(&'a self, audience: &'a str) -> TokenFuture<'a> {
        (**self).fetch(audience)
    }

    fn name(&self) -> String {
        (**self).name()
    }

    fn fetch_timeout(&self) -> Option<Duration> {
        (**self).fetch_timeout()
    }
}

/// A Google-signed OIDC ID token, with the claims read from its payload.
///
/// The expiry comes from the token's own `exp` claim, never from an assumed lifetime. `Debug`
/// shows the expiry, audience and email but never the token.
///
/// Cloning is a reference-count increment: the cache hands out clones on every read. Two
/// tokens are equal when they are the same JWT.
///
/// A source can tell the cache two more things about a token it fetched:
///
/// - [`with_server_time`](Self::with_server_time): the token endpoint's clock when it answered
///   (its HTTP `Date` header, or the `iat` of a token it just minted), so that expiry is
///   judged on the endpoint's clock even when the local one is off by hours;
/// - [`for_any_audience`](Self::for_any_audience): that the token's `aud` is not the audience
///   asked for, by design, so that the cache does not refuse it for that.
#[derive(Clone)]
pub struct IdToken {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    jwt: String,
    claims: jwt::Claims,
    server_time: Option<SystemTime>,
    any_audience: bool,
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
            inner: Arc::new(Inner {
                jwt,
                claims,
                server_time: None,
                any_audience: false,
            }),
        })
    }

    /// Records the token endpoint's time when it answered: its HTTP `Date` header, or the
    /// token's `iat` when the endpoint has just minted it. The cache then judges `exp` on the
    /// endpoint's clock, so that a local clock hours off neither refuses a fresh token nor
    /// sends an expired one.
    ///
    /// Never use the `iat` of a token that may have been cached (the metadata server hands out
    /// tokens up to about 55 minutes old): it would shift the expiry by the token's age.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use cloud_run_grpc::token::IdToken;
    /// # let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDB9.c2ln";
    /// let answered = SystemTime::UNIX_EPOCH + Duration::from_secs(4_102_441_200);
    /// let token = IdToken::from_jwt(jwt)?.with_server_time(answered);
    /// assert_eq!(token.server_time(), Some(answered));
    /// # Ok::<(), cloud_run_grpc::token::JwtError>(())
    /// ```
    pub fn with_server_time(mut self, time: SystemTime) -> Self {
        Arc::make_mut(&mut self.inner).server_time = Some(time);
        self
    }

    /// The token endpoint's time when it answered, if the source recorded it.
    pub fn server_time(&self) -> Option<SystemTime> {
        self.inner.server_time
    }

    /// Marks a token whose `aud` is not the audience it was asked for, by design: the ID
    /// tokens of gcloud's *user* accounts carry gcloud's own OAuth client id as `aud`, which
    /// Cloud Run accepts from users with `roles/run.invoker`. The cache refuses any other token
    /// whose `aud` differs from its audience, since Cloud Run would refuse it too.
    pub fn for_any_audience(mut self) -> Self {
        Arc::make_mut(&mut self.inner).any_audience = true;
        self
    }

    /// Whether this token may be sent to `audience`: its `aud` names it, or it was marked with
    /// [`for_any_audience`](Self::for_any_audience).
    pub fn is_for(&self, audience: &str) -> bool {
        self.inner.any_audience || self.inner.claims.audiences.iter().any(|a| a == audience)
    }

    /// The token itself: a secret. Put it in a header, never in a log.
    pub fn secret(&self) -> &str {
        &self.inner.jwt
    }

    /// When the token stops being accepted (its `exp`), on its issuer's clock.
    pub fn expires_at(&self) -> SystemTime {
        self.inner.claims.expires_at
    }

    /// When the token was minted (its `iat`), on its issuer's clock, if it says.
    pub fn issued_at(&self) -> Option<SystemTime> {
        self.inner.claims.issued_at
    }

    /// The token's `aud` claim (its first entry, if it is a list), if it has one.
    pub fn audience(&self) -> Option<&str> {
        self.inner.claims.audiences.first().map(String::as_str)
    }

    /// Every entry of the token's `aud` claim.
    pub(crate) fn audiences(&self) -> &[String] {
        &self.inner.claims.audiences
    }

    /// The token's `email` claim, if it has one.
    pub fn email(&self) -> Option<&str> {
        self.inner.claims.email.as_deref()
    }
}

impl PartialEq for IdToken {
    fn eq(&self, other: &Self) -> bool {
        self.inner.jwt == other.inner.jwt
    }
}

impl Eq for IdToken {}

impl fmt::Debug for IdToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdToken")
            .field("expires_at", &humantime(self.inner.claims.expires_at))
            .field("audience", &self.inner.claims.audiences)
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
