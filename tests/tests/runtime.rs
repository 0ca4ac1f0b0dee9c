//! The runtime against the testkit's emulators, over real sockets on loopback: TLS, RS256
//! tokens from the metadata emulator, and a Cloud-Run-like front end that checks them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cloud_run_grpc::token::{Clock as _, IdTokenSource, ManualClock, MetadataServer, StaticToken};
use cloud_run_grpc::{AuthLayer, CloudRunChannel};
use cloud_run_grpc_examples::MemoryBookstore;
use cloud_run_grpc_examples::pb::{Book, CreateBookRequest, bookstore_client::BookstoreClient};
use cloud_run_grpc_testkit::{CloudRun, CloudRunBuilder, Fault};
use cloud_run_grpc_tests::wait_until;
use tonic::Code;

const HOST: &str = "bookstore.test.run.app";
const AUDIENCE: &str = "https://bookstore.test.run.app";

/// The bookstore behind the emulated Cloud Run for [`HOST`], as configured.
async fn serve(fixture: CloudRunBuilder) -> CloudRun {
    fixture
        .serve(MemoryBookstore::default().routes())
        .await
        .unwrap()
}

/// The fixture with one-hour tokens, on the system's clock.
async fn cloud_run() -> CloudRun {
    serve(CloudRun::builder(HOST)).await
}

/// The fixture on a clock the test moves: one-hour tokens, as Google's, whose lifetimes pass
/// in milliseconds while every request still goes over real sockets.
async fn on_manual_clock() -> (CloudRun, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    (
        serve(CloudRun::builder(HOST).clock(clock.clone())).await,
        clock,
    )
}

fn client(cloud_run: &CloudRun) -> BookstoreClient<CloudRunChannel> {
    BookstoreClient::new(cloud_run.channel())
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
    let cloud_run = cloud_run().await;
    let created = create(&mut client(&cloud_run), "Dune").await.unwrap();
    assert_eq!(created.title, "Dune");
    assert_eq!(cloud_run.front().accepted(), 1);
    assert_eq!(cloud_run.metadata().requests(AUDIENCE), 1);

    let wrong = cloud_run
        .channel_builder()
        .audience("https://someone-else.a.run.app")
        .build()
        .unwrap();
    let status = create(&mut BookstoreClient::new(wrong), "Dune")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(cloud_run.front().rejected(), 1);
    let rejection = cloud_run.front().last_rejection();
    assert!(
        rejection
            .as_deref()
            .unwrap_or_default()
            .contains("someone-else"),
        "{rejection:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_rotate_under_load_with_no_failed_call_and_one_fetch_per_rotation() {
    let (cloud_run, clock) = on_manual_clock().await;
    let cache = cloud_run.channel().token_cache().clone();
    let stop = Arc::new(AtomicBool::new(false));
    let calls: Arc<[AtomicUsize; 8]> = Arc::default();
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let mut client = client(&cloud_run);
            let (stop, calls) = (stop.clone(), calls.clone());
            tokio::spawn(async move {
                let mut failures = Vec::new();
                // Bounded: the loop ends when `stop` is set, and at 100k calls at the latest.
                for n in 0..100_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Err(status) = create(&mut client, &format!("w{i}-{n}")).await {
                        failures.push(status);
                    }
                    calls[i].fetch_add(1, Ordering::Relaxed);
                }
                failures
            })
        })
        .collect();
    // Four hours of one-hour tokens, 200 seconds at a time. Before each step, any refresh that
    // is due has finished (the token has more than the refresh margin left) and every caller
    // has made two calls since, so no call still carries a token the step would expire: the
    // clock jumps, but never in the middle of a call.
    let refreshed = || {
        cache.current().is_some_and(|token| {
            let left = token.expires_at().duration_since(clock.now());
            left.is_ok_and(|left| left > Duration::from_secs(240))
        })
    };
    for _ in 0..4 * 18 {
        wait_until("the refresh", Duration::from_secs(10), refreshed).await;
        let before: Vec<usize> = calls.iter().map(|n| n.load(Ordering::Relaxed)).collect();
        wait_until("two calls per caller", Duration::from_secs(10), || {
            calls
                .iter()
                .zip(&before)
                .all(|(n, before)| n.load(Ordering::Relaxed) >= before + 2)
        })
        .await;
        clock.advance(Duration::from_secs(200));
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let failures = worker.await.unwrap();
        assert!(failures.is_empty(), "failed calls: {failures:?}");
    }
    let minted = cloud_run.metadata().tokens_minted();
    let fetches = cloud_run.metadata().requests(AUDIENCE);
    assert!(
        minted >= 4,
        "only {minted} tokens in four hours of one-hour tokens"
    );
    assert_eq!(fetches, minted, "one fetch per token");
    assert_eq!(
        cloud_run.channel().token_cache().fetches() as usize,
        fetches
    );
    assert_eq!(cloud_run.front().rejected(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_calls_on_a_cold_cache_cause_one_fetch() {
    let cloud_run = serve(CloudRun::builder(HOST).token_latency(Duration::from_millis(100))).await;
    let calls: Vec<_> = (0..1000)
        .map(|i| {
            let mut client = client(&cloud_run);
            tokio::spawn(async move { create(&mut client, &format!("book {i}")).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(cloud_run.metadata().requests(AUDIENCE), 1);
    assert_eq!(cloud_run.front().accepted(), 1000);
}

#[tokio::test]
async fn a_refresh_adds_no_latency_to_calls() {
    // Each fetch takes 700ms of real time; the clock jumps to each token's refresh window,
    // and calls go on while the refresh runs: none may wait for it.
    let fetch = Duration::from_millis(700);
    let (cloud_run, clock) = on_manual_clock().await;
    cloud_run.metadata().set_latency(fetch);
    let mut client = client(&cloud_run);
    let cache = cloud_run.channel().token_cache().clone();
    create(&mut client, "first").await.unwrap(); // the cold fetch waits, once
    let mut slowest = Duration::ZERO;
    for _ in 0..2 {
        let token = cache.current().unwrap();
        // Past any refresh time (at most 3m45s before `exp`), before the token stops being sent.
        clock.set(token.expires_at() - Duration::from_secs(200));
        let started = Instant::now();
        // Bounded: the refresh takes 700ms; give it 10s.
        while cache.current().as_ref() == Some(&token) {
            assert!(started.elapsed() < Duration::from_secs(10), "no refresh");
            let call = Instant::now();
            create(&mut client, "again").await.unwrap();
            slowest = slowest.max(call.elapsed());
        }
    }
    assert_eq!(cloud_run.metadata().requests(AUDIENCE), 3);
    // A call that waited for a fetch would take the fetch's 700ms or more; loopback calls take
    // a few milliseconds, and this bound leaves room for a loaded machine.
    assert!(slowest < fetch, "slowest call took {slowest:?}");
}

#[tokio::test]
async fn failures_while_the_token_is_valid_fail_no_call() {
    let (cloud_run, clock) = on_manual_clock().await;
    let mut client = client(&cloud_run);
    create(&mut client, "first").await.unwrap();
    let expires_at = cloud_run
        .channel()
        .token_cache()
        .current()
        .unwrap()
        .expires_at();
    cloud_run
        .metadata()
        .fail_with(Fault::Status(503, "try later".into()));
    // From before the refresh window to just before the token stops being sent (10s before
    // `exp`), five seconds at a time: every refresh fails, every call goes through.
    let mut at = expires_at - Duration::from_secs(240);
    while at < expires_at - Duration::from_secs(15) {
        clock.set(at);
        create(&mut client, "during the outage").await.unwrap();
        at += Duration::from_secs(5);
    }
    let tries = cloud_run.metadata().requests(AUDIENCE) - 1;
    assert!(tries >= 3, "refreshes were not retried: {tries}");
    // Backoff: at most one try per clock step (the longest backoff is one step).
    assert!(tries <= 46, "{tries} tries in 45 steps");
    assert_eq!(cloud_run.front().rejected(), 0);
}

#[tokio::test]
async fn without_a_valid_token_calls_fail_fast_and_recover_when_the_source_is_back() {
    let (cloud_run, clock) = on_manual_clock().await;
    let metadata = cloud_run.metadata();
    metadata.shutdown().await;
    let mut client = client(&cloud_run);
    for _ in 0..5 {
        let started = Instant::now();
        let status = create(&mut client, "no token").await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        let message = status.message();
        assert!(message.contains(AUDIENCE), "{message}");
        assert!(
            message.contains(&format!("metadata server at {}", metadata.host())),
            "{message}"
        );
    }
    let front = cloud_run.front();
    assert_eq!(
        front.accepted() + front.rejected(),
        0,
        "nothing may be sent without a token"
    );
    assert_eq!(
        cloud_run.channel().token_cache().fetches(),
        1,
        "backing off"
    );

    metadata.restart().await.unwrap();
    // The longest backoff later, the next call fetches again and goes through.
    clock.advance(Duration::from_secs(5));
    let book = create(&mut client, "token again").await.unwrap();
    assert_eq!(book.title, "token again");
    assert_eq!(cloud_run.channel().token_cache().fetches(), 2);
    let token = cloud_run.channel().token_cache().current().unwrap();
    assert!(!format!("{client:?}").contains(token.secret()));
}

/// The front end refuses a token it accepted a moment ago (HTTP 401, an HTML page): the call
/// is sent once more, with one newly fetched token, and succeeds; even a plain tonic client's.
#[tokio::test]
async fn a_refused_token_is_healed_by_one_retry_with_one_new_token() {
    let cloud_run = cloud_run().await;
    let mut client = client(&cloud_run);
    create(&mut client, "one").await.unwrap();
    let first = cloud_run.channel().token_cache().current().unwrap();
    // The next fetch mints a new token (the metadata server would hand back its cached one).
    cloud_run.metadata().clear_token_cache();
    cloud_run.front().reject_next(1);
    let book = create(&mut client, "refused, then sent again")
        .await
        .unwrap();
    assert_eq!(book.title, "refused, then sent again");
    assert_eq!(cloud_run.front().rejected(), 1);
    assert_eq!(cloud_run.front().accepted(), 2);
    assert_eq!(cloud_run.metadata().requests(AUDIENCE), 2, "one new token");
    assert_ne!(cloud_run.channel().token_cache().current().unwrap(), first);
}

#[tokio::test]
async fn a_deadline_bounds_the_wait_for_a_token() {
    let cloud_run = cloud_run().await;
    cloud_run.metadata().fail_with(Fault::Hang);
    let mut request = tonic::Request::new(book("late"));
    request.set_timeout(Duration::from_millis(200));
    let started = Instant::now();
    let status = client(&cloud_run).create_book(request).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(status.message().contains(AUDIENCE), "{}", status.message());
}

#[tokio::test]
async fn the_token_can_go_in_x_serverless_authorization() {
    let cloud_run = cloud_run().await;
    let channel = cloud_run
        .channel_builder()
        .header(cloud_run_grpc::AuthHeader::XServerlessAuthorization)
        .build()
        .unwrap();
    create(&mut BookstoreClient::new(channel), "via x-serverless")
        .await
        .unwrap();
    assert_eq!(cloud_run.front().accepted(), 1);
}

#[tokio::test]
async fn the_auth_layer_works_on_another_tower_stack() {
    let cloud_run = cloud_run().await;
    let cache = cloud_run_grpc::token::TokenCache::new(cloud_run.token_source(), AUDIENCE);
    let ca = tonic::transport::Certificate::from_pem(cloud_run.front().ca_certificate_pem());
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(ca)
        .domain_name(HOST);
    let address = format!("https://{}", cloud_run.front().addr());
    let plain = tonic::transport::Endpoint::from_shared(address)
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let authenticated = tower_layer::Layer::layer(&AuthLayer::new(cache), plain);
    let mut client = BookstoreClient::new(authenticated);
    client.create_book(book("layered")).await.unwrap();
    assert_eq!(cloud_run.front().accepted(), 1);
}

#[tokio::test]
async fn warm_up_connects_and_fetches_at_once() {
    let cloud_run = serve(CloudRun::builder(HOST).token_latency(Duration::from_millis(300))).await;
    let channel = cloud_run.channel();
    channel.warm_up().await.unwrap();
    assert_eq!(cloud_run.metadata().requests(AUDIENCE), 1);
    let started = Instant::now();
    create(&mut BookstoreClient::new(channel), "warm")
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "first call after warm-up took {:?}",
        started.elapsed()
    );

    let cold = CloudRunChannel::builder(HOST)
        .connect_to("127.0.0.1:9".parse().unwrap())
        .token_source(cloud_run.token_source())
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
    let cloud_run = cloud_run().await;
    let channel = cloud_run.channel();
    create(&mut BookstoreClient::new(channel.clone()), "secret keeper")
        .await
        .unwrap();
    let token = channel.token_cache().current().unwrap();
    let secret = token.secret().to_owned();
    let static_source = StaticToken::new(token.clone());
    let shown = [
        format!("{channel:?}"),
        format!("{:?}", channel.token_cache()),
        format!("{token:?}"),
        format!("{static_source:?}"),
        format!("{:?}", AuthLayer::new(channel.token_cache().clone())),
        format!("{:?}", cloud_run.channel_builder()),
        format!(
            "{:?}",
            MetadataServer::with_host(cloud_run.metadata().host())
        ),
        format!("{cloud_run:?}"),
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
