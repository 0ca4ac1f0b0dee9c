//! Dead peers are found and replaced without the caller's help: a connection that goes silent,
//! a server that never finishes TLS, and a server that finds our pings too frequent. Each
//! against the testkit's fault tools, over real sockets.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cloud_run_grpc::CloudRunChannel;
use cloud_run_grpc::token::{IdToken, StaticToken};
use cloud_run_grpc_examples::SlowBookstore;
use cloud_run_grpc_examples::pb::bookstore_client::BookstoreClient;
use cloud_run_grpc_examples::pb::{Book, CreateBookRequest, GetBookRequest};
use cloud_run_grpc_testkit::{CloudRun, KeepaliveEnforcer, SilentServer, TcpProxy};
use cloud_run_grpc_tests::until;
use tonic::Code;

const HOST: &str = "bookstore.test.run.app";

fn book(title: &str) -> CreateBookRequest {
    CreateBookRequest {
        book: Some(Book {
            title: title.into(),
            ..Book::default()
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_fails_its_calls_within_the_keep_alive_window_and_is_replaced() {
    let store = SlowBookstore::default();
    let cloud_run = CloudRun::serve(HOST, store.routes()).await.unwrap();
    let proxy = TcpProxy::start(cloud_run.front().addr()).await.unwrap();
    let (interval, timeout) = (Duration::from_millis(200), Duration::from_millis(300));
    let channel = cloud_run
        .channel_builder()
        .connect_to(proxy.addr())
        .keep_alive(interval, timeout)
        .build()
        .unwrap();
    let mut client = BookstoreClient::new(channel.clone());
    client.create_book(book("before")).await.unwrap();

    // Calls in flight on the connection when it goes silent (the server holds them).
    store.set_delay(Duration::from_secs(60));
    let failed = Arc::new(AtomicUsize::new(0));
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move { client.get_book(GetBookRequest::default()).await })
        })
        .collect();
    until("the server holds the four calls", || {
        store.in_progress() == 4
    })
    .await;
    proxy.silence();
    let silenced = Instant::now();
    for call in calls {
        let status = call.await.unwrap().unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        failed.fetch_add(1, Ordering::SeqCst);
    }
    // Found by the first unanswered PING: within one interval plus the timeout, with room for
    // a loaded machine, and far from the call deadline of 30 s.
    let detected = silenced.elapsed();
    assert!(
        detected < (interval + timeout) * 5,
        "a silent peer took {detected:?} to find"
    );
    assert_eq!(failed.load(Ordering::SeqCst), 4);

    // New calls get a new connection, and succeed.
    store.set_delay(Duration::ZERO);
    let created = client
        .create_book(book("after"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.title, "after");
    assert_eq!(proxy.connections(), 2);
}

#[tokio::test]
async fn a_server_that_never_finishes_tls_fails_the_call_within_the_connect_timeout() {
    let silent = SilentServer::start().await.unwrap();
    let channel = CloudRunChannel::builder(HOST)
        .connect_to(silent.addr())
        .token_source(static_token())
        .connect_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let status = BookstoreClient::new(channel)
        .create_book(book("never"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("TCP and TLS did not complete")
            && status.message().contains("300ms"),
        "{status:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(silent.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_pings_halves_the_ping_rate_and_loses_no_call() {
    let store = SlowBookstore::default();
    let cloud_run = CloudRun::builder(HOST)
        .plaintext()
        .serve(store.routes())
        .await
        .unwrap();
    // A grpc-go server that allows a PING every 10 s while streams are open; we ping every 50 ms.
    let enforcer = KeepaliveEnforcer::builder(cloud_run.front().addr())
        .min_time(Duration::from_secs(10))
        .start()
        .await
        .unwrap();
    let interval = Duration::from_millis(50);
    let channel = cloud_run
        .channel_builder()
        .connect_to(enforcer.addr())
        .keep_alive(interval, Duration::from_secs(5))
        .build()
        .unwrap();
    let mut client = BookstoreClient::new(channel.clone());
    client.create_book(book("first")).await.unwrap();

    // A call held long enough for several pings: the third strike gets GOAWAY.
    store.set_delay(Duration::from_millis(600));
    let held = client.get_book(GetBookRequest::default()).await;
    until("the enforcer sent GOAWAY", || enforcer.goaways() == 1).await;
    assert_eq!(channel.keep_alive_interval(), Some(interval * 2));
    // The call in flight was processed (its stream is below the GOAWAY's last stream id) and
    // then cut, as grpc-go closes the connection: it fails, and is not sent again.
    let status = held.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // ...and the next call dials a new connection, which pings half as often.
    store.set_delay(Duration::ZERO);
    client.create_book(book("after")).await.unwrap();
    assert_eq!(enforcer.connections(), 2);
}

fn static_token() -> StaticToken {
    // Unsigned, valid until 2100: the silent server never gets to look at it.
    let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDAsImF1ZCI6Imh0dHBzOi8vYm9va3N0b3JlLnRlc3QucnVuLmFwcCJ9.c2ln";
    StaticToken::new(IdToken::from_jwt(jwt).unwrap())
}

/// A connection without calls for the idle timeout is closed, so that the next call dials
/// afresh rather than finding a flow a NAT has forgotten.
#[tokio::test]
async fn an_idle_connection_is_closed_and_the_next_call_dials_afresh() {
    let store = SlowBookstore::default();
    let cloud_run = CloudRun::serve(HOST, store.routes()).await.unwrap();
    let idle = Duration::from_millis(150);
    let channel = cloud_run
        .channel_builder()
        .idle_timeout(idle)
        .build()
        .unwrap();
    let mut client = BookstoreClient::new(channel);
    client.create_book(book("one")).await.unwrap();
    client.create_book(book("two")).await.unwrap();
    assert_eq!(cloud_run.front().connections(), 1);
    // Time is the subject here: wait out the idle timeout, with room for a loaded machine.
    tokio::time::sleep(idle * 4).await;
    client.create_book(book("three")).await.unwrap();
    assert_eq!(cloud_run.front().connections(), 2);
}

/// A host that takes one connection and closes every later one at once: a `connections(2)`
/// floor cannot be met, and is asked for again only after a backoff, not on every call.
#[tokio::test]
async fn a_connection_floor_the_host_refuses_is_retried_with_backoff() {
    let cloud_run = CloudRun::serve(HOST, SlowBookstore::default().routes())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let refused = Arc::new(AtomicUsize::new(0));
    let front = cloud_run.front().addr();
    let counted = Arc::clone(&refused);
    tokio::spawn(async move {
        let (mut first, _) = listener.accept().await.unwrap();
        tokio::spawn(async move {
            let mut upstream = tokio::net::TcpStream::connect(front).await.unwrap();
            let _ = tokio::io::copy_bidirectional(&mut first, &mut upstream).await;
        });
        while let Ok((later, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(later);
        }
    });
    let channel = cloud_run
        .channel_builder()
        .connect_to(addr)
        .connections(2)
        .build()
        .unwrap();
    let mut client = BookstoreClient::new(channel);
    // 2 s of calls, one at a time: every one finds the floor unmet.
    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed() < Duration::from_secs(2) && calls < 10_000 {
        client.create_book(book("floor")).await.unwrap();
        calls += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let refused = refused.load(Ordering::SeqCst);
    assert!(
        (1..=3).contains(&refused),
        "{refused} floor dials in 2 s ({calls} calls): backoff 1 s, then 2 s"
    );
}
