//! A tiny HTTP/1.1 client over a raw `TcpStream`, so the tests share no code with the
//! emulators they check; [`grpc`] holds a gRPC service and a plain tonic client for it.
#![allow(dead_code)]

pub mod grpc;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Every request a test makes is bounded by this.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Waits until `done()` holds, checking every millisecond, for at most [`DEADLINE`]: a bounded
/// wait on a condition where a sleep would be a guess.
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(
            started.elapsed() < DEADLINE,
            "{what}: not after {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request and reads the answer until the server closes the connection.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<Answer> {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let exchange = async {
        let mut socket = tokio::net::TcpStream::connect(addr).await?;
        socket.write_all(raw.as_bytes()).await?;
        let mut response = Vec::new();
        socket.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(DEADLINE, exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "test deadline"))??;
    let answer = parse(&String::from_utf8_lossy(&response))?;
    // Every answer of every emulator carries an HTTP date, as Google's do: clients read it to
    // correct their clock's skew.
    let date = answer.header("date").unwrap_or_default();
    assert!(date.ends_with(" GMT"), "no HTTP date in {answer:?}");
    Ok(answer)
}

fn parse(response: &str) -> std::io::Result<Answer> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "no HTTP answer");
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(bad)?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Answer {
        status,
        headers,
        body: body.to_owned(),
    })
}

pub async fn get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Answer> {
    request(addr, "GET", path, headers, "").await
}

/// `GET` with `Metadata-Flavor: Google`.
pub async fn metadata_get(addr: SocketAddr, path: &str) -> std::io::Result<Answer> {
    get(addr, path, &[("Metadata-Flavor", "Google")]).await
}

/// The identity endpoint's path for an audience, `format=full`.
pub fn identity_path(audience: &str) -> String {
    let encoded = encode(audience);
    format!(
        "{}?audience={encoded}&format=full",
        cloud_run_grpc_testkit::IDENTITY_PATH
    )
}

/// Signs an assertion the way a service-account key holder does (RS256 with the key file's
/// private key), with an optional `kid` and base64 padding like gcp_auth.
pub fn sign_assertion(
    private_key_pem: &str,
    kid: Option<&str>,
    claims: &serde_json::Value,
    padded: bool,
) -> String {
    use base64::Engine as _;
    let engine = if padded {
        base64::engine::general_purpose::URL_SAFE
    } else {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
    };
    use tokio_rustls::rustls::pki_types::{PrivatePkcs8KeyDer, pem::PemObject as _};
    let der = PrivatePkcs8KeyDer::from_pem_slice(private_key_pem.as_bytes()).unwrap();
    let key = ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap();
    let header = match kid {
        Some(kid) => serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": kid}),
        None => serde_json::json!({"alg": "RS256", "typ": "JWT"}),
    };
    let mut jwt = format!(
        "{}.{}",
        engine.encode(header.to_string()),
        engine.encode(claims.to_string())
    );
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        jwt.as_bytes(),
        &mut signature,
    )
    .unwrap();
    jwt.push('.');
    jwt.push_str(&engine.encode(signature));
    jwt
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    unix(std::time::SystemTime::now())
}

/// `time` in whole seconds since the epoch.
pub fn unix(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Percent-encodes a form value (everything but RFC 3986's unreserved characters).
pub fn encode(value: &str) -> String {
    const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(value, UNRESERVED).to_string()
}

/// `POST` a form.
pub async fn post_form(addr: SocketAddr, path: &str, form: &str) -> std::io::Result<Answer> {
    request(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form,
    )
    .await
}

/// The body as JSON.
pub fn json(answer: &Answer) -> serde_json::Value {
    serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("{e}: {}", answer.body))
}
