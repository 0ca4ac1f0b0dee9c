//! Compact JWS (RS256) encoding and decoding shared by the issuer, the verifier and the
//! OAuth emulator's assertion check.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents};

use crate::keys::Key;

/// Signs `payload` with `key` as a compact RS256 JWS.
pub(crate) fn sign(key: &Key, payload: &serde_json::Value) -> String {
    let header = serde_json::json!({ "alg": "RS256", "kid": key.kid, "typ": "JWT" });
    let mut token = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    );
    let mut sig = vec![0; key.pair.public().modulus_len()];
    // Signing only fails for a wrong buffer length (sized just above) or a broken system RNG;
    // the token then carries an empty signature, which every verifier rejects.
    if key
        .pair
        .sign(
            &signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            token.as_bytes(),
            &mut sig,
        )
        .is_err()
    {
        sig.clear();
    }
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(sig));
    token
}

/// A token split into its parts, header and payload decoded, signature not yet checked.
pub(crate) struct Parsed<'a> {
    pub(crate) header: serde_json::Map<String, serde_json::Value>,
    pub(crate) payload: serde_json::Map<String, serde_json::Value>,
    pub(crate) signed: &'a str,
    pub(crate) signature: Vec<u8>,
}

impl Parsed<'_> {
    /// The header's `alg`, if it is a string.
    pub(crate) fn alg(&self) -> Option<&str> {
        self.header.get("alg").and_then(|v| v.as_str())
    }

    /// The header's `kid`, if it is a string.
    pub(crate) fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(|v| v.as_str())
    }

    /// Checks the RS256 signature against a public key.
    pub(crate) fn signature_matches(&self, key: &RsaPublicKeyComponents<Vec<u8>>) -> bool {
        key.verify(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            self.signed.as_bytes(),
            &self.signature,
        )
        .is_ok()
    }

    /// A string claim.
    pub(crate) fn str_claim(&self, name: &str) -> Option<&str> {
        self.payload.get(name).and_then(|v| v.as_str())
    }

    /// A numeric date claim (`exp`, `iat`), in whole seconds since the epoch.
    pub(crate) fn time_claim(&self, name: &str) -> Option<u64> {
        let value = self.payload.get(name)?;
        value
            .as_u64()
            .or_else(|| value.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
    }
}

/// Why a string could not be parsed as a JWT; never contains the token.
pub(crate) fn parse(token: &str) -> Result<Parsed<'_>, &'static str> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not three dot-separated parts");
    };
    // Google never pads, but some signers (gcp_auth) do: accept both.
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part.trim_end_matches('='));
    let object = |part: &str, what: &'static str| {
        decode(part)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .and_then(|value| match value {
                serde_json::Value::Object(map) => Some(map),
                _ => None,
            })
            .ok_or(what)
    };
    Ok(Parsed {
        header: object(header, "header is not base64url-encoded JSON object")?,
        payload: object(payload, "payload is not base64url-encoded JSON object")?,
        signed: &token[..header.len() + 1 + payload.len()],
        signature: decode(signature).map_err(|_| "signature is not base64url")?,
    })
}

/// Seconds since the Unix epoch, saturating at zero for times before it.
pub(crate) fn unix(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
