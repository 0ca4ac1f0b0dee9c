//! Checks ID tokens the way Cloud Run's front end does.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::RsaPublicKeyComponents;

use crate::issuer::{GOOGLE_ISSUER, Issuer};

/// The issuers Google's ID tokens may carry.
const ACCEPTED_ISSUERS: [&str; 2] = [GOOGLE_ISSUER, "accounts.google.com"];

#[derive(Clone, Debug, PartialEq, Eq)]
struct PublicKey {
    kid: String,
    n: Vec<u8>,
    e: Vec<u8>,
}

/// Verifies RS256 ID tokens against a set of trusted public keys: signature, `alg`, `kid`,
/// `iss`, `aud` and `exp`.
///
/// Cheap to clone. [`Verifier::new`] trusts every key an [`Issuer`] of this crate signs with, so
/// it accepts the tokens of any emulator here.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use cloud_run_grpc_testkit::{Issuer, Verifier, VerifyError};
///
/// let token = Issuer::new().mint("https://a.run.app", "x@p.iam.gserviceaccount.com", Duration::from_secs(60));
/// let verifier = Verifier::new();
/// assert!(verifier.verify(&token, &["https://a.run.app"], SystemTime::now()).is_ok());
/// assert!(matches!(
///     verifier.verify(&token, &["https://b.run.app"], SystemTime::now()),
///     Err(VerifyError::WrongAudience { .. })
/// ));
/// let later = SystemTime::now() + Duration::from_secs(120);
/// assert!(matches!(
///     verifier.verify(&token, &["https://a.run.app"], later),
///     Err(VerifyError::Expired { .. })
/// ));
/// ```
#[derive(Clone, Debug)]
pub struct Verifier {
    keys: Arc<Vec<PublicKey>>,
}

impl Verifier {
    /// A verifier trusting both testkit Google keys ([`Issuer::new`] and [`Issuer::rotated`]).
    pub fn new() -> Self {
        Verifier::empty()
            .trust(&Issuer::new())
            .trust(&Issuer::rotated())
    }

    /// A verifier trusting no key: every token fails with [`VerifyError::UnknownKey`].
    pub fn empty() -> Self {
        Verifier {
            keys: Arc::new(Vec::new()),
        }
    }

    /// Also trusts the key `issuer` signs with.
    pub fn trust(self, issuer: &Issuer) -> Self {
        let public = issuer.key().public();
        self.with_key(PublicKey {
            kid: issuer.key_id().to_owned(),
            n: public.n,
            e: public.e,
        })
    }

    /// A verifier trusting the RSA keys of a JSON Web Key Set (`{"keys": [{"kid", "n", "e", ...}]}`),
    /// such as [`Issuer::jwks`] or the metadata emulator's JWKS endpoint returns.
    pub fn from_jwks(jwks: &str) -> Result<Self, JwksError> {
        let value: serde_json::Value =
            serde_json::from_str(jwks).map_err(|e| JwksError(format!("not JSON: {e}")))?;
        let keys = value
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or_else(|| JwksError("no `keys` array".into()))?;
        let mut verifier = Verifier::empty();
        for key in keys {
            if key.get("kty").and_then(|v| v.as_str()) != Some("RSA") {
                continue;
            }
            let field = |name: &str| {
                key.get(name)
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| JwksError(format!("an RSA key has no string `{name}`")))
            };
            let bytes = |name: &str| {
                URL_SAFE_NO_PAD
                    .decode(field(name)?)
                    .map_err(|_| JwksError(format!("an RSA key's `{name}` is not base64url")))
            };
            verifier = verifier.with_key(PublicKey {
                kid: field("kid")?.to_owned(),
                n: bytes("n")?,
                e: bytes("e")?,
            });
        }
        Ok(verifier)
    }

    fn with_key(mut self, key: PublicKey) -> Self {
        let keys = Arc::make_mut(&mut self.keys);
        keys.retain(|k| k.kid != key.kid);
        keys.push(key);
        self
    }

    /// The key ids this verifier trusts.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.kid.as_str())
    }

    /// The trusted keys as a JSON Web Key Set.
    pub fn jwks(&self) -> String {
        let keys: Vec<_> = self
            .keys
            .iter()
            .map(|k| {
                serde_json::json!({
                    "kty": "RSA", "alg": "RS256", "use": "sig", "kid": k.kid,
                    "n": URL_SAFE_NO_PAD.encode(&k.n), "e": URL_SAFE_NO_PAD.encode(&k.e),
                })
            })
            .collect();
        serde_json::json!({ "keys": keys }).to_string()
    }

    /// Verifies `token` as Cloud Run would at time `now`: RS256 signature by a trusted key,
    /// a Google `iss`, an `aud` among `accepted_audiences`, and `now` before `exp`.
    ///
    /// Checks run in that order, so a tampered token reports a bad signature even if it is
    /// also expired. No error ever contains the token.
    pub fn verify<A: AsRef<str>>(
        &self,
        token: &str,
        accepted_audiences: &[A],
        now: SystemTime,
    ) -> Result<Claims, VerifyError> {
        let parsed = crate::jwt::parse(token).map_err(VerifyError::Malformed)?;
        match parsed.alg() {
            Some("RS256") => {}
            other => {
                return Err(VerifyError::UnsupportedAlgorithm(
                    other.map(|a| a.chars().take(32).collect()),
                ));
            }
        }
        let kid = parsed.kid();
        let key = self
            .keys
            .iter()
            .find(|k| Some(k.kid.as_str()) == kid)
            .ok_or_else(|| VerifyError::UnknownKey(kid.map(|k| k.chars().take(64).collect())))?;
        let components = RsaPublicKeyComponents {
            n: key.n.clone(),
            e: key.e.clone(),
        };
        if !parsed.signature_matches(&components) {
            return Err(VerifyError::BadSignature);
        }
        let iss = parsed.str_claim("iss").unwrap_or_default();
        if !ACCEPTED_ISSUERS.contains(&iss) {
            return Err(VerifyError::WrongIssuer(iss.to_owned()));
        }
        let aud = parsed.str_claim("aud").unwrap_or_default();
        if !accepted_audiences.iter().any(|a| a.as_ref() == aud) {
            return Err(VerifyError::WrongAudience {
                expected: accepted_audiences
                    .iter()
                    .map(|a| a.as_ref().to_owned())
                    .collect(),
                got: aud.to_owned(),
            });
        }
        let exp = parsed.time_claim("exp").ok_or(VerifyError::MissingExpiry)?;
        let now_secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if now_secs >= exp {
            return Err(VerifyError::Expired { exp, now: now_secs });
        }
        let string = |name| parsed.str_claim(name).map(str::to_owned);
        Ok(Claims {
            iss: iss.to_owned(),
            aud: aud.to_owned(),
            azp: string("azp"),
            sub: string("sub"),
            email: string("email"),
            email_verified: parsed
                .payload
                .get("email_verified")
                .and_then(|v| v.as_bool()),
            iat: parsed.time_claim("iat"),
            exp,
        })
    }
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier::new()
    }
}

/// The claims of a verified ID token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// `iss`: `https://accounts.google.com`.
    pub iss: String,
    /// `aud`: the audience the token was minted for.
    pub aud: String,
    /// `azp`: the authorized party (the service account's unique id), when present.
    pub azp: Option<String>,
    /// `sub`: the subject (the service account's unique id), when present.
    pub sub: Option<String>,
    /// `email`, when present (the metadata server adds it with `format=full`).
    pub email: Option<String>,
    /// `email_verified`, when present.
    pub email_verified: Option<bool>,
    /// `iat`, in seconds since the Unix epoch, when present.
    pub iat: Option<u64>,
    /// `exp`, in seconds since the Unix epoch.
    pub exp: u64,
}

impl Claims {
    /// `exp` as a [`SystemTime`].
    pub fn expires_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.exp)
    }
}

/// Why a token was rejected. Never contains the token.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// Not a JWT: the reason.
    Malformed(&'static str),
    /// The header's `alg` is not `RS256` (shown, truncated), or is missing.
    UnsupportedAlgorithm(Option<String>),
    /// The header's `kid` names no trusted key, or is missing.
    UnknownKey(Option<String>),
    /// The RS256 signature does not match the trusted key.
    BadSignature,
    /// `iss` is not Google's.
    WrongIssuer(String),
    /// `aud` is not among the accepted audiences.
    WrongAudience {
        /// The accepted audiences.
        expected: Vec<String>,
        /// The token's `aud`.
        got: String,
    },
    /// The token has no numeric `exp`.
    MissingExpiry,
    /// `now` is at or after `exp`.
    Expired {
        /// The token's `exp`, seconds since the epoch.
        exp: u64,
        /// The verifier's clock, seconds since the epoch.
        now: u64,
    },
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::Malformed(why) => write!(f, "malformed token: {why}"),
            VerifyError::UnsupportedAlgorithm(Some(alg)) => {
                write!(f, "unsupported algorithm `{alg}`, expected RS256")
            }
            VerifyError::UnsupportedAlgorithm(None) => {
                write!(f, "token header has no `alg`, expected RS256")
            }
            VerifyError::UnknownKey(Some(kid)) => write!(f, "unknown signing key `{kid}`"),
            VerifyError::UnknownKey(None) => write!(f, "token header has no `kid`"),
            VerifyError::BadSignature => write!(f, "bad signature"),
            VerifyError::WrongIssuer(iss) => {
                write!(f, "wrong issuer: expected `{GOOGLE_ISSUER}`, got `{iss}`")
            }
            VerifyError::WrongAudience { expected, got } => {
                write!(f, "wrong audience: expected ")?;
                for (i, aud) in expected.iter().enumerate() {
                    let sep = if i == 0 { "" } else { " or " };
                    write!(f, "{sep}`{aud}`")?;
                }
                if expected.is_empty() {
                    write!(f, "(none accepted)")?;
                }
                write!(f, ", got `{got}`")
            }
            VerifyError::MissingExpiry => write!(f, "token has no `exp`"),
            VerifyError::Expired { exp, now } => write!(
                f,
                "token expired: exp {exp} is {}s before now ({now})",
                now.saturating_sub(*exp)
            ),
        }
    }
}

impl std::error::Error for VerifyError {}

/// A JSON Web Key Set that [`Verifier::from_jwks`] could not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwksError(String);

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid JWKS: {}", self.0)
    }
}

impl std::error::Error for JwksError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_round_trip_trusts_the_same_keys() {
        let verifier = Verifier::new();
        let copy = Verifier::from_jwks(&verifier.jwks()).unwrap();
        assert_eq!(copy.keys, verifier.keys);
        assert_eq!(copy.key_ids().count(), 2);
    }
}
