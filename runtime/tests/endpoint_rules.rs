//! Where credentials and tokens may come from: an answer at the metadata server's address must
//! come from a metadata server, and endpoints named in credential files must be Google's (or a
//! loopback emulator). Each rule is checked against real servers on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use cloud_run_grpc::token::{IdTokenSource, MetadataServer, TokenError};
use cloud_run_grpc_testkit::Issuer;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

const AUDIENCE: &str = "https://echo-abc123-ew.a.run.app";

/// An HTTP/1.1 server on loopback that answers every request with `status`, `headers` and
/// `body`, and closes the connection. It stops when dropped.
struct CannedServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl CannedServer {
    async fn start(status: &str, headers: &[(&str, &str)], body: &str) -> CannedServer {
        let mut answer = format!("HTTP/1.1 {status}\r\n");
        for (name, value) in headers {
            answer.push_str(&format!("{name}: {value}\r\n"));
        }
        answer.push_str(&format!(
            "content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    // The request head ends with an empty line; bodies are not expected here.
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 64 << 10
                    {
                        match socket.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let _ = socket.write_all(answer.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        CannedServer { addr, task }
    }
}

impl Drop for CannedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn token() -> String {
    Issuer::new().mint(
        AUDIENCE,
        "sa@p.iam.gserviceaccount.com",
        Duration::from_secs(3600),
    )
}

#[tokio::test]
async fn an_identity_answer_without_metadata_flavor_is_refused() {
    let jwt = token();
    let impostor = CannedServer::start(
        "200 OK",
        &[("content-type", "text/plain"), ("server", "nginx/1.25")],
        &jwt,
    )
    .await;
    let source = MetadataServer::with_host(impostor.addr.to_string());

    let err = source.fetch(AUDIENCE).await.unwrap_err();
    let TokenError::Unsupported {
        source_name,
        reason,
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(
        source_name,
        &format!("metadata server at {}", impostor.addr)
    );
    assert!(
        reason.starts_with(
            "something answered (HTTP 200, text/plain, server `nginx/1.25`) without \
             `Metadata-Flavor: Google`, so it is not a metadata server"
        ),
        "{reason}"
    );
    assert!(reason.contains("GCE_METADATA_HOST"), "{reason}");
    assert!(!err.is_transient());
    assert!(!err.to_string().contains(&jwt), "{err}");

    // The same answer with the header is a metadata server's: the header alone made the
    // difference.
    let genuine = CannedServer::start(
        "200 OK",
        &[
            ("content-type", "text/plain"),
            ("metadata-flavor", "Google"),
        ],
        &jwt,
    )
    .await;
    let token = MetadataServer::with_host(genuine.addr.to_string())
        .fetch(AUDIENCE)
        .await
        .unwrap();
    assert_eq!(token.secret(), jwt);
}

#[tokio::test]
async fn an_error_answer_without_metadata_flavor_is_named_as_such() {
    let impostor = CannedServer::start(
        "404 Not Found",
        &[("content-type", "text/html; charset=UTF-8")],
        "<html>not here</html>",
    )
    .await;
    let err = MetadataServer::with_host(impostor.addr.to_string())
        .fetch(AUDIENCE)
        .await
        .unwrap_err();
    let shown = err.to_string();
    assert!(
        shown
            .contains("something answered (HTTP 404, text/html) without `Metadata-Flavor: Google`"),
        "{shown}"
    );
}
