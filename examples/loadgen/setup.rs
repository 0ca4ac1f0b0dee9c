//! The servers and the two clients under comparison.

use std::error::Error;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Whether clients speak cleartext HTTP/2 (h2c) to it.
    pub cleartext: bool,
    store: SlowBookstore,
}

/// Which server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// A plain tonic TLS server with no token check: the cheapest server, so that client
    /// overhead shows most.
    Plain,
    /// The testkit's front end, verifying every token's RS256 signature like Cloud Run.
    Front,
    /// The plain server over cleartext HTTP/2, so that a proxy can read the frames.
    Cleartext,
}

impl std::str::FromStr for ServerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "plain" => Ok(Self::Plain),
            "front" => Ok(Self::Front),
            "cleartext" => Ok(Self::Cleartext),
            _ => Err(format!("`{s}`: expected plain, front or cleartext")),
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
        let store = bookstore(options.delay).await?;
        let routes = store.routes();
        let ca = TestCa::new()?;
        let (addr, front) = match options.kind {
            ServerKind::Plain => (
                plain_server(routes, Some(&ca), options.max_streams).await?,
                None,
            ),
            ServerKind::Cleartext => (plain_server(routes, None, options.max_streams).await?, None),
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
            cleartext: options.kind == ServerKind::Cleartext,
            store,
        })
    }

    /// Adds a book with this id, for [`Client::reading`].
    pub async fn add_book(&self, id: &str) -> Result<(), Status> {
        let book = Book {
            id: id.to_owned(),
            title: "Sized".into(),
            ..Book::default()
        };
        self.store
            .create_book(Request::new(CreateBookRequest { book: Some(book) }))
            .await
            .map(drop)
    }

    /// Where clients dial from now on (a proxy in front of the server).
    pub fn dial(&mut self, addr: SocketAddr) {
        self.addr = addr;
    }

    /// A `CloudRunChannel` builder for this backend, with tokens from the metadata emulator.
    pub fn channel(&self) -> cloud_run_grpc::ChannelBuilder {
        self.channel_with(MetadataServer::with_host(self.metadata.host()))
    }

    /// The same, with another token source.
    pub fn channel_with(&self, source: impl IdTokenSource) -> cloud_run_grpc::ChannelBuilder {
        let builder = CloudRunChannel::builder(HOST)
            .connect_to(self.addr)
            .token_source(source);
        if self.cleartext {
            builder.plaintext()
        } else {
            builder.ca_certificate(self.ca_pem.clone())
        }
    }

    /// The floor: a bare tonic channel to the same address, with `authorization: Bearer
    /// {token}` put on every request by a trivial interceptor.
    /// `header` is `authorization` (which h2 never adds to its HPACK table, whatever
    /// `sensitive` says) or `x-serverless-authorization` (which it indexes unless `sensitive`).
    pub async fn floor(
        &self,
        token: &str,
        header: &'static str,
        sensitive: bool,
    ) -> Result<Client, Failure> {
        let channel = if self.cleartext {
            Endpoint::from_shared(format!("http://{}", self.addr))?
                .origin(format!("http://{HOST}").parse()?)
                .connect()
                .await?
        } else {
            let tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&self.ca_pem))
                .domain_name(HOST);
            Endpoint::from_shared(format!("https://{}", self.addr))?
                .origin(format!("https://{HOST}").parse()?)
                .tls_config(tls)?
                .connect()
                .await?
        };
        let header_name = header;
        let mut header: MetadataValue<Ascii> = format!("Bearer {token}").parse()?;
        header.set_sensitive(sensitive);
        Ok(Client::floor(BookstoreClient::with_interceptor(
            channel,
            Bearer(header_name, header),
        )))
    }
}

/// Puts a fixed bearer header on every request.
#[derive(Clone)]
pub struct Bearer(&'static str, MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request.metadata_mut().insert(self.0, self.1.clone());
        Ok(request)
    }
}

/// One of the two clients under comparison, making the same call: `GetBook` of one book.
#[derive(Clone)]
pub struct Client {
    api: Api,
    book: String,
}

#[derive(Clone)]
enum Api {
    Ours(BookstoreClient<CloudRunChannel>),
    Floor(BookstoreClient<InterceptedService<Channel, Bearer>>),
}

impl Client {
    pub fn ours(channel: CloudRunChannel) -> Self {
        Client {
            api: Api::Ours(BookstoreClient::new(channel)),
            book: BOOK_ID.into(),
        }
    }

    fn floor(client: BookstoreClient<InterceptedService<Channel, Bearer>>) -> Self {
        Client {
            api: Api::Floor(client),
            book: BOOK_ID.into(),
        }
    }

    /// Reads the book with this id instead (see [`Backend::add_book`]): the id is the request,
    /// and the book, which carries it, the response.
    pub fn reading(mut self, id: &str) -> Self {
        self.book = id.to_owned();
        self
    }

    /// One unary call: `GetBook` of the book.
    pub async fn call(&mut self) -> Result<(), Status> {
        let request = GetBookRequest {
            id: self.book.clone(),
        };
        match &mut self.api {
            Api::Ours(client) => client.get_book(request).await.map(drop),
            Api::Floor(client) => client.get_book(request).await.map(drop),
        }
    }
}

/// A plain tonic server with no token check, over TLS with a certificate from `ca`, else over
/// cleartext HTTP/2.
async fn plain_server(
    routes: Routes,
    ca: Option<&TestCa>,
    max_streams: Option<u32>,
) -> Result<SocketAddr, Failure> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let incoming = TcpListenerStream::new(listener).map(|stream| {
        stream.inspect(|stream| {
            // Without it Nagle's algorithm holds small HTTP/2 frames back.
            let _ = stream.set_nodelay(true);
        })
    });
    let mut server = Server::builder();
    if let Some(ca) = ca {
        let certificate = ca.issue(HOST)?;
        server = server.tls_config(ServerTlsConfig::new().identity(certificate.identity()))?;
    }
    let server = server
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

/// What a [`frame_counter`] saw clients send, by HTTP/2 frame type.
#[derive(Debug, Default)]
pub struct FrameCounts {
    /// Frames and payload bytes per frame type (index = type, 0..=9).
    pub frames: [AtomicU64; 10],
    pub bytes: [AtomicU64; 10],
    /// DATA frames carrying END_STREAM, and DATA frames with no payload.
    pub data_end_stream: AtomicU64,
    pub empty_data: AtomicU64,
    /// Everything clients sent, frame headers and the connection preface included.
    pub wire_bytes: AtomicU64,
}

impl FrameCounts {
    pub fn reset(&self) {
        let all = self.frames.iter().chain(&self.bytes);
        for counter in all.chain([&self.data_end_stream, &self.empty_data, &self.wire_bytes]) {
            counter.store(0, Ordering::SeqCst);
        }
    }

    fn count(&self, kind: u8, flags: u8, length: u32) {
        let kind = usize::from(kind.min(9));
        self.frames[kind].fetch_add(1, Ordering::Relaxed);
        self.bytes[kind].fetch_add(u64::from(length), Ordering::Relaxed);
        if kind == 0 {
            if flags & 0x1 != 0 {
                self.data_end_stream.fetch_add(1, Ordering::Relaxed);
            }
            if length == 0 {
                self.empty_data.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A TCP proxy that reads the cleartext HTTP/2 clients send through it and counts the frames.
pub async fn frame_counter(target: SocketAddr) -> io::Result<(SocketAddr, Arc<FrameCounts>)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let counts = Arc::new(FrameCounts::default());
    let shared = Arc::clone(&counts);
    // Ends with the server runtime.
    tokio::spawn(async move {
        loop {
            let Ok((inbound, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let counts = Arc::clone(&shared);
            tokio::spawn(async move {
                let Ok(outbound) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let (mut client_read, mut client_write) = inbound.into_split();
                let (mut server_read, mut server_write) = outbound.into_split();
                let down = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                });
                // The connection preface, then frames: a 9-byte header (length, type, flags,
                // stream) and the payload.
                let mut pending: Vec<u8> = Vec::new();
                let mut preface = 24usize;
                let mut buffer = vec![0u8; 64 * 1024];
                while let Ok(n) = client_read.read(&mut buffer).await {
                    if n == 0 || server_write.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                    counts.wire_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    pending.extend_from_slice(&buffer[..n]);
                    let skip = preface.min(pending.len());
                    pending.drain(..skip);
                    preface -= skip;
                    while pending.len() >= 9 {
                        let length = u32::from_be_bytes([0, pending[0], pending[1], pending[2]]);
                        let total = 9 + length as usize;
                        if pending.len() < total {
                            break;
                        }
                        counts.count(pending[3], pending[4], length);
                        pending.drain(..total);
                    }
                }
                down.abort();
            });
        }
    });
    Ok((addr, counts))
}
