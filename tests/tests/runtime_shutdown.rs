//! A runtime that shuts down while its connection's HTTP/2 keep-alive timer is armed (a call in
//! flight, pings due) panics nowhere, and the same channel goes on serving other runtimes.
//!
//! Its own test binary: it counts panics with a process-wide hook.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cloud_run_grpc_examples::SlowBookstore;
use cloud_run_grpc_examples::pb::bookstore_client::BookstoreClient;
use cloud_run_grpc_examples::pb::{Book, CreateBookRequest, GetBookRequest};
use cloud_run_grpc_testkit::CloudRun;

const HOST: &str = "bookstore.test.run.app";

/// What `#[tokio::test]` builds for each test: a current-thread runtime with every driver,
/// dropped when the test's future ends.
fn test_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_runtime_shut_down_mid_keep_alive_panics_nowhere() {
    let panics = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&panics);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        counted.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));

    // The emulators run on the testkit's runtime, which outlives the two below.
    let store = SlowBookstore::default();
    let cloud_run = CloudRun::builder(HOST)
        .serve_blocking(store.routes())
        .unwrap();
    // Pings every 20 ms while a call is in flight: the timer is always armed.
    let channel = cloud_run
        .channel_builder()
        .keep_alive(Duration::from_millis(20), Duration::from_secs(5))
        .build()
        .unwrap();

    let first = test_runtime();
    first.block_on(async {
        let mut client = BookstoreClient::new(channel.clone());
        client
            .create_book(CreateBookRequest {
                book: Some(Book {
                    title: "before".into(),
                    ..Book::default()
                }),
            })
            .await
            .unwrap();
        store.set_delay(Duration::from_secs(30));
        tokio::spawn(async move { client.get_book(GetBookRequest::default()).await });
        cloud_run_grpc_tests::until("the call arrives", || store.in_progress() > 0).await;
        // Several keep-alive rounds, so that a ping and its timer are in flight.
        tokio::time::sleep(Duration::from_millis(100)).await;
    });
    drop(first);

    store.set_delay(Duration::ZERO);
    let second = test_runtime();
    second.block_on(async {
        let created = BookstoreClient::new(channel.clone())
            .create_book(CreateBookRequest {
                book: Some(Book {
                    title: "after".into(),
                    ..Book::default()
                }),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(created.title, "after");
    });
    drop(second);
    assert_eq!(panics.load(Ordering::SeqCst), 0, "something panicked");
}
