//! Stand-ins for Google, to test code that calls Cloud Run with ID tokens — on one machine,
//! with no Google account and no network.
//!
//! # Testing your client
//!
//! [`CloudRun`] serves your tonic routes behind an emulated Cloud Run front end for your
//! service's production host, and hands back a ready [`CloudRunChannel`] that gets its ID
//! tokens from an emulated metadata server. Give it to your `#[cloud_run_client]` struct's
//! `with_channel`, call, and assert on what the front end saw. The whole test, beyond your
//! service (`MemoryBookstore` here) and its generated code (`pb`):
//!
//! ```
//! # use cloud_run_grpc_examples::{MemoryBookstore, pb};
//! use cloud_run_grpc_testkit::CloudRun;
//!
//! #[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app", service = pb::bookstore_cloud_run::Bookstore)]
//! struct Bookstore;
//!
//! #[tokio::test]
//! # async fn unused() {}
//! # #[tokio::main(flavor = "current_thread")]
//! async fn the_front_end_sees_our_audience() -> Result<(), Box<dyn std::error::Error>> {
//!     let cloud_run = CloudRun::serve(Bookstore::HOST, MemoryBookstore::default().routes()).await?;
//!     let books = Bookstore::with_channel(cloud_run.channel());
//!     let mut listed = books.list_books(pb::ListBooksRequest::default()).await?;
//!     assert_eq!(listed.message().await?, None); // the service answered: no books yet
//!     assert_eq!(cloud_run.front().audiences_seen(), [Bookstore::AUDIENCE]);
//!     Ok(())
//! }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> { the_front_end_sees_our_audience() }
//! ```
//!
//! The channel dials the front end with [`connect_to`](cloud_run_grpc::ChannelBuilder::connect_to)
//! and trusts its test CA with
//! [`ca_certificate`](cloud_run_grpc::ChannelBuilder::ca_certificate): no environment
//! variable is read or set, so tests of one binary run in parallel, each with a fixture of its
//! own (its own ports, token cache and counters). The emulators run on the testkit's own Tokio
//! runtime, which outlives every test. From there:
//!
//! - `cloud_run.front()` ([`FrontEnd`]): it answers as Cloud Run's front end does (HTTP 401
//!   with Google's HTML page for a refused token, 403 for a missing one or a caller that is
//!   not an invoker, no gRPC status), counts (`accepted`, `rejected`, `forbidden`, `failed`),
//!   shows what it saw (`audiences_seen`, `last_claims`, `last_rejection`), and fails on demand
//!   (`reject_next`, `fail_next(n, 503)`, an invoker allow-list, clock skew, `restart`,
//!   `goaway`, `stop`).
//! - `cloud_run.metadata()` ([`MetadataEmulator`]): token requests per audience, token
//!   lifetime, latency, faults ([`Fault`]).
//! - [`CloudRun::builder`] for short-lived tokens, a custom audience or plaintext;
//!   [`CloudRun::channel_builder`] for a channel with other options (header, timeout, refresh
//!   policy).
//!
//! This crate depends on `cloud-run-grpc` for that channel; everything else in it speaks plain
//! HTTP and gRPC over real loopback sockets (TLS with a throw-away CA, RS256 tokens), so the
//! emulators test whatever client you use.
//!
//! # The emulators
//!
//! - [`MetadataEmulator`]: the metadata server of Cloud Run, GKE and GCE, issuing RS256 ID
//!   tokens (with latency, failure injection, token reuse like Google's, request counters).
//! - [`FrontEnd`]: Cloud Run's front end: serves your tonic routes over TLS for a host name of
//!   your choice and lets a request through only with a valid ID token for that host,
//!   refusing the others with Cloud Run's HTTP 401/403 pages; [`CloudRunAuthLayer`] is the
//!   same check as a tower layer for your own server (with a gRPC-status mode for servers
//!   that check tokens themselves).
//! - [`OAuthEmulator`]: Google's OAuth token endpoint, for service-account key files: checks
//!   the signed assertion and answers with an ID token (or an access token).
//!   [`ServiceAccount`] makes key files pointing at it, [`CredentialsFile`] writes them (and
//!   `impersonated_service_account` / `authorized_user` ADC files) to a temporary directory.
//! - [`IamEmulator`]: the IAM Credentials API's `generateIdToken` for impersonation, accepting
//!   the access tokens the other emulators issued (a shared [`AccessTokens`] registry).
//! - [`StsEmulator`]: Google's Security Token Service, for workload identity federation: it
//!   exchanges subject tokens of an emulated external identity provider for federated access
//!   tokens the [`IamEmulator`] accepts; [`SubjectTokenServer`] hands those subject tokens out
//!   over HTTP, and [`external_account_json`] writes the `external_account` file that ties
//!   them together.
//! - [`Issuer`] and [`Verifier`]: mint and verify tokens directly, [`TestCa`]: certificates.
//! - Dead connections: [`TcpProxy`] turns its connections silent without closing them,
//!   [`SilentServer`] accepts TCP and never finishes a TLS handshake, [`KeepaliveEnforcer`]
//!   answers too-frequent PINGs with `GOAWAY` `too_many_pings` as a grpc-go server does.
//! - [`ConnectProxy`]: an HTTPS proxy (`CONNECT`) that tunnels named hosts to your emulators,
//!   for clients that honour `HTTPS_PROXY`.
//!
//! Every emulator can add latency and inject failures ([`Fault`]) while it runs, and counts
//! what it was asked. All of them stop, closing their port and connections, when dropped.
//! Started on their own, they run on the Tokio runtime that started them.
//!
//! A metadata emulator answers any HTTP client; here a token is fetched by hand and checked
//! as the front end would:
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use cloud_run_grpc_testkit::MetadataEmulator;
//! use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let metadata = MetadataEmulator::builder()
//!     .token_lifetime(Duration::from_secs(600))
//!     .start()
//!     .await?;
//! let mut socket = tokio::net::TcpStream::connect(metadata.addr()).await?;
//! socket
//!     .write_all(
//!         b"GET /computeMetadata/v1/instance/service-accounts/default/identity\
//!           ?audience=https%3A%2F%2Fbookstore.test.run.app&format=full HTTP/1.1\r\n\
//!           Host: metadata\r\nMetadata-Flavor: Google\r\nConnection: close\r\n\r\n",
//!     )
//!     .await?;
//! let mut response = String::new();
//! socket.read_to_string(&mut response).await?;
//! let token = response.split("\r\n\r\n").nth(1).unwrap_or_default();
//!
//! let claims = metadata
//!     .verifier()
//!     .verify(token, &["https://bookstore.test.run.app"], SystemTime::now())
//!     .expect("a valid token");
//! assert_eq!(claims.email.as_deref(), Some(metadata.email()));
//! assert_eq!(metadata.requests("https://bookstore.test.run.app"), 1);
//! # Ok(()) }
//! ```
//!
//! For a key file, start an [`OAuthEmulator`] and hand its key file to the code under test:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! use cloud_run_grpc_testkit::{CredentialsFile, Fault, OAuthEmulator};
//!
//! let oauth = OAuthEmulator::start().await?;
//! let key_file = CredentialsFile::write(&oauth.key_json())?;
//! // ... run the code under test with GOOGLE_APPLICATION_CREDENTIALS=key_file.path() ...
//! // then break the endpoint and check the error your code reports:
//! oauth.fail_with(Fault::oauth_error("invalid_grant", "Invalid JWT Signature."));
//! assert_eq!(oauth.requests(), 0);
//! # drop(key_file);
//! # Ok(()) }
//! ```
//!
//! [`CloudRunChannel`]: cloud_run_grpc::CloudRunChannel
#![deny(missing_docs)]

mod access_tokens;
mod auth;
mod cloud_run;
mod connect_proxy;
mod connection_faults;
mod credentials;
mod fault;
mod front_end;
mod http;
mod iam;
mod issuer;
mod jwt;
mod keys;
mod metadata;
mod oauth;
mod pages;
mod runtime;
mod service_account;
mod sts;
mod subject_token;
mod sync;
mod tls;
mod verifier;

pub use access_tokens::AccessTokens;
pub use auth::{CloudRunAuth, CloudRunAuthLayer, Refusal, RefusalMode, ResponseFuture};
pub use cloud_run::{CloudRun, CloudRunBuilder};
pub use connect_proxy::ConnectProxy;
pub use connection_faults::{KeepaliveEnforcer, KeepaliveEnforcerBuilder, SilentServer, TcpProxy};
pub use credentials::{
    ADC_FILE_NAME, CredentialsFile, authorized_user_json, external_account_json,
    impersonated_service_account_json,
};
pub use fault::Fault;
pub use front_end::{FrontEnd, FrontEndBuilder};
pub use iam::{GenerateIdTokenRequest, IamEmulator, IamEmulatorBuilder};
pub use issuer::{DEFAULT_EMAIL, DEFAULT_PROJECT_ID, GOOGLE_ISSUER, Issuer, TokenBuilder};
pub use metadata::{
    IDENTITY_PATH, JWKS_PATH, MetadataEmulator, MetadataEmulatorBuilder, TOKEN_PATH,
};
pub use oauth::{
    DEFAULT_AUTHORIZED_USER, JWT_BEARER_GRANT, OAUTH_TOKEN_PATH, OAuthEmulator,
    OAuthEmulatorBuilder,
};
pub use runtime::run_on_testkit_runtime;
pub use service_account::ServiceAccount;
pub use sts::{
    ACCESS_TOKEN_TYPE, DEFAULT_POOL_AUDIENCE, DEFAULT_SUBJECT, IDENTITY_PROVIDER_ISSUER,
    JWT_TOKEN_TYPE, STS_TOKEN_PATH, StsEmulator, StsEmulatorBuilder, TOKEN_EXCHANGE_GRANT,
    TokenExchangeRequest,
};
pub use subject_token::{SUBJECT_TOKEN_PATH, SubjectTokenServer, SubjectTokenServerBuilder};
pub use tls::{ServerCertificate, TestCa};
pub use verifier::{Claims, JwksError, Verifier, VerifyError};
