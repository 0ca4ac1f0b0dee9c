//! `cloud_run_grpc::shared`: one channel and one token cache per host for the whole process,
//! across Tokio runtimes that come and go (as `#[tokio::test]`s do).

use std::sync::OnceLock;

use cloud_run_grpc::CloudRunChannel;
use cloud_run_grpc_examples::MemoryBookstore;
use cloud_run_grpc_examples::pb::{Book, CreateBookRequest, bookstore_client::BookstoreClient};
use cloud_run_grpc_testkit::CloudRun;

/// One emulated Cloud Run for the whole binary, as the process-wide channels under test are:
/// on the testkit's runtime, it outlives every test's runtime. `shared()` dials the URL it is
/// given, so the front end serves plaintext on loopback, and finds the metadata emulator
/// through `GCE_METADATA_HOST`, set here before any token is fetched.
fn cloud_run() -> &'static CloudRun {
    static CLOUD_RUN: OnceLock<CloudRun> = OnceLock::new();
    CLOUD_RUN.get_or_init(|| {
        let cloud_run = CloudRun::builder("127.0.0.1")
            .plaintext()
            .serve_blocking(MemoryBookstore::default().routes())
            .unwrap();
        // SAFETY: set once, before any thread of this process reads it.
        unsafe { std::env::set_var("GCE_METADATA_HOST", cloud_run.metadata().host()) };
        cloud_run
    })
}

fn url() -> String {
    format!("http://{}", cloud_run().front().addr())
}

async fn call(channel: CloudRunChannel) -> Book {
    let request = CreateBookRequest {
        book: Some(Book {
            title: "Shared".into(),
            ..Book::default()
        }),
    };
    BookstoreClient::new(channel)
        .create_book(request)
        .await
        .unwrap()
        .into_inner()
}

fn fetches() -> usize {
    cloud_run().metadata().requests("https://127.0.0.1")
}

#[tokio::test]
async fn two_clients_of_one_host_share_one_cache_and_fetch_once() {
    let url = url();
    let a = cloud_run_grpc::shared(&url);
    let b = cloud_run_grpc::shared(&url);
    assert!(a.shares_token_cache_with(&b));
    assert_eq!(a.audience(), "https://127.0.0.1");
    call(a).await;
    call(b).await;
    assert_eq!(fetches(), 1);
}

#[tokio::test]
async fn another_tokio_test_runtime_uses_the_same_channel() {
    call(cloud_run_grpc::shared(&url())).await;
    assert_eq!(fetches(), 1);
}

#[test]
fn a_shared_channel_outlives_the_runtimes_that_used_it() {
    let url = url();
    for flavor in 0..4 {
        let runtime = if flavor % 2 == 0 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
        };
        runtime.block_on(call(cloud_run_grpc::shared(&url)));
        // Dropping the runtime closes the connections it made; the next runtime dials anew.
        drop(runtime);
    }
    assert_eq!(fetches(), 1);
}

#[tokio::test]
async fn a_bad_target_gives_a_channel_that_says_what_is_wrong() {
    let channel = cloud_run_grpc::shared("ftp://svc.a.run.app");
    let request = CreateBookRequest::default();
    let status = BookstoreClient::new(channel)
        .create_book(request)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("https://host"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_bad_url_from_the_environment_names_the_variable() {
    // SAFETY: no other code in this process reads this variable.
    unsafe { std::env::set_var("SHARED_RS_BAD_URL", "https://svc.a.run.app/v1") };
    let spec = cloud_run_grpc::__private::SharedSpec {
        url: "svc.a.run.app",
        audience: None,
        env: Some("SHARED_RS_BAD_URL"),
        header: None,
        timeout: None,
    };
    let channel = cloud_run_grpc::__private::shared_from_spec(&spec);
    let status = BookstoreClient::new(channel)
        .create_book(CreateBookRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let message = status.message();
    assert!(
        message.contains("SHARED_RS_BAD_URL")
            && message.contains("it has a path")
            && message.contains("write `https://host`"),
        "{message}"
    );
}
