//! The generated `foo_cloud_run` wrappers end to end: every RPC kind over TLS through the
//! testkit's Cloud-Run-like front end, with ID tokens from the metadata emulator. The wrapper
//! adds no retry of its own: a `Status` that comes back as gRPC, `UNAUTHENTICATED` included, is
//! the answer, returned once, and the token stays (only the channel sends a call again, when
//! it provably never reached the service).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloud_run_grpc::CloudRunChannel;
use cloud_run_grpc::token::MetadataServer;
use cloud_run_grpc_testkit::{FrontEnd, MetadataEmulator};
use tokio_stream::{Stream, StreamExt as _};
use tonic::metadata::{MetadataKey, MetadataValue};
use tonic::{Code, Request, Response, Status, Streaming};

mod pb {
    #![allow(missing_docs)]
    cloud_run_grpc::include_proto!("acme.bookstore.v1");
}

mod awkward {
    #![allow(missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/awkward.rs"));
}

use pb::bookstore_cloud_run::Bookstore;
use pb::{Book, ChatMessage, CreateBookRequest, GetBookRequest, ListBooksRequest};

const HOST: &str = "bookstore.test.run.app";
const AUDIENCE: &str = "https://bookstore.test.run.app";

/// What the server saw, per method.
#[derive(Debug, Default)]
struct Seen {
    calls: BTreeMap<&'static str, usize>,
    /// `x-request-id` of the last call, when it had one.
    request_id: Option<String>,
    /// `grpc-timeout` of the last call, when it had one.
    grpc_timeout: Option<String>,
}

/// A bookstore that records what reaches it and fails on request: `GetBook` with the id
/// `"not-found"`, `"unavailable"`, `"internal"`, `"permission-denied"` or `"unauthenticated"`
/// answers that code; `"slow"` answers after two seconds.
#[derive(Clone, Default)]
struct RecordingBookstore {
    seen: Arc<Mutex<Seen>>,
}

impl RecordingBookstore {
    fn record<T>(&self, method: &'static str, request: &Request<T>) {
        let mut seen = self.seen.lock().unwrap();
        *seen.calls.entry(method).or_default() += 1;
        let header = |name: &str| {
            request
                .metadata()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        seen.request_id = header("x-request-id");
        seen.grpc_timeout = header("grpc-timeout");
    }

    fn calls(&self, method: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .calls
            .get(method)
            .copied()
            .unwrap_or(0)
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl pb::bookstore_server::Bookstore for RecordingBookstore {
    async fn create_book(
        &self,
        request: Request<CreateBookRequest>,
    ) -> Result<Response<Book>, Status> {
        self.record("CreateBook", &request);
        let mut book = request.into_inner().book.unwrap_or_default();
        book.id = format!("id-{}", book.title.to_lowercase());
        Ok(Response::new(book))
    }

    async fn get_book(&self, request: Request<GetBookRequest>) -> Result<Response<Book>, Status> {
        self.record("GetBook", &request);
        let id = request.into_inner().id;
        match id.as_str() {
            "not-found" => Err(Status::not_found("no such book")),
            "unavailable" => Err(Status::unavailable("try later")),
            "internal" => Err(Status::internal("boom")),
            "permission-denied" => Err(Status::permission_denied("not yours")),
            // From the application, not the front end: still retried once, like any
            // UNAUTHENTICATED answer (the wrapper cannot tell who said it).
            "unauthenticated" => Err(Status::unauthenticated("app says no")),
            "slow" => {
                tokio::time::sleep(Duration::from_secs(2)).await;
                Ok(Response::new(Book {
                    id,
                    ..Book::default()
                }))
            }
            _ => Ok(Response::new(Book {
                id,
                title: "Dune".into(),
                ..Book::default()
            })),
        }
    }

    type ListBooksStream = BoxStream<Book>;

    async fn list_books(
        &self,
        request: Request<ListBooksRequest>,
    ) -> Result<Response<Self::ListBooksStream>, Status> {
        self.record("ListBooks", &request);
        let request = request.into_inner();
        let books = (1..=request.limit).map(move |n| {
            Ok(Book {
                id: n.to_string(),
                author: request.author.clone(),
                ..Book::default()
            })
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(books))))
    }

    async fn upload_books(
        &self,
        request: Request<Streaming<Book>>,
    ) -> Result<Response<pb::UploadBooksResponse>, Status> {
        self.record("UploadBooks", &request);
        let mut books = request.into_inner();
        let mut count = 0;
        while let Some(book) = books.next().await {
            book?;
            count += 1;
        }
        Ok(Response::new(pb::UploadBooksResponse { count }))
    }

    type ChatStream = BoxStream<ChatMessage>;

    async fn chat(
        &self,
        request: Request<Streaming<ChatMessage>>,
    ) -> Result<Response<Self::ChatStream>, Status> {
        self.record("Chat", &request);
        let replies = request.into_inner().map(|message| {
            message.map(|m| ChatMessage {
                from: "store".into(),
                text: format!("re: {}", m.text),
            })
        });
        Ok(Response::new(Box::pin(replies)))
    }
}

struct Setup {
    metadata: MetadataEmulator,
    front: FrontEnd,
    store: RecordingBookstore,
    books: Bookstore,
}

/// The emulators, a recording bookstore behind the front end, and the wrapper calling it.
/// The metadata emulator mints a new token on every fetch, so "a newly fetched token" is a
/// different token, not Google's cached one handed out again.
async fn setup() -> Setup {
    let metadata = MetadataEmulator::builder()
        .cache_tokens(false)
        .start()
        .await
        .unwrap();
    let store = RecordingBookstore::default();
    let front = FrontEnd::builder(HOST)
        .verifier(metadata.verifier())
        .serve(tonic::service::Routes::new(
            pb::bookstore_server::BookstoreServer::new(store.clone()),
        ))
        .await
        .unwrap();
    let books = Bookstore::new(channel(&metadata, &front));
    Setup {
        metadata,
        front,
        store,
        books,
    }
}

fn channel(metadata: &MetadataEmulator, front: &FrontEnd) -> CloudRunChannel {
    CloudRunChannel::builder(front.host())
        .connect_to(front.addr())
        .ca_certificate(front.ca_certificate_pem())
        .token_source(MetadataServer::with_host(metadata.host()))
        .build()
        .unwrap()
}

fn create(title: &str) -> CreateBookRequest {
    CreateBookRequest {
        book: Some(Book {
            title: title.into(),
            ..Book::default()
        }),
    }
}

fn get(id: &str) -> GetBookRequest {
    GetBookRequest { id: id.into() }
}

fn chat(text: &str) -> ChatMessage {
    ChatMessage {
        from: "me".into(),
        text: text.into(),
    }
}

#[tokio::test]
async fn every_rpc_kind_works_through_the_wrapper_over_tls() {
    let Setup {
        metadata,
        front,
        store,
        books,
    } = setup().await;

    // Unary: the response message itself.
    let created: Book = books.create_book(create("Dune")).await.unwrap();
    assert_eq!(created.id, "id-dune");
    let fetched: Book = books.get_book(get("b1")).await.unwrap();
    assert_eq!(
        (fetched.id.as_str(), fetched.title.as_str()),
        ("b1", "Dune")
    );

    // Server streaming.
    let listed: Vec<Book> = books
        .list_books(ListBooksRequest {
            author: "Herbert".into(),
            limit: 3,
        })
        .await
        .unwrap()
        .collect::<Result<_, _>>()
        .await
        .unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|b| b.author == "Herbert"));

    // Client streaming: any stream of request messages.
    let uploaded = books
        .upload_books(tokio_stream::iter(vec![Book::default(); 4]))
        .await
        .unwrap();
    assert_eq!(uploaded.count, 4);

    // Bidirectional: send while receiving.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut replies = books
        .chat(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap();
    for text in ["hello", "bye"] {
        tx.send(chat(text)).await.unwrap();
        let reply = replies.next().await.unwrap().unwrap();
        assert_eq!(reply.text, format!("re: {text}"));
    }
    drop(tx);
    assert!(replies.next().await.is_none());

    // Every call passed the front end's check, with one token fetched for all of them.
    assert_eq!(front.accepted(), 5);
    assert_eq!(front.rejected(), 0);
    assert_eq!(metadata.requests(AUDIENCE), 1);
    for method in ["CreateBook", "GetBook", "ListBooks", "UploadBooks", "Chat"] {
        assert_eq!(store.calls(method), 1, "{method}");
    }
}

/// The front end refuses the token (HTTP 401, an HTML page): the wrapper's call is sent once
/// more, with one new token, and reaches the service once.
#[tokio::test]
async fn a_front_end_refusal_is_healed_by_one_retry_with_one_new_token() {
    let Setup {
        metadata,
        front,
        store,
        books,
    } = setup().await;
    books.get_book(get("warm")).await.unwrap();
    assert_eq!(metadata.requests(AUDIENCE), 1);

    front.reject_next(1);
    let created = books.create_book(create("Dune")).await.unwrap();
    assert_eq!(created.id, "id-dune");
    assert_eq!(front.rejected(), 1);
    assert_eq!(store.calls("CreateBook"), 1);
    assert_eq!(metadata.requests(AUDIENCE), 2, "exactly one new token");
}

#[tokio::test]
async fn errors_other_than_unauthenticated_are_never_retried() {
    let Setup {
        metadata,
        front,
        store,
        books,
    } = setup().await;

    let cases = [
        ("not-found", Code::NotFound),
        ("unavailable", Code::Unavailable),
        ("internal", Code::Internal),
        ("permission-denied", Code::PermissionDenied),
    ];
    for (n, (id, code)) in cases.into_iter().enumerate() {
        let status = books.get_book(get(id)).await.unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
        // One attempt each: the service saw it once, the front end let it through once.
        assert_eq!(store.calls("GetBook"), n + 1, "{id} was retried");
        assert_eq!(front.accepted(), n + 1, "{id} was retried");
    }
    assert_eq!(front.rejected(), 0);
    assert_eq!(metadata.requests(AUDIENCE), 1);
}

#[tokio::test]
async fn unauthenticated_from_the_service_is_never_sent_again() {
    let Setup {
        metadata,
        front: _front,
        store,
        books,
    } = setup().await;
    let status = books.get_book(get("unauthenticated")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "app says no");
    // The service may have done the work: it saw the call once.
    assert_eq!(store.calls("GetBook"), 1);
    assert_eq!(metadata.requests(AUDIENCE), 1);
}

#[tokio::test]
async fn server_streaming_is_healed_as_unary_is() {
    let Setup {
        metadata,
        front,
        store,
        books,
    } = setup().await;
    front.reject_next(1);
    let listed: Vec<Book> = books
        .list_books(ListBooksRequest {
            author: String::new(),
            limit: 2,
        })
        .await
        .unwrap()
        .collect::<Result<_, _>>()
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(front.rejected(), 1);
    assert_eq!(store.calls("ListBooks"), 1);
    assert_eq!(metadata.requests(AUDIENCE), 2);
}

/// A stream of requests still being produced when the call starts cannot be sent again: its
/// refusal is the caller's to handle. One whose messages were all there at once is whole, and
/// is sent again like a unary call.
#[tokio::test]
async fn streams_still_being_produced_are_not_retried_whole_ones_are() {
    let Setup {
        metadata: _metadata,
        front,
        store,
        books,
    } = setup().await;

    // Each message comes a moment after the call started.
    let later = |items: Vec<Book>| {
        tokio_stream::iter(items).then(|book| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            book
        })
    };
    front.reject_next(1);
    let status = books
        .upload_books(later(vec![Book::default()]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("refused the ID token"),
        "{status:?}"
    );
    assert_eq!(front.rejected(), 1);
    assert_eq!(store.calls("UploadBooks"), 0);
    // A call that gets through ends the run of refusals (two in a row would back off).
    books.get_book(get("between")).await.unwrap();

    front.reject_next(1);
    let chat_later = tokio_stream::iter(vec![chat("hi")]).then(|message| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        message
    });
    let status = books.chat(chat_later).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(front.rejected(), 2);
    assert_eq!(store.calls("Chat"), 0);
    books.get_book(get("between")).await.unwrap();

    // All its messages ready when the call starts: the request is whole, and sent again.
    front.reject_next(1);
    let uploaded = books
        .upload_books(tokio_stream::iter(vec![Book::default()]))
        .await
        .unwrap();
    assert_eq!(uploaded.count, 1);
    assert_eq!(front.rejected(), 3);
    assert_eq!(store.calls("UploadBooks"), 1);
}

#[tokio::test]
async fn per_call_timeout_and_metadata_reach_the_server_and_stay_per_copy() {
    let Setup {
        metadata: _metadata,
        front: _front,
        store,
        books,
    } = setup().await;

    let tagged = books.with_metadata(
        MetadataKey::from_static("x-request-id"),
        MetadataValue::from_static("req-42"),
    );
    tagged.get_book(get("b1")).await.unwrap();
    assert_eq!(
        store.seen.lock().unwrap().request_id.as_deref(),
        Some("req-42")
    );
    // Streaming calls carry it too.
    tagged
        .upload_books(tokio_stream::iter(vec![Book::default()]))
        .await
        .unwrap();
    assert_eq!(
        store.seen.lock().unwrap().request_id.as_deref(),
        Some("req-42")
    );

    // The original wrapper is unchanged.
    books.get_book(get("b1")).await.unwrap();
    assert_eq!(store.seen.lock().unwrap().request_id, None);
    assert_eq!(store.seen.lock().unwrap().grpc_timeout, None);

    books
        .with_timeout(Duration::from_secs(30))
        .get_book(get("b1"))
        .await
        .unwrap();
    let timeout = store.seen.lock().unwrap().grpc_timeout.clone().unwrap();
    assert!(timeout.ends_with(['u', 'm', 'S', 'n']), "{timeout}");

    let started = std::time::Instant::now();
    let status = books
        .with_timeout(Duration::from_millis(200))
        .get_book(get("slow"))
        .await
        .unwrap_err();
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the deadline was not enforced"
    );
    // A deadline is not an authentication failure: one attempt only.
    assert_eq!(store.calls("GetBook"), 4);
}

#[tokio::test]
async fn the_tonic_client_stays_reachable_and_gets_the_same_retry() {
    let Setup {
        metadata: _metadata,
        front,
        store,
        books,
    } = setup().await;
    let mut client = books.client();
    let book = client.get_book(get("raw")).await.unwrap().into_inner();
    assert_eq!(book.id, "raw");
    // The retry is the channel's, so a raw tonic call gets it too.
    front.reject_next(1);
    let book = client.get_book(get("raw")).await.unwrap().into_inner();
    assert_eq!(book.id, "raw");
    assert_eq!(front.rejected(), 1);
    assert_eq!(store.calls("GetBook"), 2);
}

/// The awkward service: keyword method names and wrapper-name clashes work on the wire.
mod awkward_service {
    use super::*;
    use awkward::acme::awkward::v1 as aw;

    #[derive(Default)]
    struct Server;

    #[tonic::async_trait]
    impl aw::awkward_server::Awkward for Server {
        async fn r#type(
            &self,
            request: Request<aw::Option>,
        ) -> Result<Response<aw::Result>, Status> {
            let option = request.into_inner();
            Ok(Response::new(aw::Result {
                value: format!("type:{}", option.name),
                at: None,
                option: Some(option),
            }))
        }

        async fn r#move(
            &self,
            request: Request<Streaming<aw::Box>>,
        ) -> Result<Response<aw::Result>, Status> {
            let sizes: Vec<aw::Box> = request.into_inner().collect::<Result<_, _>>().await?;
            let total: i64 = sizes.iter().map(|b| b.size).sum();
            Ok(Response::new(aw::Result {
                value: total.to_string(),
                ..aw::Result::default()
            }))
        }

        type AsyncStream = BoxStream<aw::Box>;

        async fn r#async(&self, _: Request<()>) -> Result<Response<Self::AsyncStream>, Status> {
            let boxes = (1..=2).map(|size| {
                Ok(aw::Box {
                    size,
                    ..aw::Box::default()
                })
            });
            Ok(Response::new(Box::pin(tokio_stream::iter(boxes))))
        }

        type ClientStream = BoxStream<aw::Result>;

        async fn client(
            &self,
            request: Request<Streaming<aw::Option>>,
        ) -> Result<Response<Self::ClientStream>, Status> {
            let results = request.into_inner().map(|option| {
                option.map(|o| aw::Result {
                    value: o.name.clone(),
                    option: Some(o),
                    ..aw::Result::default()
                })
            });
            Ok(Response::new(Box::pin(results)))
        }

        async fn with_timeout(
            &self,
            request: Request<prost_types::Timestamp>,
        ) -> Result<Response<()>, Status> {
            if request.into_inner().seconds == 42 {
                Ok(Response::new(()))
            } else {
                Err(Status::invalid_argument("expected 42 seconds"))
            }
        }

        async fn old(&self, request: Request<aw::Box>) -> Result<Response<aw::Box>, Status> {
            Ok(Response::new(request.into_inner()))
        }
    }

    #[tokio::test]
    async fn keyword_and_renamed_methods_call_the_right_rpcs() {
        let metadata = MetadataEmulator::start().await.unwrap();
        let front = FrontEnd::builder("awkward.test.run.app")
            .verifier(metadata.verifier())
            .serve(tonic::service::Routes::new(
                aw::awkward_server::AwkwardServer::new(Server),
            ))
            .await
            .unwrap();
        let awkward = aw::awkward_cloud_run::Awkward::new(channel(&metadata, &front));

        let result = awkward
            .r#type(aw::Option {
                name: "x".into(),
                enabled: true,
            })
            .await
            .unwrap();
        assert_eq!(result.value, "type:x");

        let moved = awkward
            .r#move(tokio_stream::iter([3, 4].map(|size| aw::Box {
                size,
                ..aw::Box::default()
            })))
            .await
            .unwrap();
        assert_eq!(moved.value, "7");

        let sizes: Vec<i64> = awkward
            .r#async(())
            .await
            .unwrap()
            .map(|b| b.map(|b| b.size))
            .collect::<Result<_, _>>()
            .await
            .unwrap();
        assert_eq!(sizes, [1, 2]);

        let names: Vec<String> = awkward
            .client_rpc(tokio_stream::iter(["a", "b"].map(|name| aw::Option {
                name: name.into(),
                enabled: false,
            })))
            .await
            .unwrap()
            .map(|r| r.map(|r| r.value))
            .collect::<Result<_, _>>()
            .await
            .unwrap();
        assert_eq!(names, ["a", "b"]);

        let at = prost_types::Timestamp {
            seconds: 42,
            nanos: 0,
        };
        let (): () = awkward.with_timeout_rpc(at).await.unwrap();

        #[allow(deprecated)]
        let old = awkward
            .old(aw::Box {
                size: 9,
                ..aw::Box::default()
            })
            .await
            .unwrap();
        assert_eq!(old.size, 9);
        assert_eq!(front.accepted(), 6);
    }
}
