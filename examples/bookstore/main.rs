//! The bookstore, end to end on one machine: no Google account, no protoc, no network.
//!
//! ```text
//! cargo run --example bookstore                    # against in-process emulators
//! cargo run --example bookstore -- --federation    # the same, tokens by workload identity federation
//! cargo run --example bookstore -- --host HOST     # against a real Cloud Run service
//! ```
//!
//! Without `--host` it starts, in this process, the testkit's emulated Cloud Run (`CloudRun`): a
//! metadata-server emulator minting RS256 ID tokens that live 8 seconds, so that a refresh
//! shows, and a TLS front end for the bookstore's production host that checks them. The
//! `Bookstore` client below calls it through the channel the fixture hands back, as a test
//! would. Then it makes every kind of call and keeps calling through token refreshes, printing
//! as it goes. Exits non-zero if anything fails. With `--federation` the tokens come instead
//! from an `external_account` file, through emulated STS and IAM Credentials (`federation.rs`).

mod federation;

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use cloud_run_grpc::{CloudRunChannel, cloud_run_client};
use cloud_run_grpc_examples::MemoryBookstore;
use cloud_run_grpc_examples::pb::{
    self, Book, ChatMessage, CreateBookRequest, GetBookRequest, ListBooksRequest,
};
use cloud_run_grpc_testkit::CloudRun;
use tokio_stream::StreamExt as _;

/// The bookstore on Cloud Run.
#[cloud_run_client(
    host = "bookstore-abc123-ew.a.run.app",
    service = pb::bookstore_cloud_run::Bookstore
)]
pub struct Bookstore;

/// The deadline of every call.
const TIMEOUT: Duration = Duration::from_secs(10);

type Failure = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let mode = match parse_args() {
        Ok(mode) => mode,
        Err(usage) => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start Tokio: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(mode)) {
        Ok(()) => {
            println!("\nall calls succeeded");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("\nFAILED: {error}");
            ExitCode::FAILURE
        }
    }
}

/// What to call, and where its tokens come from.
enum Mode {
    /// The emulators, tokens from the metadata server or, with `federation`, by federation.
    Emulated { federation: bool },
    /// A real service, tokens from Application Default Credentials.
    Host(String),
}

fn parse_args() -> Result<Mode, String> {
    let usage = "usage: bookstore [--federation | --host HOST]\n  without options: runs against in-process emulators\n  --federation: the same, with ID tokens by workload identity federation\n  --host HOST: calls the bookstore service deployed on Cloud Run at HOST";
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next(), args.next()) {
        (None, _, _) => Ok(Mode::Emulated { federation: false }),
        (Some("--federation"), None, _) => Ok(Mode::Emulated { federation: true }),
        (Some("--host"), Some(host), None) => Ok(Mode::Host(host)),
        _ => Err(usage.into()),
    }
}

async fn run(mode: Mode) -> Result<(), Failure> {
    // Kept until the end of `run`: dropping them stops the emulators.
    let (books, cloud_run, federation) = match mode {
        Mode::Host(host) => {
            println!("calling https://{host} with Application Default Credentials");
            let channel = CloudRunChannel::builder(host).timeout(TIMEOUT).build()?;
            (Bookstore::with_channel(channel), None, None)
        }
        Mode::Emulated { federation: false } => {
            let cloud_run = emulated_cloud_run(None).await?;
            (
                Bookstore::with_channel(cloud_run.channel()),
                Some(cloud_run),
                None,
            )
        }
        Mode::Emulated { federation: true } => {
            let federation = federation::Federation::start(TOKEN_LIFETIME, FETCH_LATENCY).await?;
            let cloud_run = emulated_cloud_run(Some(&federation)).await?;
            let channel = cloud_run
                .channel_builder()
                .token_source(federation.token_source()?)
                .build()?;
            (
                Bookstore::with_channel(channel),
                Some(cloud_run),
                Some(federation),
            )
        }
    };
    println!("client: {books:?}");
    let started = Instant::now();
    books.channel().warm_up().await?;
    let token = books
        .channel()
        .token_cache()
        .current()
        .ok_or("warm_up left no token")?;
    println!(
        "warm_up: connected and fetched an ID token at once in {:?} (token expires in {:.1}s)\n",
        started.elapsed(),
        seconds_until(token.expires_at())
    );

    println!("== unary");
    let mut created = Vec::new();
    for (title, author) in [
        ("Dune", "Frank Herbert"),
        ("Solaris", "Stanisław Lem"),
        ("Kindred", "Octavia E. Butler"),
    ] {
        let book = books
            .create_book(CreateBookRequest {
                book: Some(book(title, author)),
            })
            .await?;
        println!(
            "create_book  -> {} {:?} by {}",
            book.id, book.title, book.author
        );
        created.push(book);
    }
    let fetched = books
        .get_book(GetBookRequest {
            id: created[0].id.clone(),
        })
        .await?;
    println!("get_book     -> {} {:?}", fetched.id, fetched.title);

    println!("\n== server streaming");
    let mut listed = books
        .list_books(ListBooksRequest {
            author: String::new(),
            limit: 10,
        })
        .await?;
    while let Some(book) = listed.next().await {
        let book = book?;
        println!("list_books   <- {} {:?}", book.id, book.title);
    }

    println!("\n== client streaming");
    let batch = vec![
        book("Neuromancer", "William Gibson"),
        book("Hyperion", "Dan Simmons"),
    ];
    let uploaded = books.upload_books(tokio_stream::iter(batch)).await?;
    println!("upload_books -> {} books stored", uploaded.count);

    println!("\n== bidirectional streaming");
    let said = ["hello", "any Lem in stock?"].map(|text| ChatMessage {
        from: "reader".into(),
        text: text.into(),
    });
    let mut replies = books.chat(tokio_stream::iter(said)).await?;
    while let Some(reply) = replies.next().await {
        let reply = reply?;
        println!("chat         <- {}: {}", reply.from, reply.text);
    }

    if let Some(cloud_run) = cloud_run {
        through_a_refresh(&books, &cloud_run, federation.as_ref(), &created[0].id).await?;
    }
    Ok(())
}

/// Keeps calling until the token has been refreshed twice, and checks that no call waited.
async fn through_a_refresh(
    books: &Bookstore,
    cloud_run: &CloudRun,
    federation: Option<&federation::Federation>,
    id: &str,
) -> Result<(), Failure> {
    let cache = books.channel().token_cache();
    let mut expires_at = cache.current().ok_or("no token")?.expires_at();
    println!(
        "\n== through token refreshes: tokens live {}s and are refreshed in the background before they expire; each fetch takes {:?}",
        TOKEN_LIFETIME.as_secs(),
        FETCH_LATENCY
    );
    let started = Instant::now();
    let (mut calls, mut refreshes, mut slowest) = (0u32, 0u32, Duration::ZERO);
    // Bounded: two refreshes of 8-second tokens take about 11 seconds; give up after 30.
    while refreshes < 2 {
        if started.elapsed() > Duration::from_secs(30) {
            return Err("no token refresh within 30 seconds".into());
        }
        let call = Instant::now();
        books.get_book(GetBookRequest { id: id.to_owned() }).await?;
        let took = call.elapsed();
        slowest = slowest.max(took);
        calls += 1;
        let now = cache
            .current()
            .ok_or("the token went missing")?
            .expires_at();
        if now != expires_at {
            refreshes += 1;
            println!(
                "t={:>4.1}s  token refreshed in the background; the new one expires in {:.1}s (call #{calls} took {took:?})",
                started.elapsed().as_secs_f64(),
                seconds_until(now)
            );
            expires_at = now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (fetches, detail) = match federation {
        Some(federation) => federation.fetches(),
        None => (
            cloud_run.metadata().requests(cache.audience()),
            String::new(),
        ),
    };
    println!(
        "{calls} calls in {:.1}s, {fetches} token fetches in all{detail}, slowest call {slowest:?}",
        started.elapsed().as_secs_f64()
    );
    if slowest >= FETCH_LATENCY {
        return Err(format!("a call took {slowest:?}: it waited for a token fetch").into());
    }
    println!("no call waited for a token");
    Ok(())
}

const TOKEN_LIFETIME: Duration = Duration::from_secs(8);
const FETCH_LATENCY: Duration = Duration::from_millis(300);

/// Google, emulated on loopback: the metadata server and Cloud Run's front end, serving the
/// bookstore for its production host; the front end trusts the federation's ID tokens when
/// there is one.
async fn emulated_cloud_run(
    federation: Option<&federation::Federation>,
) -> Result<CloudRun, Failure> {
    let mut cloud_run = CloudRun::builder(Bookstore::HOST);
    if let Some(federation) = federation {
        cloud_run = cloud_run.verifier(federation.verifier());
    }
    let cloud_run = cloud_run
        .token_lifetime(TOKEN_LIFETIME)
        .token_latency(FETCH_LATENCY)
        .timeout(TIMEOUT)
        .serve(MemoryBookstore::default().routes())
        .await?;
    println!(
        "emulated Cloud Run: a TLS front end for {} at {} (test CA), tokens from a metadata \
         server at {}",
        cloud_run.host(),
        cloud_run.front().addr(),
        cloud_run.metadata().host()
    );
    Ok(cloud_run)
}

fn book(title: &str, author: &str) -> Book {
    Book {
        title: title.into(),
        author: author.into(),
        ..Book::default()
    }
}

fn seconds_until(time: SystemTime) -> f64 {
    time.duration_since(SystemTime::now())
        .unwrap_or_default()
        .as_secs_f64()
}
