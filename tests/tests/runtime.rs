//! The runtime against the testkit's emulators, over real sockets on loopback: TLS, RS256
//! tokens from the metadata emulator, and a Cloud-Run-like front end that checks them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use cloud_run_grpc::token::{IdTokenSource, MetadataServer, StaticToken};
use cloud_run_grpc::{AuthLayer, CloudRunChannel};
use cloud_run_grpc_examples::MemoryBookstore;
use cloud_run_grpc_examples::pb::{Book, CreateBookRequest, bookstore_client::BookstoreClient};
use cloud_run_grpc_testkit::{Fault, FrontEnd, MetadataEmulator};
use tonic::Code;

const HOST: &str = "bookstore.test.run.app";
const AUDIENCE: &str = "https://bookstore.test.run.app";

async fn emulators(lifetime: Duration) -> (MetadataEmulator, FrontEnd) {
    let metadata = MetadataEmulator::builder()
        .token_lifetime(lifetime)
        .start()
        .await
        .unwrap();
    let front = FrontEnd::builder(HOST)
        .verifier(metadata.verifier())
        .serve(MemoryBookstore::default().routes())
        .await
        .unwrap();
    (metadata, front)
}

fn channel(metadata: &MetadataEmulator, front: &FrontEnd) -> cloud_run_grpc::ChannelBuilder {
    CloudRunChannel::builder(HOST)
        .connect_to(front.addr())
        .ca_certificate(front.ca_certificate_pem())
        .token_source(MetadataServer::with_host(metadata.host()))
}

fn book(title: &str) -> CreateBookRequest {
    CreateBookRequest {
        book: Some(Book {
            title: title.into(),
            author: "A. Author".into(),
            ..Book::default()
        }),
    }
}

async fn create(
    client: &mut BookstoreClient<CloudRunChannel>,
    title: &str,
) -> Result<Book, tonic::Status> {
    client
        .create_book(book(title))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn tls_call_with_a_metadata_token_is_accepted_and_a_wrong_audience_is_not() {
    let (metadata, front) = emulators(Duration::from_secs(3600)).await;
    let mut client = BookstoreClient::new(channel(&metadata, &front).build().unwrap());
    let created = create(&mut client, "Dune").await.unwrap();
    assert_eq!(created.title, "Dune");
    assert_eq!(front.accepted(), 1);
    assert_eq!(metadata.requests(AUDIENCE), 1);

    let wrong = channel(&metadata, &front)
        .audience("https://someone-else.a.run.app")
        .build()
        .unwrap();
    let status = create(&mut BookstoreClient::new(wrong), "Dune")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(front.rejected(), 1);
    assert!(
        front.last_rejection().unwrap().contains("someone-else"),
        "{:?}",
        front.last_rejection()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_rotate_under_load_with_no_failed_call_and_one_fetch_per_rotation() {
    let (metadata, front) = emulators(Duration::from_secs(4)).await;
    let channel = channel(&metadata, &front).build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let (channel, stop, calls) = (channel.clone(), stop.clone(), calls.clone());
            tokio::spawn(async move {
                let mut client = BookstoreClient::new(channel);
                let mut failures = Vec::new();
                // Bounded: the loop ends when `stop` is set, and at 100k calls at the latest.
                for n in 0..100_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Err(status) = create(&mut client, &format!("w{i}-{n}")).await {
                        failures.push(status);
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                failures
            })
        })
        .collect();
    // Four-second tokens, refreshed about every 2.8s, for 12 seconds: at least three rotations.
    tokio::time::sleep(Duration::from_secs(12)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let failures = worker.await.unwrap();
        assert!(failures.is_empty(), "failed calls: {failures:?}");
    }
    let minted = metadata.tokens_minted();
    let fetches = metadata.requests(AUDIENCE);
    assert!(minted >= 4, "only {minted} tokens in 12s of 4s tokens");
    assert!(
        fetches.abs_diff(minted) <= 1,
        "{fetches} fetches for {minted} tokens"
    );
    assert_eq!(channel.token_cache().fetches() as usize, fetches);
    assert!(calls.load(Ordering::Relaxed) > 100);
    assert_eq!(front.rejected(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_calls_on_a_cold_cache_cause_one_fetch() {
    let (metadata, front) = emulators(Duration::from_secs(3600)).await;
    metadata.set_latency(Duration::from_millis(100));
    let channel = channel(&metadata, &front).build().unwrap();
    let calls: Vec<_> = (0..1000)
        .map(|i| {
            let mut client = BookstoreClient::new(channel.clone());
            tokio::spawn(async move { create(&mut client, &format!("book {i}")).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(metadata.requests(AUDIENCE), 1);
    assert_eq!(front.accepted(), 1000);
}

#[tokio::test]
async fn a_refresh_adds_no_latency_to_calls() {
    // 6s tokens are refreshed from 2s before `exp`; a 700ms fetch ends well before the token
    // stops being sent (0.6s before `exp`), so no call ever needs to wait for it.
    let fetch = Duration::from_millis(700);
    let (metadata, front) = emulators(Duration::from_secs(6)).await;
    metadata.set_latency(fetch);
    let mut client = BookstoreClient::new(channel(&metadata, &front).build().unwrap());
    create(&mut client, "first").await.unwrap(); // the cold fetch waits, once
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    // Bounded: 10 seconds of calls, through at least two refreshes.
    while started.elapsed() < Duration::from_secs(10) {
        let call = Instant::now();
        create(&mut client, "again").await.unwrap();
        slowest = slowest.max(call.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(metadata.requests(AUDIENCE) >= 3, "no refresh happened");
    // A call that waited for a fetch would take the fetch's 700ms or more; loopback calls take
    // a few milliseconds, and this bound leaves room for a loaded machine.
    assert!(slowest < fetch, "slowest call took {slowest:?}");
}

#[tokio::test]
async fn failures_while_the_token_is_valid_fail_no_call() {
    let (metadata, front) = emulators(Duration::from_secs(6)).await;
    let channel = channel(&metadata, &front).build().unwrap();
    let mut client = BookstoreClient::new(channel.clone());
    create(&mut client, "first").await.unwrap();
    let expires_at = channel.token_cache().current().unwrap().expires_at();
    metadata.fail_with(Fault::Status(503, "try later".into()));
    // A 6s token is refreshed from 2s before `exp` and sent until 0.6s before it: every refresh
    // fails meanwhile, and every call goes through. Bounded by the token's own expiry.
    let mut calls = 0;
    while SystemTime::now() + Duration::from_millis(800) < expires_at {
        create(&mut client, "during the outage").await.unwrap();
        calls += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(calls > 50, "{calls} calls");
    assert!(
        metadata.requests(AUDIENCE) >= 3,
        "refreshes were not retried"
    );
    assert_eq!(front.rejected(), 0);
}

#[tokio::test]
async fn without_a_valid_token_calls_wait_out_their_deadline_and_recover_when_the_source_is_back() {
    let (metadata, front) = emulators(Duration::from_secs(3600)).await;
    metadata.shutdown().await;
    // A refused connection is transient: calls wait for a token up to their deadline, with the
    // fetch retried meanwhile, then fail UNAVAILABLE.
    let channel = channel(&metadata, &front)
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let mut client = BookstoreClient::new(channel.clone());
    for _ in 0..5 {
        let started = Instant::now();
        let status = create(&mut client, "no token").await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        let message = status.message();
        assert!(message.contains(AUDIENCE), "{message}");
        assert!(
            message.contains(&format!("metadata server at {}", metadata.host())),
            "{message}"
        );
    }
    assert_eq!(
        front.accepted() + front.rejected(),
        0,
        "nothing may be sent without a token"
    );

    metadata.restart().await.unwrap();
    let back = Instant::now();
    let mut attempts = 0;
    // Bounded: backoff is at most 5s, so 8s is plenty.
    let book = loop {
        attempts += 1;
        match create(&mut client, "token again").await {
            Ok(book) => break book,
            Err(status) if back.elapsed() < Duration::from_secs(8) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("still failing after {attempts} attempts: {status:?}"),
        }
    };
    assert_eq!(book.title, "token again");
    let token = channel.token_cache().current().unwrap();
    assert!(!format!("{client:?}").contains(token.secret()));
}

/// A `grpc-status: 16` is the service's answer, after it may have done the work: it is
/// returned as it is, the token stays, and nothing is fetched or sent again.
#[tokio::test]
async fn a_grpc_unauthenticated_is_the_services_answer() {
    let (metadata, front) = emulators(Duration::from_secs(3600)).await;
    let mut client = BookstoreClient::new(channel(&metadata, &front).build().unwrap());
    create(&mut client, "one").await.unwrap();
    front.reject_next(1);
    let status = create(&mut client, "rejected").await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    create(&mut client, "two").await.unwrap();
    assert_eq!(metadata.requests(AUDIENCE), 1);
}

#[tokio::test]
async fn a_deadline_bounds_the_wait_for_a_token() {
    let (metadata, front) = emulators(Duration::from_secs(3600)).await;
    metadata.fail_with(Fault::Hang);
    let mut client = BookstoreClient::new(channel(&metadata, &front).build().unwrap());
    let mut request = tonic::Request::new(book("late"));
    request.set_timeout(Duration::from_millis(200));
    let started = Instant::now();
    let status = client.create_book(request).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(status.message().contains(AUDIENCE), "{}", status.message());
    metadata.heal();
}

#[tokio::test]
async fn the_token_can_go_in_x_serverless_authorization() {
    let (metadata, front) = emulators(Duration::from_secs(3600)).await;
    let channel = channel(&metadata, &front)
        .header(cloud_run_grpc::AuthHeader::XServerlessAuthorization)
        .build()
        .unwrap();
    create(&mut BookstoreClient::new(channel), "via x-serverless")
        .await
        .unwrap();
    assert_eq!(front.accepted(), 1);
}

#[tokio::test]
async fn the_auth_layer_works_on_another_tower_stack() {
    let (metadata, front) = emulators(Duration::from_secs(3600)).await;
    let cache = cloud_run_grpc::token::TokenCache::new(
        MetadataServer::with_host(metadata.host()),
        AUDIENCE,
    );
    let ca = tonic::transport::Certificate::from_pem(front.ca_certificate_pem());
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(ca)
        .domain_name(HOST);
    let plain = tonic::transport::Endpoint::from_shared(format!("https://{}", front.addr()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let authenticated = tower_layer::Layer::layer(&AuthLayer::new(cache), plain);
    let mut client = BookstoreClient::new(authenticated);
    client.create_book(book("layered")).await.unwrap();
    assert_eq!(front.accepted(), 1);
}

#[tokio::test]
async fn warm_up_connects_and_fetches_at_once() {
    let (metadata, front) = emulators(Duration::from_secs(3600)).await;
    metadata.set_latency(Duration::from_millis(300));
    let channel = channel(&metadata, &front).build().unwrap();
    channel.warm_up().await.unwrap();
    assert_eq!(metadata.requests(AUDIENCE), 1);
    let started = Instant::now();
    create(&mut BookstoreClient::new(channel), "warm")
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "first call after warm-up took {:?}",
        started.elapsed()
    );

    front.shutdown().await;
    let cold = CloudRunChannel::builder(HOST)
        .connect_to("127.0.0.1:9".parse().unwrap())
        .token_source(MetadataServer::with_host(metadata.host()))
        .build()
        .unwrap();
    let error = cold.warm_up().await.unwrap_err();
    assert!(
        matches!(error, cloud_run_grpc::Error::Connect { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn no_public_type_shows_the_token() {
    let (metadata, front) = emulators(Duration::from_secs(3600)).await;
    let channel = channel(&metadata, &front).build().unwrap();
    let mut client = BookstoreClient::new(channel.clone());
    create(&mut client, "secret keeper").await.unwrap();
    let token = channel.token_cache().current().unwrap();
    let secret = token.secret().to_owned();
    let static_source = StaticToken::new(token.clone());
    let shown = [
        format!("{channel:?}"),
        format!("{:?}", channel.token_cache()),
        format!("{token:?}"),
        format!("{static_source:?}"),
        format!("{:?}", AuthLayer::new(channel.token_cache().clone())),
        format!("{:?}", channel_builder_debug(&metadata, &front)),
        format!("{:?}", MetadataServer::with_host(metadata.host())),
        static_source.name(),
    ];
    for text in shown {
        assert!(!text.contains(&secret), "{text}");
        // Not even the signature or payload on their own.
        for part in secret.split('.') {
            assert!(!text.contains(part), "{text}");
        }
    }
}

fn channel_builder_debug(
    metadata: &MetadataEmulator,
    front: &FrontEnd,
) -> cloud_run_grpc::ChannelBuilder {
    channel(metadata, front)
}
