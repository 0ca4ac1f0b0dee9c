//! Reliability: the channel keeps working through token rotations, server restarts, GOAWAY,
//! metadata-server faults and a front end whose clock runs ahead. Everything runs on loopback
//! against the testkit's emulators, and every loop is bounded by a count or a deadline.
//!
//! The 100k-call soak takes about 30 seconds of real token rotations, so it is opt-in (CI runs
//! it in a step of its own): `cargo test -p cloud-run-grpc-tests --test reliability --
//! --ignored --nocapture` runs it and shows its figures (calls, rotations, fetches, resident
//! memory).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cloud_run_grpc::CloudRunChannel;
use cloud_run_grpc::token::{ManualClock, RefreshPolicy};
use cloud_run_grpc_examples::SlowBookstore;
use cloud_run_grpc_examples::pb::bookstore_client::BookstoreClient;
use cloud_run_grpc_examples::pb::bookstore_cloud_run;
use cloud_run_grpc_examples::pb::{Book, CreateBookRequest, GetBookRequest};
use cloud_run_grpc_testkit::{CloudRun, CloudRunBuilder, Fault};
use cloud_run_grpc_tests::wait_until;
use tonic::{Code, Response, Status};

const HOST: &str = "bookstore.test.run.app";
const AUDIENCE: &str = "https://bookstore.test.run.app";

/// A bookstore whose `GetBook` can be held, behind the emulated Cloud Run.
struct Emulators {
    cloud_run: CloudRun,
    store: SlowBookstore,
}

impl Emulators {
    async fn start(fixture: CloudRunBuilder) -> Emulators {
        let store = SlowBookstore::default();
        let cloud_run = fixture.serve(store.routes()).await.unwrap();
        Emulators { cloud_run, store }
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
    let emulators =
        Emulators::start(CloudRun::builder(HOST).token_lifetime(Duration::from_secs(2))).await;
    let (metadata, front) = (emulators.cloud_run.metadata(), emulators.cloud_run.front());
    let mut client = BookstoreClient::new(emulators.cloud_run.channel());
    let id = seed(&mut client).await;
    // Warm up, so that what the first calls allocate for good (connection buffers, the
    // allocator's arenas) is counted at the start.
    for _ in 0..500 {
        get(&mut client, &id).await.unwrap();
    }
    let minted_before = metadata.tokens_minted();
    let fetches_before = metadata.requests(AUDIENCE);
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
    wait_until(
        "the soak's calls and rotations",
        Duration::from_secs(300),
        || {
            made.load(Ordering::Relaxed) >= calls
                && metadata.tokens_minted() - minted_before >= rotations
        },
    )
    .await;
    done.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for caller in callers {
        failures.extend(caller.await.unwrap());
    }
    let elapsed = started.elapsed();
    let rss_end = resident_kib();
    let made = made.load(Ordering::Relaxed);
    let rotated = metadata.tokens_minted() - minted_before;
    let fetches = metadata.requests(AUDIENCE) - fetches_before;
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
    assert_eq!(front.rejected(), 0);
    if let (Some(start), Some(end)) = (rss_start, rss_end) {
        // A leak of even 1 KiB per call would show as 100 MiB here; what allocators keep in
        // reserve stays far below the bound.
        assert!(
            end < start + 64 * 1024,
            "resident memory grew from {start} KiB to {end} KiB"
        );
    }
}

/// About 30 seconds in a debug build on two idle cores (the rotations alone take 20), a few
/// minutes on a busy machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a 30-second soak in real time; CI runs it in a step of its own (`-- --ignored`)"]
async fn soak_100k_calls_across_20_rotations() {
    soak(100_000, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_fails_only_calls_in_flight_and_the_same_client_reconnects() {
    let emulators = Emulators::start(CloudRun::builder(HOST)).await;
    let front = emulators.cloud_run.front();
    let mut client = BookstoreClient::new(emulators.cloud_run.channel());
    let id = seed(&mut client).await;
    get(&mut client, &id).await.unwrap();
    assert_eq!(front.connections(), 1);

    // Eight calls the server holds, then the server dies under them.
    emulators.store.set_delay(Duration::from_secs(30));
    let in_flight: Vec<_> = (0..8)
        .map(|_| {
            let (mut client, id) = (client.clone(), id.clone());
            tokio::spawn(async move { get(&mut client, &id).await })
        })
        .collect();
    wait_until(
        "eight calls held by the server",
        Duration::from_secs(10),
        || emulators.store.in_progress() == 8,
    )
    .await;
    front.restart().await.unwrap();
    emulators.store.set_delay(Duration::ZERO);
    for call in in_flight {
        let status = call.await.unwrap().unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }

    // The same client, on a new connection to the same port.
    for _ in 0..10 {
        get(&mut client, &id).await.unwrap();
    }
    assert_eq!(front.connections(), 2);

    // While nothing listens, calls fail at once with UNAVAILABLE; when it is back they work.
    front.stop().await;
    let started = Instant::now();
    let status = get(&mut client, &id).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    front.restart().await.unwrap();
    get(&mut client, &id).await.unwrap();
    assert_eq!(front.connections(), 3);
    assert_eq!(
        emulators.cloud_run.metadata().requests(AUDIENCE),
        1,
        "the token outlives the connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_loses_no_call() {
    let emulators = Emulators::start(CloudRun::builder(HOST)).await;
    let channel = emulators.cloud_run.channel();
    let id = seed(&mut BookstoreClient::new(channel.clone())).await;
    // A call the server refused unprocessed while draining (a stream opened as GOAWAY
    // arrived) is sent again by the channel, for the wrapper and a plain tonic client alike;
    // calls already in flight finish.
    let books = bookstore_cloud_run::Bookstore::new(channel);
    // Calls take 20ms on the server, so that some are always in flight when GOAWAY comes.
    emulators.store.set_delay(Duration::from_millis(20));
    let done = Arc::new(AtomicBool::new(false));
    let completed = Arc::new(AtomicUsize::new(0));
    // Callers 0..4 use the plain tonic client.
    let callers: Vec<_> = (0..16)
        .map(|caller| {
            let (books, id) = (books.clone(), id.clone());
            let (done, completed) = (done.clone(), completed.clone());
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
                    completed.fetch_add(1, Ordering::Relaxed);
                }
                (made, failures)
            })
        })
        .collect();
    // Five GOAWAYs, each once calls have gone through on the current connection and while
    // some are in flight on it; then calls on the last connection.
    for round in 0..=5 {
        let since = completed.load(Ordering::Relaxed);
        wait_until("calls in flight", Duration::from_secs(10), || {
            completed.load(Ordering::Relaxed) >= since + 50 && emulators.store.in_progress() > 0
        })
        .await;
        if round < 5 {
            emulators.cloud_run.front().goaway().await.unwrap();
        }
    }
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
    let connections = emulators.cloud_run.front().connections();
    assert!(
        (6..=8).contains(&connections),
        "{connections} connections: expected one new connection per GOAWAY"
    );
}

/// The metadata server fails with `fault` from just after the first token was fetched: calls
/// keep working while that token is valid, fail fast (and bounded by their deadline) once it
/// has expired, saying why (`cause`), and work again soon after the server heals. The token's
/// hour passes on a manual clock; fetches and calls are real.
async fn fault_during_rotation(fault: Fault, cause: &str) {
    let clock = Arc::new(ManualClock::new());
    let emulators = Emulators::start(CloudRun::builder(HOST).clock(clock.clone())).await;
    let (metadata, front) = (emulators.cloud_run.metadata(), emulators.cloud_run.front());
    let channel = emulators
        .cloud_run
        .channel_builder()
        // A hanging metadata server costs a fetch this long, not the call its deadline.
        .token_source(
            emulators
                .cloud_run
                .token_source()
                .timeout(Duration::from_millis(300)),
        )
        .refresh_policy(RefreshPolicy::default().max_backoff(Duration::from_millis(400)))
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut client = BookstoreClient::new(channel.clone());
    let id = seed(&mut client).await;
    let token = channel.token_cache().current().unwrap();
    let expires_at = token.expires_at();
    let fetches_before = metadata.requests(AUDIENCE);
    metadata.fail_with(fault.clone());

    // The token is sent until 10s before `exp`; the refreshes from at most 3m45s before it all
    // fail. From before the refresh window to the last second of use, five seconds at a time.
    let mut at = expires_at - Duration::from_secs(240);
    while at < expires_at - Duration::from_secs(15) {
        clock.set(at);
        get(&mut client, &id).await.unwrap();
        at += Duration::from_secs(5);
    }
    let refreshes = metadata.requests(AUDIENCE) - fetches_before;
    assert!(refreshes >= 1, "{fault:?}: no refresh was tried");

    // Expired and no new one: calls fail, each within its deadline, none reaches the server.
    clock.set(expires_at);
    for _ in 0..5 {
        let started = Instant::now();
        let status = get(&mut client, &id).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{fault:?}: {status:?}"
        );
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
    assert_eq!(front.rejected(), 0, "an expired token was sent");
    // Backoff, not a fetch loop: at most one try per clock step, and one after expiry.
    let tries = metadata.requests(AUDIENCE) - fetches_before;
    assert!(
        tries <= 47,
        "{fault:?}: {tries} fetches in 45 steps and 5 calls"
    );

    // Healed: once the longest backoff has passed, the next call fetches and goes through.
    metadata.heal();
    clock.advance(Duration::from_secs(1));
    get(&mut client, &id).await.unwrap();
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
    let emulators =
        Emulators::start(CloudRun::builder(HOST).token_lifetime(Duration::from_secs(120))).await;
    let (metadata, front) = (emulators.cloud_run.metadata(), emulators.cloud_run.front());
    let channel = emulators.cloud_run.channel();
    let bookstore = bookstore_cloud_run::Bookstore::new(channel.clone());
    let book = Book {
        title: "Skewed".into(),
        ..Book::default()
    };
    let request = CreateBookRequest { book: Some(book) };
    bookstore.create_book(request.clone()).await.unwrap();
    let first = channel.token_cache().current().unwrap();

    // Ten minutes ahead, the front end sees our two-minute token as expired; we do not.
    front.set_clock_skew(Duration::from_secs(600));
    assert_eq!(channel.token_cache().current(), Some(first.clone()));
    // Like Google's, the emulator hands out its cached token again while it has more than its
    // reuse margin of life left — here the very token just rejected, so the retry would be
    // rejected too. Forgetting it, with hour-long tokens from now on, stands for a metadata
    // server that already holds a token the front end accepts.
    metadata.clear_token_cache();
    metadata.set_token_lifetime(Duration::from_secs(3600));

    let created = bookstore.create_book(request).await.unwrap();
    assert_eq!(created.title, "Skewed");
    assert_eq!(front.rejected(), 1, "one rejection, then success");
    assert_eq!(metadata.requests(AUDIENCE), 2);
    assert_eq!(channel.token_cache().fetches(), 2);
    let second = channel.token_cache().current().unwrap();
    assert_ne!(second, first);
    assert!(second.expires_at() > first.expires_at());
}
