//! `HTTPS_PROXY` and `NO_PROXY` are honoured (HTTP `CONNECT`) by the channel and by https token
//! endpoints, never by the metadata server. Its own test binary: it sets the process's proxy
//! variables, which nothing else here may see.

use cloud_run_grpc::CloudRunChannel;
use cloud_run_grpc::token::{IdTokenSource, ServiceAccountKey};
use cloud_run_grpc_examples::MemoryBookstore;
use cloud_run_grpc_examples::pb::bookstore_client::BookstoreClient;
use cloud_run_grpc_examples::pb::{Book, CreateBookRequest};
use cloud_run_grpc_testkit::{CloudRun, ConnectProxy, OAuthEmulator};

/// A name only the proxy can reach: the machine has no resolver entry for it.
const HOST: &str = "bookstore.proxied.test";
const TOKENS: &str = "tokens.proxied.test";

fn book(title: &str) -> CreateBookRequest {
    CreateBookRequest {
        book: Some(Book {
            title: title.into(),
            ..Book::default()
        }),
    }
}

#[tokio::test]
async fn the_channel_and_token_endpoints_go_through_the_proxy_the_metadata_server_never() {
    let cloud_run = CloudRun::serve(HOST, MemoryBookstore::default().routes())
        .await
        .unwrap();
    let oauth = OAuthEmulator::start().await.unwrap();
    let proxy = ConnectProxy::start([(HOST, cloud_run.front().addr()), (TOKENS, oauth.addr())])
        .await
        .unwrap();
    // SAFETY: this test binary has one test, and nothing else in it reads these variables.
    unsafe {
        std::env::set_var("HTTPS_PROXY", proxy.url());
        std::env::remove_var("NO_PROXY");
        std::env::remove_var("no_proxy");
    }

    // The channel dials the host by name, so the proxy tunnels it; the metadata server, on
    // plain http, is asked directly.
    let channel = CloudRunChannel::builder(HOST)
        .ca_certificate(cloud_run.front().ca_certificate_pem())
        .token_source(cloud_run.token_source())
        .build()
        .unwrap();
    assert!(format!("{channel:?}").contains(&proxy.addr().to_string()));
    let created = BookstoreClient::new(channel)
        .create_book(book("proxied"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.title, "proxied");
    assert_eq!(proxy.requests(), [format!("{HOST}:443")]);
    assert_eq!(cloud_run.front().accepted(), 1);
    assert_eq!(cloud_run.metadata().requests(&format!("https://{HOST}")), 1);

    // An https token endpoint goes through it too (here the emulator's certificate is not for
    // that name, so the handshake fails — after the proxy was asked for the tunnel).
    let key = ServiceAccountKey::from_json(&oauth.key_json())
        .unwrap()
        .with_token_uri(format!("https://{TOKENS}/token"))
        .unwrap();
    let error = key.fetch("https://svc.a.run.app").await.unwrap_err();
    assert_eq!(
        proxy.requests().last(),
        Some(&format!("{TOKENS}:443")),
        "{error}"
    );

    // NO_PROXY lists the host: the channel dials it directly, which this machine cannot.
    unsafe { std::env::set_var("NO_PROXY", HOST) };
    let direct = CloudRunChannel::builder(HOST)
        .ca_certificate(cloud_run.front().ca_certificate_pem())
        .token_source(cloud_run.token_source())
        .build()
        .unwrap();
    assert!(!format!("{direct:?}").contains("proxy"));
    let status = BookstoreClient::new(direct)
        .create_book(book("direct"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(proxy.requests().len(), 2, "NO_PROXY was not honoured");
}
