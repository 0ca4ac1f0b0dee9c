//! The servers and the two clients under comparison.

use std::error::Error;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cloud_run_grpc::CloudRunChannel;
use cloud_run_grpc::token::{IdTokenSource, MetadataServer, TokenFuture};
use cloud_run_grpc_examples::SlowBookstore;
use cloud_run_grpc_examples::pb::bookstore_client::BookstoreClient;
use cloud_run_grpc_examples::pb::bookstore_server::Bookstore;
use cloud_run_grpc_examples::pb::{Book, CreateBookRequest, GetBookRequest};
use cloud_run_grpc_testkit::{FrontEnd, MetadataEmulator, TestCa};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::{Interceptor, Routes};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Server, ServerTlsConfig};
use tonic::{Request, Status};

/// The service's host name: the TLS name, `:authority` and (as `https://{HOST}`) the audience.
pub const HOST: &str = "bookstore.test.run.app";
/// The id of the book every benchmark call reads.
pub const BOOK_ID: &str = "book-1";

pub type Failure = Box<dyn Error>;

/// One runtime for the gRPC server, one for the clients, and one thread for the metadata
/// emulator, whose RS256 signing (a millisecond or two per token) would otherwise stall the
/// server's thread — Google's metadata server runs on other machines.
pub struct Runtimes {
    pub server: Runtime,
    pub client: Runtime,
    pub metadata: Runtime,
}

impl Runtimes {
    pub fn new(server_threads: usize, client_threads: usize) -> io::Result<Self> {
        let runtime = |name: &str, threads: usize| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads.max(1))
                .thread_name(name)
                .enable_all()
                .build()
        };
        Ok(Self {
            server: runtime("server", server_threads)?,
            client: runtime("client", client_threads)?,
            metadata: runtime("metadata", 1)?,
        })
    }
}

/// What the clients call: a metadata emulator for tokens and a gRPC server over TLS.
pub struct Backend {
    pub metadata: MetadataEmulator,
    /// Where clients dial (the server, or a proxy in front of it).
    pub addr: SocketAddr,
    pub ca_pem: String,
    /// The Cloud-Run-like front end, when the server is one.
    pub front: Option<FrontEnd>,
}

/// Which server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// A plain tonic TLS server with no token check: the cheapest server, so that client
    /// overhead shows most.
    Plain,
    /// The testkit's front end, verifying every token's RS256 signature like Cloud Run.
    Front,
}

impl std::str::FromStr for ServerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "plain" => Ok(Self::Plain),
            "front" => Ok(Self::Front),
            _ => Err(format!("`{s}`: expected plain or front")),
        }
    }
}

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub kind: ServerKind,
    pub metadata: MetadataServerOptions,
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS` (plain server only).
    pub max_streams: Option<u32>,
    /// How long `GetBook` takes on the server.
    pub delay: Duration,
    /// Added before each new connection reaches the server (a slow network or a cold start).
    pub connect_delay: Duration,
}

#[derive(Clone, Debug)]
pub struct MetadataServerOptions {
    pub lifetime: Duration,
    pub latency: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            kind: ServerKind::Plain,
            metadata: MetadataServerOptions {
                lifetime: Duration::from_secs(3600),
                latency: Duration::ZERO,
            },
            max_streams: None,
            delay: Duration::ZERO,
            connect_delay: Duration::ZERO,
        }
    }
}

impl Backend {
    /// Starts the metadata emulator and the servers, each on its runtime.
    pub fn start(runtimes: &Runtimes, options: &ServerOptions) -> Result<Backend, Failure> {
        let metadata = runtimes.metadata.block_on(
            MetadataEmulator::builder()
                .token_lifetime(options.metadata.lifetime)
                .latency(options.metadata.latency)
                .start(),
        )?;
        runtimes.server.block_on(Self::serve(metadata, options))
    }

    async fn serve(
        metadata: MetadataEmulator,
        options: &ServerOptions,
    ) -> Result<Backend, Failure> {
        let routes = bookstore(options.delay).await?.routes();
        let ca = TestCa::new()?;
        let (addr, front) = match options.kind {
            ServerKind::Plain => (plain_server(routes, &ca, options.max_streams).await?, None),
            ServerKind::Front => {
                let front = FrontEnd::builder(HOST)
                    .verifier(metadata.verifier())
                    .ca(ca.clone())
                    .serve(routes)
                    .await?;
                (front.addr(), Some(front))
            }
        };
        let addr = if options.connect_delay.is_zero() {
            addr
        } else {
            delaying_proxy(addr, options.connect_delay).await?
        };
        Ok(Backend {
            metadata,
            addr,
            ca_pem: ca.certificate_pem(),
            front,
        })
    }

    /// A `CloudRunChannel` builder for this backend, with tokens from the metadata emulator.
    pub fn channel(&self) -> cloud_run_grpc::ChannelBuilder {
        self.channel_with(MetadataServer::with_host(self.metadata.host()))
    }

    /// The same, with another token source.
    pub fn channel_with(&self, source: impl IdTokenSource) -> cloud_run_grpc::ChannelBuilder {
        CloudRunChannel::builder(HOST)
            .connect_to(self.addr)
            .ca_certificate(self.ca_pem.clone())
            .token_source(source)
    }

    /// The floor: a bare tonic channel to the same address, with `authorization: Bearer
    /// {token}` put on every request by a trivial interceptor.
    pub async fn floor(&self, token: &str, sensitive: bool) -> Result<Client, Failure> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .domain_name(HOST);
        let channel = Endpoint::from_shared(format!("https://{}", self.addr))?
            .origin(format!("https://{HOST}").parse()?)
            .tls_config(tls)?
            .connect()
            .await?;
        let mut header: MetadataValue<Ascii> = format!("Bearer {token}").parse()?;
        header.set_sensitive(sensitive);
        Ok(Client::Floor(BookstoreClient::with_interceptor(
            channel,
            Bearer(header),
        )))
    }
}

/// Puts a fixed `authorization` header on every request.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// The two clients under comparison, making the same call.
#[derive(Clone)]
pub enum Client {
    Ours(BookstoreClient<CloudRunChannel>),
    Floor(BookstoreClient<InterceptedService<Channel, Bearer>>),
}

impl Client {
    pub fn ours(channel: CloudRunChannel) -> Self {
        Client::Ours(BookstoreClient::new(channel))
    }

    /// One unary call: `GetBook` of the one book.
    pub async fn call(&mut self) -> Result<(), Status> {
        let request = GetBookRequest { id: BOOK_ID.into() };
        match self {
            Client::Ours(client) => client.get_book(request).await.map(drop),
            Client::Floor(client) => client.get_book(request).await.map(drop),
        }
    }
}

/// A plain tonic server over TLS, with no token check.
async fn plain_server(
    routes: Routes,
    ca: &TestCa,
    max_streams: Option<u32>,
) -> Result<SocketAddr, Failure> {
    let certificate = ca.issue(HOST)?;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let incoming = TcpListenerStream::new(listener).map(|stream| {
        stream.inspect(|stream| {
            // Without it Nagle's algorithm holds small HTTP/2 frames back.
            let _ = stream.set_nodelay(true);
        })
    });
    let server = Server::builder()
        .tls_config(ServerTlsConfig::new().identity(certificate.identity()))?
        .max_concurrent_streams(max_streams)
        .add_routes(routes);
    tokio::spawn(async move {
        if let Err(error) = server.serve_with_incoming(incoming).await {
            eprintln!("server stopped: {error}");
        }
    });
    Ok(addr)
}

/// A TCP proxy that holds each new connection for `delay` before connecting it through: the
/// TLS handshake, and so the connection, completes `delay` later.
async fn delaying_proxy(target: SocketAddr, delay: Duration) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    // Ends with the server runtime.
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let Ok(mut outbound) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    Ok(addr)
}

/// The slow bookstore with one book in it, answering `GetBook` after `delay` (a service that
/// does some work, or waits on its own backend).
async fn bookstore(delay: Duration) -> Result<SlowBookstore, Status> {
    let store = SlowBookstore::default();
    store.set_delay(delay);
    let book = Book {
        title: "The Benchmark".into(),
        author: "A. Author".into(),
        ..Book::default()
    };
    let created = store
        .create_book(Request::new(CreateBookRequest { book: Some(book) }))
        .await?;
    debug_assert_eq!(created.get_ref().id, BOOK_ID);
    Ok(store)
}

/// A token source that records when each fetch ran, to tell calls made during a refresh from
/// the others.
#[derive(Debug, Clone)]
pub struct Recorded {
    inner: MetadataServer,
    fetches: Arc<Mutex<Vec<(Instant, Instant)>>>,
}

impl Recorded {
    pub fn new(inner: MetadataServer) -> Self {
        Self {
            inner,
            fetches: Arc::default(),
        }
    }

    /// `(start, end)` of every fetch so far.
    pub fn fetches(&self) -> Vec<(Instant, Instant)> {
        self.fetches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl IdTokenSource for Recorded {
    fn fetch<'a>(&'a self, audience: &'a str) -> TokenFuture<'a> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self.inner.fetch(audience).await;
            self.fetches
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((started, Instant::now()));
            result
        })
    }

    fn name(&self) -> String {
        self.inner.name()
    }
}
