//! The test fixture: a Cloud Run service on loopback, and a channel to it.

use std::fmt;
use std::io;
use std::time::Duration;

use std::sync::Arc;

use cloud_run_grpc::token::{Clock, MetadataServer, SystemClock};
use cloud_run_grpc::{ChannelBuilder, CloudRunChannel};
use tonic::service::Routes;

use crate::front_end::FrontEnd;
use crate::metadata::MetadataEmulator;
use crate::verifier::Verifier;

/// The deadline of calls on the fixture's channel: a test that goes wrong fails instead of
/// hanging `cargo test`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Your service on an emulated Cloud Run, and a [`CloudRunChannel`] that calls it the way
/// production would: one call starts a [`MetadataEmulator`] and a [`FrontEnd`] serving your
/// tonic routes for the **production** host, and builds a channel for that host and its
/// production audience (`https://{host}`), with ID tokens from the metadata emulator.
///
/// Nothing is read from or written to the environment: the channel dials the front end through
/// [`ChannelBuilder::connect_to`] and trusts its test CA through
/// [`ChannelBuilder::ca_certificate`], so any number of fixtures run side by side, in parallel
/// tests of one binary. Each gets its own emulators, ports, token cache and counters, so a
/// test's assertions see only its own calls.
///
/// The emulators run on the testkit's own Tokio runtime, which outlives every test's runtime:
/// the fixture works from `#[tokio::test]`s of any flavor (start one per test), from plain
/// `#[test]`s, and in a `static` shared by many tests (see
/// [`serve_blocking`](CloudRunBuilder::serve_blocking)). Dropping it stops the emulators.
///
/// With a `#[cloud_run_client]` struct, hand the channel to its `with_channel`:
///
/// ```
/// # use cloud_run_grpc_examples::{pb, MemoryBookstore};
/// use cloud_run_grpc_testkit::CloudRun;
///
/// #[cloud_run_grpc::cloud_run_client(
///     host = "bookstore-abc123-ew.a.run.app",
///     service = pb::bookstore_cloud_run::Bookstore
/// )]
/// struct Bookstore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cloud_run = CloudRun::builder(Bookstore::HOST)
///     .token_lifetime(std::time::Duration::from_secs(600))
///     .serve(MemoryBookstore::default().routes())
///     .await?;
/// let books = Bookstore::with_channel(cloud_run.channel());
/// books.list_books(pb::ListBooksRequest::default()).await?;
/// assert_eq!(cloud_run.front().accepted(), 1);
/// assert_eq!(cloud_run.metadata().requests(Bookstore::AUDIENCE), 1);
/// let caller = cloud_run.front().last_claims().unwrap();
/// assert_eq!(caller.email.as_deref(), Some(cloud_run.metadata().email()));
/// # Ok(()) }
/// ```
pub struct CloudRun {
    metadata: MetadataEmulator,
    front: FrontEnd,
    channel: CloudRunChannel,
    spec: ChannelSpec,
}

/// What a channel to the fixture is built from.
struct ChannelSpec {
    host: String,
    addr: std::net::SocketAddr,
    /// The front end's CA; `None` when it serves plaintext.
    ca_certificate: Option<String>,
    metadata_host: String,
    audience: String,
    clock: Arc<dyn Clock>,
    timeout: Duration,
}

impl ChannelSpec {
    fn builder(&self) -> ChannelBuilder {
        let builder = CloudRunChannel::builder(self.host.clone())
            .audience(self.audience.clone())
            .connect_to(self.addr)
            .token_source(MetadataServer::with_host(self.metadata_host.clone()))
            .clock(self.clock.clone())
            .timeout(self.timeout);
        match &self.ca_certificate {
            Some(pem) => builder.ca_certificate(pem.clone()),
            None => builder.plaintext(),
        }
    }
}

/// Configures a [`CloudRun`]; [`serve`](CloudRunBuilder::serve) starts it.
#[derive(Debug, Clone)]
pub struct CloudRunBuilder {
    clock: Arc<dyn Clock>,
    host: String,
    audience: Option<String>,
    custom_audiences: Vec<String>,
    verifier: Option<Verifier>,
    token_lifetime: Option<Duration>,
    latency: Duration,
    plaintext: bool,
    timeout: Duration,
}

impl CloudRun {
    /// A fixture for the service at `host` (e.g. `bookstore-abc123-ew.a.run.app`: your
    /// client's production host; a `#[cloud_run_client]` struct has it as `HOST`).
    pub fn builder(host: impl Into<String>) -> CloudRunBuilder {
        CloudRunBuilder {
            clock: Arc::new(SystemClock),
            host: host.into(),
            audience: None,
            custom_audiences: Vec::new(),
            verifier: None,
            token_lifetime: None,
            latency: Duration::ZERO,
            plaintext: false,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Serves `routes` for `host` with the defaults: one-hour tokens, the audience
    /// `https://{host}`, TLS. Build `routes` with
    /// `tonic::service::Routes::new(FooServer::new(my_impl))`.
    pub async fn serve(host: impl Into<String>, routes: Routes) -> io::Result<CloudRun> {
        CloudRun::builder(host).serve(routes).await
    }

    /// A client channel to the service, ready to use: the production host and audience,
    /// tokens from the metadata emulator, a 30 s deadline per call. Clones share its
    /// connections and token cache; to change an option, start from
    /// [`channel_builder`](CloudRun::channel_builder).
    pub fn channel(&self) -> CloudRunChannel {
        self.channel.clone()
    }

    /// A builder for another channel to the service, set up as [`channel`](CloudRun::channel)
    /// is, to change an option before `build()` (`header`, `timeout`, `refresh_policy`, ...).
    /// Each channel it builds has a token cache of its own.
    pub fn channel_builder(&self) -> ChannelBuilder {
        self.spec.builder()
    }

    /// The runtime's metadata-server token source, pointed at the emulator.
    pub fn token_source(&self) -> MetadataServer {
        MetadataServer::with_host(self.metadata.host())
    }

    /// The emulated Cloud Run front end: what it accepted and refused, the audiences it saw
    /// ([`FrontEnd::audiences_seen`]), and knobs to make it fail.
    pub fn front(&self) -> &FrontEnd {
        &self.front
    }

    /// The metadata-server emulator issuing the channel's tokens: counters, lifetime, faults.
    pub fn metadata(&self) -> &MetadataEmulator {
        &self.metadata
    }

    /// The service's host.
    pub fn host(&self) -> &str {
        self.front.host()
    }

    /// The audience the channel asks tokens for: `https://{host}` unless
    /// [`CloudRunBuilder::audience`] set another.
    pub fn audience(&self) -> &str {
        &self.spec.audience
    }
}

impl CloudRunBuilder {
    /// The audience the client sends, for a client configured with a custom audience (the
    /// attribute's `audience`, the builder's `audience`). The front end accepts it as a custom
    /// audience of the service, and `https://{host}` as Cloud Run always does.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Another audience the front end accepts, without the channel asking for it: one of the
    /// service's custom audiences, or the audience a token source puts in tokens whatever it is
    /// asked (gcloud's user tokens).
    pub fn custom_audience(mut self, audience: impl Into<String>) -> Self {
        self.custom_audiences.push(audience.into());
        self
    }

    /// The keys the front end trusts (default the metadata emulator's issuer), for a channel
    /// whose tokens come from elsewhere (see [`CloudRun::channel_builder`] and its
    /// `token_source`).
    pub fn verifier(mut self, verifier: Verifier) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// The lifetime of the ID tokens the metadata emulator mints (default one hour); short
    /// lifetimes make refreshes happen within a test.
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = Some(lifetime);
        self
    }

    /// Latency the metadata emulator adds to every token request (default none).
    pub fn token_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// One clock for the whole fixture (default the system's): the metadata emulator mints
    /// tokens by it, the front end judges their expiry by it and the channel's token cache
    /// refreshes by it. With a [`ManualClock`](cloud_run_grpc::token::ManualClock), a test
    /// moves through hours of token lifetimes in milliseconds, over real sockets:
    ///
    /// ```
    /// # use cloud_run_grpc_examples::{pb, MemoryBookstore};
    /// use std::{sync::Arc, time::Duration};
    /// use cloud_run_grpc::token::ManualClock;
    /// use cloud_run_grpc_testkit::CloudRun;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let clock = Arc::new(ManualClock::new());
    /// let cloud_run = CloudRun::builder("bookstore-abc123-ew.a.run.app")
    ///     .clock(clock.clone())
    ///     .serve(MemoryBookstore::default().routes())
    ///     .await?;
    /// let books = pb::bookstore_cloud_run::Bookstore::new(cloud_run.channel());
    /// books.list_books(pb::ListBooksRequest::default()).await?;
    /// clock.advance(Duration::from_secs(3 * 3600)); // three one-hour tokens later
    /// books.list_books(pb::ListBooksRequest::default()).await?;
    /// assert_eq!(cloud_run.metadata().tokens_minted(), 2);
    /// # Ok(()) }
    /// ```
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Serves cleartext HTTP/2 instead of TLS (the channel then uses `plaintext()`, which it
    /// allows to loopback only).
    pub fn plaintext(mut self) -> Self {
        self.plaintext = true;
        self
    }

    /// The deadline of every call on the fixture's channels (default 30 seconds).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Starts the emulators on the testkit's own runtime and builds the channel.
    pub async fn serve(self, routes: Routes) -> io::Result<CloudRun> {
        crate::runtime::background()?
            .spawn(self.start(routes))
            .await
            .map_err(|error| io::Error::other(format!("the fixture failed to start: {error}")))?
    }

    /// [`serve`](CloudRunBuilder::serve) for synchronous code, such as the initialiser of a
    /// `static` that several tests share (each then sees the others' calls in the counters):
    ///
    /// ```
    /// use std::sync::LazyLock;
    /// # use cloud_run_grpc_examples::MemoryBookstore;
    /// use cloud_run_grpc_testkit::CloudRun;
    ///
    /// static BOOKSTORE: LazyLock<CloudRun> = LazyLock::new(|| {
    ///     CloudRun::builder("bookstore-abc123-ew.a.run.app")
    ///         .serve_blocking(MemoryBookstore::default().routes())
    ///         .expect("the fixture starts")
    /// });
    /// # assert_eq!(BOOKSTORE.host(), "bookstore-abc123-ew.a.run.app");
    /// ```
    ///
    /// It blocks the calling thread until the emulators listen (a few milliseconds); in async
    /// code, `serve(..).await` instead.
    pub fn serve_blocking(self, routes: Routes) -> io::Result<CloudRun> {
        crate::runtime::run_on_testkit_runtime(self.start(routes))?
    }

    async fn start(self, routes: Routes) -> io::Result<CloudRun> {
        // The host's mistakes (a URL, a port) are the channel's to explain, before anything
        // else trips over them.
        let mut check = CloudRunChannel::builder(self.host.clone());
        if let Some(audience) = &self.audience {
            check = check.audience(audience.clone());
        }
        check.build().map_err(bad_input)?;
        let mut metadata = MetadataEmulator::builder()
            .clock(self.clock.clone())
            .latency(self.latency);
        if let Some(lifetime) = self.token_lifetime {
            metadata = metadata.token_lifetime(lifetime);
        }
        let metadata = metadata.start().await?;
        let verifier = self.verifier.unwrap_or_else(|| metadata.verifier());
        let mut front = FrontEnd::builder(self.host.clone())
            .clock(self.clock.clone())
            .verifier(verifier);
        for audience in self.audience.iter().chain(&self.custom_audiences) {
            front = front.audience(audience.clone());
        }
        if self.plaintext {
            front = front.plaintext();
        }
        let front = front.serve(routes).await?;
        let audience = self.audience.unwrap_or_else(|| front.audience().to_owned());
        let spec = ChannelSpec {
            host: self.host,
            addr: front.addr(),
            ca_certificate: front.is_tls().then(|| front.ca_certificate_pem()),
            metadata_host: metadata.host(),
            audience,
            clock: self.clock,
            timeout: self.timeout,
        };
        let channel = spec.builder().build().map_err(bad_input)?;
        Ok(CloudRun {
            metadata,
            front,
            channel,
            spec,
        })
    }
}

/// The fixture's host or audience is not one a channel takes.
fn bad_input(error: cloud_run_grpc::Error) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("the fixture cannot build a channel for this host: {error}"),
    )
}

impl fmt::Debug for CloudRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudRun")
            .field("host", &self.host())
            .field("audience", &self.spec.audience)
            .field("front", &self.front)
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}
