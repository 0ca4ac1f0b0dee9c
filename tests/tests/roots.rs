//! `SSL_CERT_FILE` is read when a channel is built, not once per process: a channel trusts the
//! roots the environment named at its `build()`, and a certificate it cannot verify says where
//! its roots came from. Its own test binary: it sets the process's `SSL_CERT_FILE`.

use cloud_run_grpc::{ChannelBuilder, CloudRunChannel};
use cloud_run_grpc_examples::MemoryBookstore;
use cloud_run_grpc_examples::pb::bookstore_client::BookstoreClient;
use cloud_run_grpc_examples::pb::{Book, CreateBookRequest};
use cloud_run_grpc_testkit::CloudRun;
use tonic::Code;

const HOST: &str = "bookstore.test.run.app";

fn book() -> CreateBookRequest {
    CreateBookRequest {
        book: Some(Book {
            title: "rooted".into(),
            ..Book::default()
        }),
    }
}

/// A channel to the fixture that trusts only the environment's roots.
fn trusting_the_environment(cloud_run: &CloudRun) -> ChannelBuilder {
    CloudRunChannel::builder(HOST)
        .connect_to(cloud_run.front().addr())
        .token_source(cloud_run.token_source())
}

#[tokio::test]
async fn each_channel_reads_ssl_cert_file_when_it_is_built() {
    // Two front ends, each with a CA of its own.
    let first = CloudRun::serve(HOST, MemoryBookstore::default().routes())
        .await
        .unwrap();
    let second = CloudRun::serve(HOST, MemoryBookstore::default().routes())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (first_ca, second_ca) = (dir.path().join("first.pem"), dir.path().join("second.pem"));
    std::fs::write(&first_ca, first.front().ca_certificate_pem()).unwrap();
    std::fs::write(&second_ca, second.front().ca_certificate_pem()).unwrap();

    // SAFETY: this test binary has one test, and nothing else in it reads the variable.
    unsafe { std::env::set_var("SSL_CERT_FILE", &first_ca) };
    let to_first = trusting_the_environment(&first).build().unwrap();
    unsafe { std::env::set_var("SSL_CERT_FILE", &second_ca) };
    let to_second = trusting_the_environment(&second).build().unwrap();
    let wrong = trusting_the_environment(&first).build().unwrap();

    BookstoreClient::new(to_first)
        .create_book(book())
        .await
        .unwrap();
    BookstoreClient::new(to_second)
        .create_book(book())
        .await
        .unwrap();
    let status = BookstoreClient::new(wrong)
        .create_book(book())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let named = format!("SSL_CERT_FILE={}", second_ca.display());
    for needle in [named.as_str(), "could not be verified", "ca_certificate"] {
        assert!(status.message().contains(needle), "{needle}: {status:?}");
    }
}
