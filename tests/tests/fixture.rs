//! The testkit's fixture as a user's tests use it: a `#[cloud_run_client]` struct against an
//! emulated Cloud Run, no environment variables, many tests in parallel in one binary.
//!
//! The first test is the README's "Testing your client": everything a user writes beyond
//! their service (here `MemoryBookstore`) and its generated code (`pb`).

use cloud_run_grpc_examples::{MemoryBookstore, pb}; // the service and its generated code

use cloud_run_grpc_testkit::CloudRun;

#[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app", service = pb::bookstore_cloud_run::Bookstore)]
struct Bookstore;

#[tokio::test]
async fn the_front_end_sees_our_audience() -> Result<(), Box<dyn std::error::Error>> {
    let cloud_run = CloudRun::serve(Bookstore::HOST, MemoryBookstore::default().routes()).await?;
    let books = Bookstore::with_channel(cloud_run.channel());
    let mut listed = books.list_books(pb::ListBooksRequest::default()).await?;
    assert_eq!(listed.message().await?, None); // the service answered: no books yet
    assert_eq!(cloud_run.front().audiences_seen(), [Bookstore::AUDIENCE]);
    Ok(())
}

// What follows checks the fixture itself, beyond what a user's test needs.

/// Each test starts its own fixture: these run in parallel, and each one's counters hold
/// exactly its own calls.
async fn calls_on_a_fixture_of_its_own(calls: usize) {
    let cloud_run = CloudRun::serve(Bookstore::HOST, MemoryBookstore::default().routes())
        .await
        .unwrap();
    let books = Bookstore::with_channel(cloud_run.channel());
    for n in 0..calls {
        let book = pb::Book {
            title: format!("book {n}"),
            ..Default::default()
        };
        books
            .create_book(pb::CreateBookRequest { book: Some(book) })
            .await
            .unwrap();
    }
    assert_eq!(cloud_run.front().accepted(), calls);
    assert_eq!(cloud_run.front().rejected(), 0);
    assert_eq!(cloud_run.metadata().requests(Bookstore::AUDIENCE), 1);
    assert_eq!(cloud_run.metadata().total_requests(), 1);
}

#[tokio::test]
async fn parallel_fixture_1() {
    calls_on_a_fixture_of_its_own(3).await;
}

#[tokio::test]
async fn parallel_fixture_2() {
    calls_on_a_fixture_of_its_own(5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_fixture_3_on_a_multi_threaded_runtime() {
    calls_on_a_fixture_of_its_own(7).await;
}

#[test]
fn parallel_fixture_4_from_a_plain_test() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(calls_on_a_fixture_of_its_own(2));
    // The emulators run on the testkit's runtime: this test's runtime going away does not
    // stop them, and the next runtime calls the same fixture.
    let cloud_run = CloudRun::builder(Bookstore::HOST)
        .serve_blocking(MemoryBookstore::default().routes())
        .unwrap();
    for _ in 0..2 {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let books = Bookstore::with_channel(cloud_run.channel());
        runtime
            .block_on(books.list_books(pb::ListBooksRequest::default()))
            .unwrap();
        drop(runtime);
    }
    assert_eq!(cloud_run.front().accepted(), 2);
    assert_eq!(cloud_run.metadata().total_requests(), 1);
}

#[tokio::test]
async fn a_custom_audience_is_sent_and_accepted() {
    let cloud_run = CloudRun::builder(Bookstore::HOST)
        .audience("https://books.example.com")
        .serve(MemoryBookstore::default().routes())
        .await
        .unwrap();
    assert_eq!(cloud_run.audience(), "https://books.example.com");
    let books = Bookstore::with_channel(cloud_run.channel());
    books
        .list_books(pb::ListBooksRequest::default())
        .await
        .unwrap();
    assert_eq!(
        cloud_run.front().audiences_seen(),
        ["https://books.example.com"]
    );
    let claims = cloud_run.front().last_claims().unwrap();
    assert_eq!(claims.aud, "https://books.example.com");
    assert_eq!(claims.email.as_deref(), Some(cloud_run.metadata().email()));
}

#[tokio::test]
async fn a_channel_asking_for_another_audience_is_seen_and_refused() {
    let cloud_run = CloudRun::serve(Bookstore::HOST, MemoryBookstore::default().routes())
        .await
        .unwrap();
    let wrong = cloud_run
        .channel_builder()
        .audience("https://someone-else.a.run.app")
        .build()
        .unwrap();
    let request = pb::GetBookRequest { id: "1".into() };
    let refused = Bookstore::with_channel(wrong).get_book(request).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(
        cloud_run.front().audiences_seen(),
        ["https://someone-else.a.run.app"]
    );
    assert_eq!(cloud_run.front().rejected(), 1);
    assert_eq!(cloud_run.front().accepted(), 0);
    assert_eq!(cloud_run.front().last_claims(), None);
}

#[tokio::test]
async fn a_plaintext_fixture_serves_over_h2c() {
    let cloud_run = CloudRun::builder(Bookstore::HOST)
        .plaintext()
        .serve(MemoryBookstore::default().routes())
        .await
        .unwrap();
    Bookstore::with_channel(cloud_run.channel())
        .list_books(pb::ListBooksRequest::default())
        .await
        .unwrap();
    assert_eq!(
        cloud_run.front().url(),
        "http://bookstore-abc123-ew.a.run.app"
    );
    assert_eq!(cloud_run.front().accepted(), 1);
}

#[tokio::test]
async fn a_bad_host_is_refused_with_the_channels_reason() {
    let error = CloudRun::serve(
        "https://bookstore-abc123-ew.a.run.app",
        tonic::service::Routes::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    let message = error.to_string();
    assert!(
        message.contains("the fixture cannot build a channel"),
        "{message}"
    );
}
