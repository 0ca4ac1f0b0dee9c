//! The emulated Google: mints RS256 ID tokens.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::keys::{self, Key};
use crate::verifier::Verifier;

/// The `iss` Google puts in ID tokens, and so does the [`Issuer`].
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

/// The service-account email the emulators use unless told otherwise.
pub const DEFAULT_EMAIL: &str = "testkit@testkit-project.iam.gserviceaccount.com";

/// The project id the emulators report unless told otherwise.
pub const DEFAULT_PROJECT_ID: &str = "testkit-project";

/// Mints ID tokens the way Google does: RS256, signed with one of the testkit's fixed test keys,
/// with `iss`, `aud`, `azp`, `sub`, `email`, `email_verified`, `iat` and `exp`.
///
/// Cheap to clone. Every token carries a unique `jti`, so two tokens minted in the same second
/// for the same audience still differ.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use cloud_run_grpc_testkit::Issuer;
///
/// let issuer = Issuer::new();
/// let token = issuer.mint("https://svc.a.run.app", "me@p.iam.gserviceaccount.com", Duration::from_secs(3600));
/// let claims = issuer
///     .verifier()
///     .verify(&token, &["https://svc.a.run.app"], SystemTime::now())
///     .unwrap();
/// assert_eq!(claims.email.as_deref(), Some("me@p.iam.gserviceaccount.com"));
/// ```
#[derive(Clone)]
pub struct Issuer {
    key: Arc<Key>,
}

impl Issuer {
    /// An issuer signing with the testkit's first Google key (`kid` `testkit-google-1`).
    pub fn new() -> Self {
        Issuer {
            key: keys::GOOGLE_1.clone(),
        }
    }

    /// An issuer signing with the testkit's second Google key (`kid` `testkit-google-2`), as
    /// after a key rotation. [`Verifier::new`] trusts both; [`Issuer::verifier`] only its own.
    pub fn rotated() -> Self {
        Issuer {
            key: keys::GOOGLE_2.clone(),
        }
    }

    /// The `kid` this issuer puts in token headers.
    pub fn key_id(&self) -> &str {
        self.key.kid
    }

    /// A verifier that trusts this issuer's key only.
    pub fn verifier(&self) -> Verifier {
        Verifier::empty().trust(self)
    }

    /// The JSON Web Key Set (`{"keys": [...]}`) holding this issuer's public key.
    pub fn jwks(&self) -> String {
        serde_json::json!({ "keys": [self.key.jwk()] }).to_string()
    }

    /// Mints an ID token for `audience` and `email`, valid from now for `lifetime` (rounded
    /// down to whole seconds, at least one, since `exp` counts seconds).
    pub fn mint(&self, audience: &str, email: &str, lifetime: Duration) -> String {
        self.token(audience).email(email).lifetime(lifetime).mint()
    }

    /// Starts a token with more control: issue time, no expiry, extra claims.
    pub fn token(&self, audience: &str) -> TokenBuilder<'_> {
        TokenBuilder {
            issuer: self,
            audience: audience.to_owned(),
            email: None,
            issued_at: None,
            lifetime: Duration::from_secs(3600),
            expires: true,
            extra: serde_json::Map::new(),
        }
    }

    /// Signs an arbitrary payload with this issuer's key: for tokens no well-behaved issuer
    /// would mint (a wrong `iss`, a string `exp`, ...).
    pub fn sign(&self, payload: &serde_json::Value) -> String {
        crate::jwt::sign(&self.key, payload)
    }

    pub(crate) fn key(&self) -> &Arc<Key> {
        &self.key
    }
}

impl Default for Issuer {
    fn default() -> Self {
        Issuer::new()
    }
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("iss", &GOOGLE_ISSUER)
            .field("kid", &self.key.kid)
            .finish()
    }
}

/// A token being built by [`Issuer::token`]; [`mint`](TokenBuilder::mint) signs it.
#[derive(Debug)]
pub struct TokenBuilder<'a> {
    issuer: &'a Issuer,
    audience: String,
    email: Option<String>,
    issued_at: Option<SystemTime>,
    lifetime: Duration,
    expires: bool,
    extra: serde_json::Map<String, serde_json::Value>,
}

impl TokenBuilder<'_> {
    /// Sets `email` and `email_verified: true`, and derives `sub`/`azp` from the email.
    pub fn email(mut self, email: &str) -> Self {
        self.email = Some(email.to_owned());
        self
    }

    /// Sets `iat` (default: now). `exp` is `iat + lifetime`.
    pub fn issued_at(mut self, at: SystemTime) -> Self {
        self.issued_at = Some(at);
        self
    }

    /// Sets the lifetime (default one hour, as Google's), in whole seconds, at least one.
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Leaves `exp` out, as no Google token would.
    pub fn without_expiry(mut self) -> Self {
        self.expires = false;
        self
    }

    /// Adds or overrides a claim.
    pub fn claim(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extra.insert(name.to_owned(), value.into());
        self
    }

    /// Signs the token.
    pub fn mint(self) -> String {
        let iat = crate::jwt::unix(self.issued_at.unwrap_or_else(SystemTime::now));
        let subject = subject_for(self.email.as_deref().unwrap_or(""));
        let mut payload = serde_json::Map::new();
        payload.insert("iss".into(), GOOGLE_ISSUER.into());
        payload.insert("aud".into(), self.audience.into());
        payload.insert("azp".into(), subject.clone().into());
        payload.insert("sub".into(), subject.into());
        if let Some(email) = self.email {
            payload.insert("email".into(), email.into());
            payload.insert("email_verified".into(), true.into());
        }
        payload.insert("iat".into(), iat.into());
        if self.expires {
            let secs = self.lifetime.as_secs().max(1);
            payload.insert("exp".into(), iat.saturating_add(secs).into());
        }
        payload.insert("jti".into(), unique_id().into());
        payload.extend(self.extra);
        self.issuer.sign(&serde_json::Value::Object(payload))
    }
}

/// Google's `sub` for a service account is its 21-digit unique id; derive a stable one.
pub(crate) fn subject_for(email: &str) -> String {
    // FNV-1a: stable across runs and platforms, unlike `DefaultHasher`.
    let hash = email.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("1{:020}", hash)
}

/// A process-unique id: the time and a counter, so no two tokens are byte-identical.
pub(crate) fn unique_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos:x}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}
