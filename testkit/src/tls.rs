//! A throw-away certificate authority and server certificates (rcgen, ring).

use std::fmt;
use std::io;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};

/// A certificate authority made up on the spot, to issue server certificates for test hosts.
///
/// Give [`certificate_pem`](TestCa::certificate_pem) to the client as its extra trusted root
/// (e.g. `CloudRunChannel::builder(host).ca_certificate(pem)`).
///
/// ```
/// let ca = cloud_run_grpc_testkit::TestCa::new().unwrap();
/// let leaf = ca.issue("svc.test.run.app").unwrap();
/// assert!(ca.certificate_pem().starts_with("-----BEGIN CERTIFICATE-----"));
/// assert!(leaf.certificate_pem().starts_with("-----BEGIN CERTIFICATE-----"));
/// ```
#[derive(Clone)]
pub struct TestCa {
    inner: Arc<CaInner>,
}

struct CaInner {
    certificate_pem: String,
    issuer: rcgen::Issuer<'static, KeyPair>,
}

impl TestCa {
    /// Generates a new CA key (ECDSA P-256) and self-signed certificate.
    pub fn new() -> io::Result<Self> {
        let mut params = CertificateParams::new(Vec::new()).map_err(io::Error::other)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "cloud-run-grpc-testkit CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().map_err(io::Error::other)?;
        let certificate = params.self_signed(&key).map_err(io::Error::other)?;
        Ok(TestCa {
            inner: Arc::new(CaInner {
                certificate_pem: to_pem("CERTIFICATE", certificate.der()),
                issuer: rcgen::Issuer::new(params, key),
            }),
        })
    }

    /// The CA certificate, PEM.
    pub fn certificate_pem(&self) -> String {
        self.inner.certificate_pem.clone()
    }

    /// Issues a server certificate for `host`, also valid for `localhost`, `127.0.0.1` and `::1`.
    pub fn issue(&self, host: &str) -> io::Result<ServerCertificate> {
        let mut names = vec![host.to_owned()];
        for extra in ["localhost", "127.0.0.1", "::1"] {
            if !names.iter().any(|n| n == extra) {
                names.push(extra.to_owned());
            }
        }
        let mut params = CertificateParams::new(names).map_err(io::Error::other)?;
        params.distinguished_name.push(DnType::CommonName, host);
        let key = KeyPair::generate().map_err(io::Error::other)?;
        let certificate = params
            .signed_by(&key, &self.inner.issuer)
            .map_err(io::Error::other)?;
        let key = PrivatePkcs8KeyDer::from(key.serialize_der());
        Ok(ServerCertificate {
            certificate_pem: to_pem("CERTIFICATE", certificate.der()),
            key_pem: to_pem("PRIVATE KEY", key.secret_pkcs8_der()),
            certificate: certificate.der().clone(),
            key: Arc::new(key),
        })
    }

    /// A rustls server configuration presenting a certificate for `host`, with ALPN
    /// `http/1.1` (for the HTTP emulators).
    pub(crate) fn http1_server_config(&self, host: &str) -> io::Result<rustls_config::Config> {
        rustls_config::http1(&self.issue(host)?)
    }
}

impl fmt::Debug for TestCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// PEM with `\n` line ends, as rcgen and openssl write it.
fn to_pem(label: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der), config)
}

/// A server certificate and its private key, as PEM and as the DER rustls takes.
#[derive(Clone)]
pub struct ServerCertificate {
    certificate_pem: String,
    key_pem: String,
    certificate: CertificateDer<'static>,
    key: Arc<PrivatePkcs8KeyDer<'static>>,
}

impl ServerCertificate {
    /// The certificate, PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// As a tonic server identity.
    pub fn identity(&self) -> tonic::transport::Identity {
        tonic::transport::Identity::from_pem(&self.certificate_pem, &self.key_pem)
    }
}

impl fmt::Debug for ServerCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCertificate").finish_non_exhaustive()
    }
}

mod rustls_config {
    use std::io;
    use std::sync::Arc;

    use tokio_rustls::rustls::{self, pki_types};

    pub(crate) type Config = Arc<rustls::ServerConfig>;

    pub(crate) fn http1(cert: &super::ServerCertificate) -> io::Result<Config> {
        let chain = vec![cert.certificate.clone()];
        let key = pki_types::PrivateKeyDer::Pkcs8(cert.key.clone_key());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(io::Error::other)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};

    #[test]
    fn the_pem_reads_back_as_the_der_rustls_is_given() {
        let leaf = super::TestCa::new()
            .unwrap()
            .issue("svc.test.run.app")
            .unwrap();
        let certificate = CertificateDer::from_pem_slice(leaf.certificate_pem().as_bytes());
        assert_eq!(certificate.unwrap(), leaf.certificate);
        let key = PrivatePkcs8KeyDer::from_pem_slice(leaf.key_pem().as_bytes()).unwrap();
        assert_eq!(key.secret_pkcs8_der(), leaf.key.secret_pkcs8_der());
        assert!(leaf.key_pem().lines().all(|line| line.len() <= 64));
    }
}
