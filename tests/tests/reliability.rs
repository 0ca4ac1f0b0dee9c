//! Reliability: the channel keeps working through token rotations, server restarts, GOAWAY,
//! metadata-server faults and a front end whose clock runs ahead. Everything runs on loopback
//! against the testkit's emulators, and every loop is bounded by a count or a deadline.
//! `--nocapture` shows the soak's figures (calls, rotations, fetches, resident memory).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use cloud_run_grpc::CloudRunChannel;
use cloud_run_grpc::token::{MetadataServer, RefreshPolicy};
use cloud_run_grpc_examples::SlowBookstore;
use cloud_run_grpc_examples::pb::bookstore_client::BookstoreClient;
use cloud_run_grpc_examples::pb::bookstore_cloud_run;
use cloud_run_grpc_examples::pb::{Book, CreateBookRequest, GetBookRequest};
use cloud_run_grpc_testkit::{Fault, FrontEnd, MetadataEmulator};
use tonic::{Code, Response, Status};

const HOST: &str = "bookstore.test.run.app";
const AUDIENCE: &str = "https://bookstore.test.run.app";

struct Emulators {
    metadata: MetadataEmulator,
    front: FrontEnd,
    store: SlowBookstore,
}

impl Emulators {
    async fn start(lifetime: Duration) -> Emulators {
        let metadata = MetadataEmulator::builder()
            .token_lifetime(lifetime)
            .start()
            .await
            .unwrap();
        let store = SlowBookstore::default();
        let front = FrontEnd::builder(HOST)
            .verifier(metadata.verifier())
            .serve(store.routes())
            .await
            .unwrap();
        Emulators {
            metadata,
            front,
            store,
        }
    }

    fn source(&self) -> MetadataServer {
        MetadataServer::with_host(self.metadata.host())
    }

    fn channel(&self) -> cloud_run_grpc::ChannelBuilder {
        CloudRunChannel::builder(HOST)
            .connect_to(self.front.addr())
            .ca_certificate(self.front.ca_certificate_pem())
            .token_source(self.source())
    }
}

/// Adds a book and returns its id, for `GetBook` calls that read without growing the store.
async fn seed(client: &mut BookstoreClient<CloudRunChannel>) -> String {
    let book = Book {
        title: "Reliable".into(),
        author: "A. Author".into(),
        ..Book::default()
    };
    client
        .create_book(CreateBookRequest { book: Some(book) })
        .await
        .unwrap()
        .into_inner()
        .id
}

async fn get(client: &mut BookstoreClient<CloudRunChannel>, id: &str) -> Result<Book, Status> {
    client
        .get_book(GetBookRequest { id: id.into() })
        .await
        .map(Response::into_inner)
}

/// Resident memory of this process, in KiB (Linux; `None` elsewhere).
fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `calls` calls from 16 concurrent callers across at least `rotations` token rotations:
/// none fails, each rotation costs one fetch, and resident memory stays flat.
async fn soak(calls: usize, rotations: usize) {
    // Two-second tokens (the shortest the emulator's whole-second `exp` allows with room to
    // refresh): the cache refreshes a third of a token's life before `exp`, about every second.
    let emulators = Emulators::start(Duration::from_secs(2)).await;
    let channel = emulators.channel().build().unwrap();
    let mut client = BookstoreClient::new(channel.clone());
    let id = seed(&mut client).await;
    // Warm up, so that what the first calls allocate for good (connection buffers, the
    // allocator's arenas) is counted at the start.
    for _ in 0..500 {
        get(&mut client, &id).await.unwrap();
    }
    let minted_before = emulators.metadata.tokens_minted();
    let fetches_before = emulators.metadata.requests(AUDIENCE);
    let rss_start = resident_kib();

    let made = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let (mut client, id) = (client.clone(), id.clone());
            let (made, done) = (made.clone(), done.clone());
            tokio::spawn(async move {
                let mut failures = Vec::new();
                // Bounded: ends when the main task says so, and after `calls` calls at most.
                for _ in 0..calls {
                    if done.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Err(status) = get(&mut client, &id).await {
                        failures.push(status);
                    }
                    made.fetch_add(1, Ordering::Relaxed);
                }
                failures
            })
        })
        .collect();
    let started = Instant::now();
    let limit = Duration::from_secs(300);
    loop {
        let rotated = emulators.metadata.tokens_minted() - minted_before;
        if made.load(Ordering::Relaxed) >= calls && rotated >= rotations {
            break;
        }
        assert!(
            started.elapsed() < limit,
            "after {limit:?}: {} calls, {rotated} rotations",
            made.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for caller in callers {
        failures.extend(caller.await.unwrap());
    }
    let elapsed = started.elapsed();
    let rss_end = resident_kib();
    let made = made.load(Ordering::Relaxed);
    let rotated = emulators.metadata.tokens_minted() - minted_before;
    let fetches = emulators.metadata.requests(AUDIENCE) - fetches_before;
    eprintln!(
        "soak: {made} calls in {elapsed:?}, {rotated} rotations, {fetches} fetches, \
         {} failures; VmRSS {rss_start:?} KiB at the start, {rss_end:?} KiB at the end",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed calls, the first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(made >= calls && rotated >= rotations);
    assert!(
        fetches.abs_diff(rotated) <= 1,
        "{fetches} fetches for {rotated} rotations"
    );
    assert_eq!(emulators.front.rejected(), 0);
    if let (Some(start), Some(end)) = (rss_start, rss_end) {
        // A leak of even 1 KiB per call would show as 100 MiB here; what allocators keep in
        // reserve stays far below the bound.
        assert!(
            end < start + 64 * 1024,
            "resident memory grew from {start} KiB to {end} KiB"
        );
    }
}

/// About 30 seconds in a debug build on two cores (the rotations alone take 20).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_100k_calls_across_20_rotations() {
    soak(100_000, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_fails_only_calls_in_flight_and_the_same_client_reconnects() {
    let emulators = Emulators::start(Duration::from_secs(3600)).await;
    let mut client = BookstoreClient::new(emulators.channel().build().unwrap());
    let id = seed(&mut client).await;
    get(&mut client, &id).await.unwrap();
    assert_eq!(emulators.front.connections(), 1);

    // Eight calls the server holds, then the server dies under them.
    emulators.store.set_delay(Duration::from_secs(30));
    let in_flight: Vec<_> = (0..8)
        .map(|_| {
            let (mut client, id) = (client.clone(), id.clone());
            tokio::spawn(async move { get(&mut client, &id).await })
        })
        .collect();
    let waiting = Instant::now();
    while emulators.store.in_progress() < 8 {
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "calls never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    emulators.front.restart().await.unwrap();
    emulators.store.set_delay(Duration::ZERO);
    for call in in_flight {
        let status = call.await.unwrap().unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }

    // The same client, on a new connection to the same port.
    for _ in 0..10 {
        get(&mut client, &id).await.unwrap();
    }
    assert_eq!(emulators.front.connections(), 2);

    // While nothing listens, calls fail at once with UNAVAILABLE; when it is back they work.
    emulators.front.stop().await;
    let started = Instant::now();
    let status = get(&mut client, &id).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    emulators.front.restart().await.unwrap();
    get(&mut client, &id).await.unwrap();
    assert_eq!(emulators.front.connections(), 3);
    assert_eq!(
        emulators.metadata.requests(AUDIENCE),
        1,
        "the token outlives the connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_loses_no_call() {
    let emulators = Emulators::start(Duration::from_secs(3600)).await;
    let channel = emulators.channel().build().unwrap();
    let id = seed(&mut BookstoreClient::new(channel.clone())).await;
    // A call the server refused unprocessed while draining (a stream opened as GOAWAY
    // arrived) is sent again by the channel, for the wrapper and a plain tonic client alike;
    // calls already in flight finish.
    let books = bookstore_cloud_run::Bookstore::new(channel);
    // Calls take 20ms on the server, so that some are always in flight when GOAWAY comes.
    emulators.store.set_delay(Duration::from_millis(20));
    let done = Arc::new(AtomicBool::new(false));
    // Callers 0..4 use the plain tonic client.
    let callers: Vec<_> = (0..16)
        .map(|caller| {
            let (books, id, done) = (books.clone(), id.clone(), done.clone());
            tokio::spawn(async move {
                let mut plain = (caller < 4).then(|| books.client());
                let (mut made, mut failures) = (0, Vec::new());
                // Bounded: ends when the main task says so, or after 100,000 calls.
                for _ in 0..100_000 {
                    if done.load(Ordering::Relaxed) {
                        break;
                    }
                    let request = GetBookRequest { id: id.clone() };
                    let result = match &mut plain {
                        Some(client) => client.get_book(request).await.map(Response::into_inner),
                        None => books.get_book(request).await,
                    };
                    if let Err(status) = result {
                        failures.push(status);
                    }
                    made += 1;
                }
                (made, failures)
            })
        })
        .collect();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(emulators.store.in_progress() > 0, "no call was in flight");
        emulators.front.goaway().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    done.store(true, Ordering::Relaxed);
    let (mut made, mut failures) = (0, Vec::new());
    for caller in callers {
        let (n, f) = caller.await.unwrap();
        made += n;
        failures.extend(f);
    }
    println!("GOAWAY x5: {made} calls");
    assert!(
        failures.is_empty(),
        "{} of {made} calls failed, the first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(made > 100, "{made} calls");
    let connections = emulators.front.connections();
    assert!(
        (6..=8).contains(&connections),
        "{connections} connections: expected one new connection per GOAWAY"
    );
}

/// The metadata server fails with `fault` from just after the first token was fetched: calls
/// keep working while that token is valid, wait out the failing fetches once it has expired and
/// fail `UNAVAILABLE` at their deadline, saying why (`cause`), and work again soon after the
/// server heals.
async fn fault_during_rotation(fault: Fault, cause: &str) {
    let emulators = Emulators::start(Duration::from_secs(4)).await;
    let channel = emulators
        .channel()
        // A hanging metadata server costs a fetch this long, not the call its deadline.
        .token_source(emulators.source().timeout(Duration::from_millis(300)))
        .refresh_policy(RefreshPolicy::default().max_backoff(Duration::from_millis(400)))
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut client = BookstoreClient::new(channel.clone());
    let id = seed(&mut client).await;
    let token = channel.token_cache().current().unwrap();
    let expires_at = token.expires_at();
    let fetches_before = emulators.metadata.requests(AUDIENCE);
    emulators.metadata.fail_with(fault.clone());

    // The token is sent until a tenth of its life (at most 0.4s here) before `exp`; the
    // refreshes from two thirds of its life on all fail. Bounded by the token's expiry.
    let mut calls = 0;
    while SystemTime::now() + Duration::from_millis(600) < expires_at {
        get(&mut client, &id).await.unwrap();
        calls += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(calls > 20, "{calls} calls");
    let refreshes = emulators.metadata.requests(AUDIENCE) - fetches_before;
    assert!(refreshes >= 1, "{fault:?}: no refresh was tried");

    // Expired and no new one: calls fail, each within its deadline, none reaches the server.
    while SystemTime::now() < expires_at {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..5 {
        let started = Instant::now();
        let status = get(&mut client, &id).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{fault:?}: {status:?}");
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{fault:?}: a call took {:?}",
            started.elapsed()
        );
        let message = status.message();
        assert!(
            message.contains(AUDIENCE) && message.contains(cause),
            "{message}"
        );
        assert!(!status.message().contains(token.secret()));
    }
    assert_eq!(emulators.front.rejected(), 0, "an expired token was sent");
    // Backoff, not a fetch loop: at most one try per 50ms (the smallest backoff, halved).
    let tries = emulators.metadata.requests(AUDIENCE) - fetches_before;
    assert!(tries <= 100, "{fault:?}: {tries} fetches during the outage");

    // Healed: calls work again within the longest backoff and one fetch.
    emulators.metadata.heal();
    let healed = Instant::now();
    loop {
        match get(&mut client, &id).await {
            Ok(_) => break,
            Err(status) => {
                assert!(
                    healed.elapsed() < Duration::from_secs(3),
                    "{fault:?}: still failing after healing: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert_ne!(channel.token_cache().current(), Some(token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_metadata_server_during_rotation() {
    fault_during_rotation(Fault::Hang, "did not answer within 300ms").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_server_500s_during_rotation() {
    fault_during_rotation(Fault::Status(500, "internal error".into()), "HTTP 500").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_server_garbage_during_rotation() {
    fault_during_rotation(Fault::Garbage, "unusable token").await;
}

#[tokio::test]
async fn a_front_end_clock_ahead_rejects_our_token_and_the_wrapper_retries_with_a_new_one() {
    let emulators = Emulators::start(Duration::from_secs(120)).await;
    let channel = emulators.channel().build().unwrap();
    let bookstore = bookstore_cloud_run::Bookstore::new(channel.clone());
    let book = Book {
        title: "Skewed".into(),
        ..Book::default()
    };
    let request = CreateBookRequest { book: Some(book) };
    bookstore.create_book(request.clone()).await.unwrap();
    let first = channel.token_cache().current().unwrap();

    // Ten minutes ahead, the front end sees our two-minute token as expired; we do not.
    emulators.front.set_clock_skew(Duration::from_secs(600));
    assert_eq!(channel.token_cache().current(), Some(first.clone()));
    // Like Google's, the emulator hands out its cached token again while it has more than its
    // reuse margin of life left — here the very token just rejected, so the retry would be
    // rejected too. Forgetting it, with hour-long tokens from now on, stands for a metadata
    // server that already holds a token the front end accepts.
    emulators.metadata.clear_token_cache();
    emulators
        .metadata
        .set_token_lifetime(Duration::from_secs(3600));

    let created = bookstore.create_book(request).await.unwrap();
    assert_eq!(created.title, "Skewed");
    assert_eq!(emulators.front.rejected(), 1, "one rejection, then success");
    assert_eq!(emulators.metadata.requests(AUDIENCE), 2);
    assert_eq!(channel.token_cache().fetches(), 2);
    let second = channel.token_cache().current().unwrap();
    assert_ne!(second, first);
    assert!(second.expires_at() > first.expires_at());
}
