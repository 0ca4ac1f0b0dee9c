//! The fixed RSA-2048 keys the testkit signs with.
//!
//! `ring` cannot generate RSA keys, so these were made once with
//! `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`. They are test keys: they
//! are published with this crate and must never protect anything real.

use std::sync::{Arc, LazyLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{RsaKeyPair, RsaPublicKeyComponents};
use tokio_rustls::rustls::pki_types::PrivatePkcs8KeyDer;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;

/// One embedded key: its PEM (PKCS#8), its key id, and the parsed key pair.
pub(crate) struct Key {
    pub(crate) kid: &'static str,
    pub(crate) pem: &'static str,
    pub(crate) pair: RsaKeyPair,
}

impl Key {
    fn load(kid: &'static str, pem: &'static str) -> Arc<Key> {
        // The PEM files are part of the crate and a unit test parses each one, so this cannot
        // fail in a released build.
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .expect("embedded test key is PKCS#8 PEM");
        let pair = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
            .expect("embedded test key is valid PKCS#8");
        Arc::new(Key { kid, pem, pair })
    }

    /// The public half as `(n, e)`, big-endian without leading zeros.
    pub(crate) fn public(&self) -> RsaPublicKeyComponents<Vec<u8>> {
        RsaPublicKeyComponents::<Vec<u8>>::from(self.pair.public())
    }

    /// The public half as a JWK object.
    pub(crate) fn jwk(&self) -> serde_json::Value {
        let public = self.public();
        serde_json::json!({
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(&public.n),
            "e": URL_SAFE_NO_PAD.encode(&public.e),
        })
    }
}

/// The first key the emulated Google signs ID tokens with.
pub(crate) static GOOGLE_1: LazyLock<Arc<Key>> =
    LazyLock::new(|| Key::load("testkit-google-1", include_str!("keys/issuer-1.pem")));
/// The second one, for key-rotation tests.
pub(crate) static GOOGLE_2: LazyLock<Arc<Key>> =
    LazyLock::new(|| Key::load("testkit-google-2", include_str!("keys/issuer-2.pem")));
/// The key of the external identity provider whose tokens the STS emulator exchanges.
pub(crate) static IDENTITY_PROVIDER_1: LazyLock<Arc<Key>> = LazyLock::new(|| {
    Key::load(
        "testkit-identity-provider-1",
        include_str!("keys/identity-provider-1.pem"),
    )
});
/// The default service-account key.
pub(crate) static SERVICE_ACCOUNT_1: LazyLock<Arc<Key>> = LazyLock::new(|| {
    Key::load(
        "testkit-service-account-1",
        include_str!("keys/service-account-1.pem"),
    )
});
/// A second service-account key, for "the token endpoint does not know this key" tests.
pub(crate) static SERVICE_ACCOUNT_2: LazyLock<Arc<Key>> = LazyLock::new(|| {
    Key::load(
        "testkit-service-account-2",
        include_str!("keys/service-account-2.pem"),
    )
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_key_parses_and_is_distinct() {
        let keys = [
            &GOOGLE_1,
            &GOOGLE_2,
            &IDENTITY_PROVIDER_1,
            &SERVICE_ACCOUNT_1,
            &SERVICE_ACCOUNT_2,
        ];
        let moduli: std::collections::HashSet<Vec<u8>> =
            keys.iter().map(|k| k.public().n).collect();
        assert_eq!(moduli.len(), keys.len());
        for key in keys {
            assert_eq!(key.pair.public().modulus_len(), 256, "{}", key.kid);
        }
    }
}
