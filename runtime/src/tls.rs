//! TLS settings: rustls with ring, the platform's roots (which honour `SSL_CERT_FILE`) plus any
//! CA the caller names.

use std::sync::{Arc, OnceLock};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

use crate::Error;

/// The platform's roots, read once per process: reading them means reading many files.
fn native_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!(%error, "could not read some of the platform's root certificates");
        }
        found.certs
    })
}

/// Parses every certificate in a PEM bundle.
pub(crate) fn parse_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| Error::CaCertificate(Arc::new(e)))?;
    if certs.is_empty() {
        return Err(Error::CaCertificate(Arc::from(Box::<
            dyn std::error::Error + Send + Sync,
        >::from(
            "no `-----BEGIN CERTIFICATE-----` block found",
        ))));
    }
    Ok(certs)
}

/// A client configuration trusting the platform's roots and `extra` (the connector sets ALPN).
pub(crate) fn client_config(extra: &[CertificateDer<'static>]) -> Result<ClientConfig, Error> {
    let mut roots = RootCertStore::empty();
    let (_, ignored) = roots.add_parsable_certificates(native_roots().iter().cloned());
    if ignored > 0 {
        tracing::debug!(ignored, "ignored unparsable platform root certificates");
    }
    for cert in extra {
        roots
            .add(cert.clone())
            .map_err(|e| Error::CaCertificate(Arc::new(e)))?;
    }
    if roots.is_empty() {
        return Err(Error::NoRootCertificates);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(Arc::new(e)))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// The connector wants a TLS configuration even for plaintext; this one is never used.
pub(crate) fn unused_config() -> Result<ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(Arc::new(e)))?
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth())
}
