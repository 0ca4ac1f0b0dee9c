//! The channel's transport over real sockets: deadlines over whole calls, a cold call that
//! dials while its token is fetched, a warm-up that sends nothing, stream limits met with
//! another connection, user layers and interceptors under the token, and the rule that an
//! explicit audience never follows an override to another host.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloud_run_grpc::CloudRunChannel;
use cloud_run_grpc::token::{IdToken, StaticToken};
use cloud_run_grpc_examples::pb::bookstore_client::BookstoreClient;
use cloud_run_grpc_examples::pb::bookstore_server::{Bookstore, BookstoreServer};
use cloud_run_grpc_examples::pb::{
    Book, ChatMessage, CreateBookRequest, GetBookRequest, ListBooksRequest, UploadBooksResponse,
};
use cloud_run_grpc_examples::{MemoryBookstore, SlowBookstore};
use cloud_run_grpc_testkit::CloudRun;
use cloud_run_grpc_tests::until;
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Code, Request, Response, Status, Streaming};

const HOST: &str = "bookstore.test.run.app";
const AUDIENCE: &str = "https://bookstore.test.run.app";

fn book(title: &str) -> CreateBookRequest {
    CreateBookRequest {
        book: Some(Book {
            title: title.into(),
            ..Book::default()
        }),
    }
}

async fn serve(routes: tonic::service::Routes) -> CloudRun {
    CloudRun::serve(HOST, routes).await.unwrap()
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The bookstore, except that `ListBooks` sends one book and then, never ending, nothing (a
/// stream that stalls after its headers) or, when flooding, more books as fast as it can.
#[derive(Default)]
struct StallingBookstore {
    books: MemoryBookstore,
    flooding: bool,
}

#[tonic::async_trait]
impl Bookstore for StallingBookstore {
    async fn create_book(
        &self,
        request: Request<CreateBookRequest>,
    ) -> Result<Response<Book>, Status> {
        self.books.create_book(request).await
    }

    async fn get_book(&self, request: Request<GetBookRequest>) -> Result<Response<Book>, Status> {
        self.books.get_book(request).await
    }

    type ListBooksStream = BoxStream<Book>;

    async fn list_books(
        &self,
        _: Request<ListBooksRequest>,
    ) -> Result<Response<Self::ListBooksStream>, Status> {
        let book = |title: &str| {
            Ok(Book {
                title: title.into(),
                ..Book::default()
            })
        };
        let first = tokio_stream::iter([book("only this one")]);
        Ok(Response::new(if self.flooding {
            Box::pin(
                first.chain(tokio_stream::iter(std::iter::repeat_with(move || {
                    book("more")
                }))),
            )
        } else {
            Box::pin(first.chain(tokio_stream::pending()))
        }))
    }

    async fn upload_books(
        &self,
        request: Request<Streaming<Book>>,
    ) -> Result<Response<UploadBooksResponse>, Status> {
        self.books.upload_books(request).await
    }

    type ChatStream = BoxStream<ChatMessage>;

    async fn chat(
        &self,
        request: Request<Streaming<ChatMessage>>,
    ) -> Result<Response<Self::ChatStream>, Status> {
        self.books.chat(request).await
    }
}

#[tokio::test]
async fn a_deadline_cuts_a_server_stream_that_stalls_after_its_headers() {
    let cloud_run = serve(tonic::service::Routes::new(BookstoreServer::new(
        StallingBookstore::default(),
    )))
    .await;
    let channel = cloud_run
        .channel_builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let mut client = BookstoreClient::new(channel);
    let mut stream = client
        .list_books(ListBooksRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.title, "only this one");
    let started = Instant::now();
    let status = stream.message().await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("300ms"), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the stream was not cut by its deadline"
    );
}

/// A reader slower than the server always finds a message ready: the deadline still ends it.
#[tokio::test]
async fn a_deadline_cuts_a_server_stream_that_is_always_ready() {
    let flooding = StallingBookstore {
        flooding: true,
        ..StallingBookstore::default()
    };
    let cloud_run = serve(tonic::service::Routes::new(BookstoreServer::new(flooding))).await;
    let channel = cloud_run
        .channel_builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let mut client = BookstoreClient::new(channel);
    let mut stream = client
        .list_books(ListBooksRequest::default())
        .await
        .unwrap()
        .into_inner();
    // 200 reads 20 ms apart: 4 s, far past the deadline.
    for read in 0..200 {
        match stream.message().await {
            Ok(Some(_)) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(status) => {
                assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
                assert!(read < 50, "cut only after {read} reads");
                return;
            }
            Ok(None) => panic!("the flood ended"),
        }
    }
    panic!("the stream outran its deadline");
}

#[tokio::test]
async fn a_cold_call_dials_while_its_token_is_fetched() {
    let cloud_run = serve(MemoryBookstore::default().routes()).await;
    let (metadata, front) = (cloud_run.metadata(), cloud_run.front());
    metadata.set_latency(Duration::from_secs(2));
    let mut client = BookstoreClient::new(cloud_run.channel());
    let started = Instant::now();
    let call = tokio::spawn(async move { client.create_book(book("cold")).await });
    // The metadata server takes two seconds, yet the connection is made at once: dialling does
    // not wait for the token, and nothing reaches the service without one.
    until("the front end accepted a connection", || {
        front.connections() == 1
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(front.accepted() + front.rejected(), 0);
    let created = call.await.unwrap().unwrap().into_inner();
    assert_eq!(created.title, "cold");
    assert_eq!(
        front.connections(),
        1,
        "the call used the connection dialled early"
    );
    assert_eq!(front.accepted(), 1);
}

#[tokio::test]
async fn warm_up_connects_and_fetches_without_sending_a_request() {
    let cloud_run = serve(MemoryBookstore::default().routes()).await;
    let (metadata, front) = (cloud_run.metadata(), cloud_run.front());
    let channel = cloud_run.channel();
    channel.warm_up().await.unwrap();
    assert_eq!(front.connections(), 1);
    assert_eq!(metadata.requests(AUDIENCE), 1);
    assert_eq!(
        front.accepted() + front.rejected(),
        0,
        "warm_up sent a request"
    );
    BookstoreClient::new(channel)
        .create_book(book("warm"))
        .await
        .unwrap();
    assert_eq!(front.connections(), 1);
}

/// A plain tonic server on loopback whose connections allow `streams` calls at once, and
/// whose `GetBook` takes a second: how many connections the channel opened is what the listener
/// accepted, how many calls the server holds at once is `store.in_progress()`.
struct Limited {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    store: SlowBookstore,
}

async fn limited(streams: u32) -> Limited {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let incoming = async_stream_of(listener, Arc::clone(&accepted));
    let store = SlowBookstore::default();
    store.set_delay(Duration::from_secs(1));
    // The book every `GetBook` reads: "book-1".
    store.create_book(Request::new(book("held"))).await.unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .max_concurrent_streams(streams)
            .add_routes(store.routes())
            .serve_with_incoming(incoming),
    );
    Limited {
        addr,
        accepted,
        store,
    }
}

fn held_book() -> GetBookRequest {
    GetBookRequest {
        id: "book-1".into(),
    }
}

/// The listener's connections, counted.
fn async_stream_of(
    listener: tokio::net::TcpListener,
    accepted: Arc<AtomicUsize>,
) -> impl Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(move |stream| {
        accepted.fetch_add(1, Ordering::SeqCst);
        stream
    })
}

fn static_token() -> StaticToken {
    // Unsigned, but valid until 2100: the plain server checks nothing.
    let jwt =
        "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDAsImF1ZCI6Imh0dHBzOi8vMTI3LjAuMC4xIn0.c2ln";
    StaticToken::new(IdToken::from_jwt(jwt).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_a_connections_stream_limit_get_another_connection() {
    let server = limited(10).await;
    let channel = CloudRunChannel::from_url(&format!("http://{}", server.addr))
        .unwrap()
        .token_source(static_token())
        .build()
        .unwrap();
    // A first call, so that the server's SETTINGS (and its limit) are known: until they are,
    // a connection is assumed to take 100 calls, as HTTP/2 implementations assume.
    BookstoreClient::new(channel.clone())
        .create_book(book("first"))
        .await
        .unwrap();
    let hold = |n: usize| -> Vec<_> {
        (0..n)
            .map(|_| {
                let mut client = BookstoreClient::new(channel.clone());
                tokio::spawn(async move { client.get_book(held_book()).await })
            })
            .collect()
    };
    let mut calls = hold(10);
    until("the server holds ten calls", || {
        server.store.in_progress() == 10
    })
    .await;
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    // The first connection is full: five more go to a second one, none queued behind the limit.
    calls.extend(hold(5));
    until("the server holds all fifteen calls", || {
        server.store.in_progress() == 15
    })
    .await;
    assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
    for call in calls {
        call.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_calls_wait_for_a_stream() {
    let server = limited(4).await;
    let channel = CloudRunChannel::from_url(&format!("http://{}", server.addr))
        .unwrap()
        .token_source(static_token())
        .max_connections(1)
        .build()
        .unwrap();
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let mut client = BookstoreClient::new(channel.clone());
            tokio::spawn(async move { client.get_book(held_book()).await })
        })
        .collect();
    until("the server holds four calls", || {
        server.store.in_progress() == 4
    })
    .await;
    // The cap holds: the other two wait for a stream on the one connection, and get one when
    // the first calls end.
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
}

/// A call's `x-request-id`, and the scheme of its `authorization` if it had one.
type Sighting = (String, Option<String>);

/// What a server saw of each call's metadata.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Sighting>>>);

impl Seen {
    /// A server-side interceptor that notes `x-request-id` and whether a token came along.
    fn interceptor(
        &self,
    ) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + use<> {
        let seen = self.clone();
        move |request: Request<()>| {
            let id = request
                .metadata()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let token = request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(' ').next().unwrap_or_default().to_owned());
            seen.0.lock().unwrap().push((id, token));
            Ok(request)
        }
    }

    fn all(&self) -> Vec<Sighting> {
        self.0.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn tonic_interceptors_and_user_layers_run_under_the_token() {
    let seen = Seen::default();
    let routes = tonic::service::Routes::new(BookstoreServer::with_interceptor(
        MemoryBookstore::default(),
        seen.interceptor(),
    ));
    let cloud_run = serve(routes).await;

    // tonic's own `with_interceptor` on a CloudRunChannel.
    let plain = cloud_run.channel();
    let mut client = BookstoreClient::with_interceptor(plain, |mut request: Request<()>| {
        request
            .metadata_mut()
            .insert("x-request-id", "from-with-interceptor".parse().unwrap());
        Ok(request)
    });
    client.create_book(book("one")).await.unwrap();

    // An interceptor under the channel, which the user's interceptor cannot see the token of.
    let token_seen_by_interceptor = Arc::new(Mutex::new(None::<bool>));
    let saw = Arc::clone(&token_seen_by_interceptor);
    let layered = cloud_run
        .channel_builder()
        .interceptor(move |mut request: Request<()>| {
            *saw.lock().unwrap() = Some(request.metadata().contains_key("authorization"));
            request
                .metadata_mut()
                .insert("x-request-id", "from-the-builder".parse().unwrap());
            Ok(request)
        })
        .build()
        .unwrap();
    BookstoreClient::new(layered)
        .create_book(book("two"))
        .await
        .unwrap();
    assert_eq!(*token_seen_by_interceptor.lock().unwrap(), Some(false));

    // A refusing interceptor stops the call before anything is sent.
    let refusing = cloud_run
        .channel_builder()
        .interceptor(|_: Request<()>| Err(Status::permission_denied("no tenant")))
        .build()
        .unwrap();
    let status = BookstoreClient::new(refusing)
        .create_book(book("three"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.message(), "no tenant");

    assert_eq!(
        seen.all(),
        vec![
            (
                "from-with-interceptor".to_owned(),
                Some("Bearer".to_owned())
            ),
            ("from-the-builder".to_owned(), Some("Bearer".to_owned())),
        ]
    );
}

#[tokio::test]
async fn an_explicit_audience_does_not_follow_an_override_to_another_host() {
    let spec = |env: &'static str| cloud_run_grpc::__private::SharedSpec {
        url: "bookstore-abc123-ew.a.run.app",
        audience: Some("https://books.example.com"),
        env: Some(env),
        header: None,
        timeout: None,
    };
    // SAFETY: no other code in this process reads these variables.
    unsafe {
        std::env::set_var("TRANSPORT_RS_ELSEWHERE", "https://evil.example.com");
        std::env::set_var("TRANSPORT_RS_LOCAL", "http://127.0.0.1:1");
        std::env::set_var(
            "TRANSPORT_RS_OTHER_PORT",
            "https://bookstore-abc123-ew.a.run.app:8443",
        );
    }
    let elsewhere = cloud_run_grpc::__private::shared_from_spec(&spec("TRANSPORT_RS_ELSEWHERE"));
    let status = BookstoreClient::new(elsewhere)
        .create_book(book("leak"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    for needle in [
        "evil.example.com",
        "https://books.example.com",
        "TRANSPORT_RS_ELSEWHERE",
        "Remove `audience`",
    ] {
        assert!(status.message().contains(needle), "{needle}: {status:?}");
    }
    // To this machine, or to the configured host on another port, the audience stays.
    let local = cloud_run_grpc::__private::shared_from_spec(&spec("TRANSPORT_RS_LOCAL"));
    assert_eq!(local.url(), "http://127.0.0.1:1");
    assert_eq!(local.audience(), "https://books.example.com");
    let other_port = cloud_run_grpc::__private::shared_from_spec(&spec("TRANSPORT_RS_OTHER_PORT"));
    assert_eq!(other_port.audience(), "https://books.example.com");
}

/// Cloud Run's front end refuses at the HTTP layer with an HTML page; a plain tonic client on
/// the channel gets the status gRPC's HTTP mapping gives it, what the page said, and what to
/// do — and the page itself as the status's source.
#[tokio::test]
async fn front_end_pages_become_statuses_with_advice_for_a_plain_tonic_client() {
    let cloud_run = serve(MemoryBookstore::default().routes()).await;
    let front = cloud_run.front();
    let mut client = BookstoreClient::new(cloud_run.channel());
    client.create_book(book("warm")).await.unwrap();

    // A caller without roles/run.invoker.
    front.set_invokers(Some(["someone-else@example.iam.gserviceaccount.com"]));
    let status = client.create_book(book("forbidden")).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    for needle in [
        "HTTP 403",
        "text/html",
        "roles/run.invoker",
        cloud_run.metadata().email(),
    ] {
        assert!(status.message().contains(needle), "{needle}: {status:?}");
    }
    let page = std::error::Error::source(&status)
        .and_then(|source| source.downcast_ref::<cloud_run_grpc::NonGrpcAnswer>())
        .expect("the page is the status's source");
    assert_eq!(page.http_status(), 403);
    assert_eq!(page.content_type(), Some("text/html"));
    front.set_invokers(None::<Vec<String>>);
    assert_eq!(front.forbidden(), 1);

    for (http, code, needle) in [
        (404, Code::Unimplemented, "nothing serves this path"),
        (429, Code::Unavailable, "max instances"),
        (503, Code::Unavailable, "--use-http2"),
        (504, Code::Unavailable, "request timeout"),
    ] {
        front.fail_next(1, http);
        let status = client.create_book(book("failed")).await.unwrap_err();
        assert_eq!(status.code(), code, "HTTP {http}: {status:?}");
        assert!(
            status.message().contains(&format!("HTTP {http}")),
            "{status:?}"
        );
        assert!(status.message().contains(needle), "HTTP {http}: {status:?}");
    }
    // None of them is retried: whether they reached a container is not known.
    assert_eq!(front.failed(), 4);
    // And none of them costs the token.
    assert_eq!(cloud_run.metadata().requests(AUDIENCE), 1);
}

/// The one retry gets what is left of the call's deadline, not a fresh one: a refused token
/// whose replacement is slow to come fails the call at its deadline.
#[tokio::test]
async fn a_retry_never_outlives_the_calls_deadline() {
    let cloud_run = serve(MemoryBookstore::default().routes()).await;
    let mut client = BookstoreClient::new(cloud_run.channel());
    client.create_book(book("warm")).await.unwrap();
    // The next token takes two seconds to come; the call has 300 ms.
    cloud_run.metadata().clear_token_cache();
    cloud_run.metadata().set_latency(Duration::from_secs(2));
    cloud_run.front().reject_next(1);
    let mut request = Request::new(book("refused, then too late"));
    request.set_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let status = client.create_book(request).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        took < Duration::from_secs(1),
        "the retry outlived the deadline: {took:?}"
    );
    assert_eq!(cloud_run.front().rejected(), 1);
    assert_eq!(
        cloud_run.front().accepted(),
        1,
        "only the warm-up call went through"
    );
}

/// Deadlines as long as can be said are no deadline, not a panic.
#[tokio::test]
async fn endless_timeouts_are_fine() {
    let cloud_run = serve(MemoryBookstore::default().routes()).await;
    let channel = cloud_run
        .channel_builder()
        .timeout(Duration::MAX)
        .connect_timeout(Duration::MAX)
        .keep_alive(Duration::MAX, Duration::MAX)
        .idle_timeout(Duration::MAX)
        .build()
        .unwrap();
    let books = cloud_run_grpc_examples::pb::bookstore_cloud_run::Bookstore::new(channel);
    let created = books
        .with_timeout(Duration::MAX)
        .create_book(book("forever"))
        .await
        .unwrap();
    assert_eq!(created.title, "forever");
}
