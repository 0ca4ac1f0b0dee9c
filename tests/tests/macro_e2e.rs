//! `#[cloud_run_client]` end to end, against the testkit's metadata emulator and plaintext
//! front ends on loopback: what `new()` shares and what it does not, and the `env` override.
//!
//! Every struct here names a Cloud Run host that is never dialled: its `env` variable sends it
//! to a loopback front end that accepts only tokens for that struct's audience (set
//! explicitly, since an override otherwise moves the audience to the loopback URL's). Each
//! test uses its own structs and audiences, so the process-wide channels and token caches of
//! one test are not those of another.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use cloud_run_grpc::cloud_run_client;
use cloud_run_grpc_examples::pb::{
    self, Book, ChatMessage, CreateBookRequest, UploadBooksResponse,
};
use cloud_run_grpc_testkit::{FrontEnd, MetadataEmulator};
use tonic::{Request, Response, Status, Streaming};

#[cloud_run_client(
    host = "alpha-abc123-ew.a.run.app",
    service = pb::bookstore_cloud_run::Bookstore,
    audience = "https://alpha-abc123-ew.a.run.app",
    env = "MACRO_E2E_ALPHA_URL"
)]
struct Alpha;

#[cloud_run_client(
    host = "beta-abc123-ew.a.run.app",
    service = pb::bookstore_cloud_run::Bookstore,
    audience = "https://beta-abc123-ew.a.run.app",
    env = "MACRO_E2E_BETA_URL"
)]
struct Beta;

#[cloud_run_client(
    host = "delta-abc123-ew.a.run.app",
    service = pb::bookstore_cloud_run::Bookstore,
    audience = "https://delta-abc123-ew.a.run.app",
    env = "MACRO_E2E_DELTA_URL"
)]
struct Delta;

#[cloud_run_client(
    host = "gamma-abc123-ew.a.run.app",
    service = pb::bookstore_cloud_run::Bookstore,
    env = "MACRO_E2E_GAMMA_URL"
)]
struct Gamma;

/// A bookstore that remembers from which address each `CreateBook` came: one address, one
/// connection, one channel.
#[derive(Clone, Default)]
struct Recorder {
    peers: Arc<Mutex<Vec<SocketAddr>>>,
}

impl Recorder {
    fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().unwrap().clone()
    }
}

#[tonic::async_trait]
impl pb::bookstore_server::Bookstore for Recorder {
    async fn create_book(
        &self,
        request: Request<CreateBookRequest>,
    ) -> Result<Response<Book>, Status> {
        let peer = request
            .remote_addr()
            .ok_or_else(|| Status::internal("the front end passed no peer address"))?;
        self.peers.lock().unwrap().push(peer);
        Ok(Response::new(request.into_inner().book.unwrap_or_default()))
    }

    async fn get_book(&self, _: Request<pb::GetBookRequest>) -> Result<Response<Book>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    type ListBooksStream = tokio_stream::Empty<Result<Book, Status>>;

    async fn list_books(
        &self,
        _: Request<pb::ListBooksRequest>,
    ) -> Result<Response<Self::ListBooksStream>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn upload_books(
        &self,
        _: Request<Streaming<Book>>,
    ) -> Result<Response<UploadBooksResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    type ChatStream = tokio_stream::Empty<Result<ChatMessage, Status>>;

    async fn chat(
        &self,
        _: Request<Streaming<ChatMessage>>,
    ) -> Result<Response<Self::ChatStream>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

/// A plaintext front end on loopback for one Cloud Run host, and what it served.
struct Service {
    front: FrontEnd,
    recorder: Recorder,
}

impl Service {
    fn url(&self) -> String {
        format!("http://{}", self.front.addr())
    }
}

struct Emulators {
    metadata: MetadataEmulator,
    alpha: Service,
    beta: Service,
    delta: Service,
    gamma: Service,
}

/// The emulators, on a runtime of their own that outlives every test's runtime (the shared
/// channels do too). Sets the variables the structs read before any test reads them.
fn emulators() -> &'static Emulators {
    static EMULATORS: OnceLock<Emulators> = OnceLock::new();
    EMULATORS.get_or_init(|| {
        let emulators = cloud_run_grpc_testkit::run_on_testkit_runtime(async {
            let metadata = MetadataEmulator::start().await.unwrap();
            let mut services = Vec::new();
            // Each front end accepts `https://{host}`; Gamma has no `audience` option, so
            // once overridden its tokens are for the loopback URL's audience.
            let fronts = [
                FrontEnd::builder(Alpha::HOST),
                FrontEnd::builder(Beta::HOST),
                FrontEnd::builder(Delta::HOST),
                FrontEnd::builder(Gamma::HOST).audience("https://127.0.0.1"),
            ];
            for front in fronts {
                let recorder = Recorder::default();
                let routes = tonic::service::Routes::new(
                    pb::bookstore_server::BookstoreServer::new(recorder.clone()),
                );
                let front = front
                    .plaintext()
                    .verifier(metadata.verifier())
                    .serve(routes)
                    .await
                    .unwrap();
                services.push(Service { front, recorder });
            }
            let [alpha, beta, delta, gamma] = <[Service; 4]>::try_from(services).ok().unwrap();
            Emulators {
                metadata,
                alpha,
                beta,
                delta,
                gamma,
            }
        })
        .expect("the emulators start on the testkit's runtime");
        // SAFETY: every test calls `emulators()` first, so no other thread of this process
        // reads the environment while it is set here.
        unsafe {
            std::env::set_var("GCE_METADATA_HOST", emulators.metadata.host());
            std::env::remove_var("GOOGLE_APPLICATION_CREDENTIALS");
            std::env::set_var("MACRO_E2E_ALPHA_URL", emulators.alpha.url());
            std::env::set_var("MACRO_E2E_BETA_URL", emulators.beta.url());
            std::env::set_var("MACRO_E2E_DELTA_URL", emulators.delta.url());
            std::env::remove_var("MACRO_E2E_GAMMA_URL");
        }
        emulators
    })
}

/// Held by every test: one of them changes the environment while it runs.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn book(title: &str) -> CreateBookRequest {
    CreateBookRequest {
        book: Some(Book {
            title: title.into(),
            ..Book::default()
        }),
    }
}

fn distinct(peers: Vec<SocketAddr>) -> usize {
    peers.into_iter().collect::<BTreeSet<_>>().len()
}

#[tokio::test]
async fn two_instances_of_one_struct_share_one_channel_and_one_token_cache() {
    let emulators = emulators();
    let _serial = SERIAL.lock().await;
    let first = Delta::new();
    let second = Delta::new();
    assert!(first.channel().shares_token_cache_with(second.channel()));

    let (a, b) = tokio::join!(
        first.create_book(book("First")),
        second.create_book(book("Second"))
    );
    assert_eq!(a.unwrap().title, "First");
    assert_eq!(b.unwrap().title, "Second");
    first.clone().create_book(book("Clone")).await.unwrap();
    Delta::default().create_book(book("Default")).await.unwrap();

    assert_eq!(
        emulators.metadata.requests(Delta::AUDIENCE),
        1,
        "one token fetch for all"
    );
    assert_eq!(emulators.delta.front.accepted(), 4);
    let peers = emulators.delta.recorder.peers();
    assert_eq!(peers.len(), 4);
    assert_eq!(
        distinct(peers),
        1,
        "every call on one connection: one channel"
    );
    assert!(
        !format!("{first:?}").contains("eyJ"),
        "no token in Debug: {first:?}"
    );
}

#[tokio::test]
async fn structs_for_two_hosts_share_nothing() {
    let emulators = emulators();
    let _serial = SERIAL.lock().await;
    let alpha = Alpha::new();
    let beta = Beta::new();
    assert!(!alpha.channel().shares_token_cache_with(beta.channel()));
    assert_eq!(
        alpha.channel().audience(),
        "https://alpha-abc123-ew.a.run.app"
    );
    assert_eq!(
        beta.channel().audience(),
        "https://beta-abc123-ew.a.run.app"
    );

    alpha.create_book(book("Alpha")).await.unwrap();
    beta.create_book(book("Beta")).await.unwrap();
    alpha.create_book(book("Alpha again")).await.unwrap();

    // One token per audience, each fetched once.
    assert_eq!(emulators.metadata.requests(Alpha::AUDIENCE), 1);
    assert_eq!(emulators.metadata.requests(Beta::AUDIENCE), 1);
    // Each front end saw only its own struct's calls, with tokens for its own host.
    assert_eq!(emulators.alpha.recorder.peers().len(), 2);
    assert_eq!(emulators.beta.recorder.peers().len(), 1);
    assert_eq!(
        (
            emulators.alpha.front.rejected(),
            emulators.beta.front.rejected()
        ),
        (0, 0)
    );
}

#[tokio::test]
async fn the_env_override_redirects_to_a_loopback_server_at_run_time() {
    let emulators = emulators();
    let _serial = SERIAL.lock().await;
    // Unset: the compiled-in host (not dialled here: there is no network).
    assert_eq!(Gamma::new().channel().host(), "gamma-abc123-ew.a.run.app");

    // SAFETY: `SERIAL` is held, so no test reads the environment meanwhile.
    unsafe { std::env::set_var("MACRO_E2E_GAMMA_URL", emulators.gamma.url()) };
    let gamma = Gamma::new();
    // SAFETY: as above.
    unsafe { std::env::remove_var("MACRO_E2E_GAMMA_URL") };

    assert_eq!(
        gamma.channel().host(),
        emulators.gamma.front.addr().to_string()
    );
    // Without an `audience` option, the audience follows the URL in use.
    assert_eq!(Gamma::AUDIENCE, "https://gamma-abc123-ew.a.run.app");
    assert_eq!(gamma.channel().audience(), "https://127.0.0.1");
    let created = gamma.create_book(book("Redirected")).await.unwrap();
    assert_eq!(created.title, "Redirected");
    assert_eq!(emulators.gamma.recorder.peers().len(), 1);
    assert_eq!(emulators.metadata.requests("https://127.0.0.1"), 1);
    assert_eq!(emulators.metadata.requests(Gamma::AUDIENCE), 0);
}
