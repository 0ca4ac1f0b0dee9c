//! OAuth access tokens handed out by the emulators, so the IAM emulator can check them.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SecureRandom as _;

/// The registry of access tokens the emulators issued: the metadata emulator's `token`
/// endpoint and the OAuth emulator add to it, the IAM Credentials emulator checks against it.
///
/// Cheap to clone; clones share the registry. Give the same one to every emulator of a test
/// (`MetadataEmulator::builder().access_tokens(..)`) so that tokens from one are accepted by
/// the others. Its `Debug` shows only how many tokens it holds.
#[derive(Clone, Default)]
pub struct AccessTokens {
    tokens: Arc<Mutex<HashMap<String, Grant>>>,
}

#[derive(Clone)]
struct Grant {
    email: String,
    expires: SystemTime,
}

impl AccessTokens {
    /// An empty registry.
    pub fn new() -> Self {
        AccessTokens::default()
    }

    /// Issues a new opaque access token (`ya29.testkit-…`) for `email`, valid for `lifetime`.
    pub fn issue(&self, email: &str, lifetime: Duration) -> String {
        let mut random = [0u8; 24];
        let token = match ring::rand::SystemRandom::new().fill(&mut random) {
            Ok(()) => format!("ya29.testkit-{}", URL_SAFE_NO_PAD.encode(random)),
            Err(_) => format!("ya29.testkit-{}", crate::issuer::unique_id()),
        };
        let grant = Grant {
            email: email.to_owned(),
            expires: SystemTime::now() + lifetime,
        };
        self.lock().insert(token.clone(), grant);
        token
    }

    /// The service account a still-valid access token was issued to.
    pub fn email_for(&self, token: &str) -> Option<String> {
        let tokens = self.lock();
        let grant = tokens.get(token)?;
        (grant.expires > SystemTime::now()).then(|| grant.email.clone())
    }

    /// Forgets every token: all later checks fail, as after a revocation.
    pub fn revoke_all(&self) {
        self.lock().clear();
    }

    /// How many tokens were issued and not revoked (expired ones included).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no token was issued since the last [`revoke_all`](AccessTokens::revoke_all).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Grant>> {
        crate::sync::lock(&self.tokens)
    }
}

impl fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessTokens")
            .field("len", &self.len())
            .finish()
    }
}
