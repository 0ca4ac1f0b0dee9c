//! TLS settings: rustls with ring, the platform's roots (which honour `SSL_CERT_FILE` and
//! `SSL_CERT_DIR`, read when a channel is built) plus any CA the caller names.

use std::ffi::OsString;
use std::sync::{Arc, Mutex};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

use crate::Error;
use crate::sync::lock;

/// The variables rustls-native-certs reads instead of the platform's store.
const ROOT_VARIABLES: [&str; 2] = ["SSL_CERT_FILE", "SSL_CERT_DIR"];

/// The platform's roots and where they came from, read again only when the variables that
/// choose them change: reading them means reading many files, but a test that sets
/// `SSL_CERT_FILE` must not be stuck with the roots an earlier channel read.
fn native_roots() -> (Arc<Vec<CertificateDer<'static>>>, Arc<str>) {
    type Cached = (
        Vec<Option<OsString>>,
        Arc<Vec<CertificateDer<'static>>>,
        Arc<str>,
    );
    static ROOTS: Mutex<Option<Cached>> = Mutex::new(None);
    let key: Vec<Option<OsString>> = ROOT_VARIABLES.iter().map(std::env::var_os).collect();
    let mut cached = lock(&ROOTS);
    if let Some((read_with, roots, origin)) = cached.as_ref()
        && *read_with == key
    {
        return (Arc::clone(roots), Arc::clone(origin));
    }
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "could not read some of the platform's root certificates");
    }
    let chosen: Vec<String> = ROOT_VARIABLES
        .iter()
        .zip(&key)
        .filter_map(|(name, value)| Some(format!("{name}={}", value.as_ref()?.to_string_lossy())))
        .collect();
    let origin: Arc<str> = if chosen.is_empty() {
        format!("{} from the platform's store", found.certs.len()).into()
    } else {
        format!("{} from {}", found.certs.len(), chosen.join(" and ")).into()
    };
    let roots = Arc::new(found.certs);
    *cached = Some((key, Arc::clone(&roots), Arc::clone(&origin)));
    (roots, origin)
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
    client_config_and_origin(extra).map(|(config, _)| config)
}

/// [`client_config`], and a description of the roots it trusts, for certificate errors.
pub(crate) fn client_config_and_origin(
    extra: &[CertificateDer<'static>],
) -> Result<(ClientConfig, String), Error> {
    let (native, origin) = native_roots();
    let mut roots = RootCertStore::empty();
    let (_, ignored) = roots.add_parsable_certificates(native.iter().cloned());
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
    let mut origin = origin.to_string();
    if !extra.is_empty() {
        origin.push_str(&format!(" and {} from ca_certificate", extra.len()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(Arc::new(e)))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((config, origin))
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
