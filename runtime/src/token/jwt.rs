//! Reading the claims of a JWT we were handed. We never verify signatures here: the token is
//! Google's to sign and Cloud Run's to check; we only need to know when it expires and for whom.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

/// Why a string is not a usable JWT. Never carries the token itself.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// Not three dot-separated base64url parts.
    #[error("the answer is not a JWT (expected three base64url parts separated by '.')")]
    NotAJwt,
    /// The payload is not base64url-encoded JSON; the decoding or parsing error says where.
    #[error("the JWT payload is not base64url-encoded JSON: {0}")]
    BadPayload(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The payload has no numeric `exp` claim, so we cannot know when to refresh.
    #[error("the JWT has no numeric `exp` claim, so its lifetime is unknown")]
    MissingExpiry,
    /// The token had already expired when it arrived.
    #[error("the token had already expired when it arrived (is this machine's clock right?)")]
    Expired,
}

/// The claims we care about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claims {
    pub(crate) expires_at: SystemTime,
    /// When the token was minted, on its issuer's clock.
    pub(crate) issued_at: Option<SystemTime>,
    /// Every entry of `aud` (Google's ID tokens have one).
    pub(crate) audiences: Vec<String>,
    pub(crate) email: Option<String>,
}

#[derive(Deserialize)]
struct RawClaims {
    exp: Option<f64>,
    #[serde(default)]
    iat: Option<serde_json::Value>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    email: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

pub(crate) fn claims(jwt: &str) -> Result<Claims, JwtError> {
    let mut parts = jwt.split('.');
    let (Some(header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::NotAJwt);
    };
    if header.is_empty() || payload.is_empty() {
        return Err(JwtError::NotAJwt);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| JwtError::BadPayload(Arc::new(e)))?;
    let raw: RawClaims =
        serde_json::from_slice(&bytes).map_err(|e| JwtError::BadPayload(Arc::new(e)))?;
    let exp = raw
        .exp
        .filter(|e| e.is_finite() && *e >= 0.0)
        .ok_or(JwtError::MissingExpiry)?;
    let expires_at = unix_time(exp).ok_or(JwtError::MissingExpiry)?;
    // `iat` only corrects for a skewed local clock; a token without a usable one is still fine.
    let issued_at = raw
        .iat
        .and_then(|iat| iat.as_f64())
        .filter(|iat| iat.is_finite() && *iat >= 0.0)
        .and_then(unix_time);
    let audiences = match raw.aud {
        Some(Audience::One(a)) => vec![a],
        Some(Audience::Many(list)) => list,
        None => Vec::new(),
    };
    Ok(Claims {
        expires_at,
        issued_at,
        audiences,
        email: raw.email,
    })
}

/// Seconds since the Unix epoch as a time, capped far beyond any real token's lifetime.
fn unix_time(seconds: f64) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::from_secs_f64(seconds.min(u32::MAX as f64 * 4.0)))
}

#[cfg(test)]
pub(crate) fn unsigned(payload: &serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
    format!("{header}.{payload}.c2lnbmF0dXJl")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_exp_aud_and_email() {
        let jwt = unsigned(&json!({"exp": 2_000_000_000u64, "aud": "https://svc", "email": "a@b"}));
        let c = claims(&jwt).unwrap();
        assert_eq!(
            c.expires_at,
            UNIX_EPOCH + Duration::from_secs(2_000_000_000)
        );
        assert_eq!(c.audiences, ["https://svc"]);
        assert_eq!(c.issued_at, None);
        assert_eq!(c.email.as_deref(), Some("a@b"));
    }

    #[test]
    fn audience_may_be_a_list() {
        let jwt = unsigned(&json!({"exp": 1, "iat": 0, "aud": ["x", "y"]}));
        let c = claims(&jwt).unwrap();
        assert_eq!(c.audiences, ["x", "y"]);
        assert_eq!(c.issued_at, Some(UNIX_EPOCH));
    }

    #[test]
    fn rejects_what_is_not_a_jwt() {
        assert!(matches!(claims("hello"), Err(JwtError::NotAJwt)));
        assert!(matches!(claims("a.b.c.d"), Err(JwtError::NotAJwt)));
        assert!(matches!(claims(".x.y"), Err(JwtError::NotAJwt)));
        assert!(matches!(claims("a.!!!.c"), Err(JwtError::BadPayload(_))));
        let no_exp = unsigned(&json!({"aud": "x"}));
        assert!(matches!(claims(&no_exp), Err(JwtError::MissingExpiry)));
        let text_exp = unsigned(&json!({"exp": "soon"}));
        assert!(matches!(claims(&text_exp), Err(JwtError::BadPayload(_))));
        let negative = unsigned(&json!({"exp": -5}));
        assert!(matches!(claims(&negative), Err(JwtError::MissingExpiry)));
    }
}
