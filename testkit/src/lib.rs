//! Stand-ins for Google, to test code that calls Cloud Run with ID tokens — on one machine,
//! with no Google account and no network.
//!
//! - [`MetadataEmulator`]: the metadata server of Cloud Run, GKE and GCE, issuing RS256 ID
//!   tokens (with latency, failure injection, token reuse like Google's, request counters).
//! - [`FrontEnd`]: Cloud Run's front end: serves your tonic routes over TLS for a host name of
//!   your choice and lets a request through only with a valid ID token for that host;
//!   [`CloudRunAuthLayer`] is the same check as a tower layer for your own server.
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
//!
//! Every emulator can add latency and inject failures ([`Fault`]) while it runs, and counts
//! what it was asked. All of them stop, closing their port and connections, when dropped.
//!
//! The testkit does not depend on any client library: it speaks HTTP and gRPC over real
//! loopback sockets, so it tests whatever client you use.
//!
//! # Testing your client
//!
//! Start the emulators, point your client at them, call, and assert on the counters:
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use cloud_run_grpc_testkit::{MetadataEmulator, Verifier};
//! use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let metadata = MetadataEmulator::builder()
//!     .token_lifetime(Duration::from_secs(600))
//!     .start()
//!     .await?;
//! // Your code would read `GCE_METADATA_HOST`; here we fetch a token by hand.
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
//! // The same check the front end makes.
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
//! With a gRPC service, serve it behind a [`FrontEnd`] and connect your client to
//! `front.addr()` with `front.host()` as the TLS name, trusting `front.ca_certificate_pem()`:
//!
//! ```no_run
//! # async fn run(routes: tonic::service::Routes) -> std::io::Result<()> {
//! use cloud_run_grpc_testkit::{Fault, FrontEnd, MetadataEmulator};
//!
//! let metadata = MetadataEmulator::start().await?;
//! let front = FrontEnd::builder("bookstore.test.run.app")
//!     .verifier(metadata.verifier())
//!     .serve(routes) // tonic::service::Routes::new(BookstoreServer::new(MyBookstore))
//!     .await?;
//! // ... run your client with GCE_METADATA_HOST=metadata.host() against front.addr() ...
//! metadata.fail_with(Fault::Hang); // the metadata server stops answering
//! front.set_clock_skew(std::time::Duration::from_secs(3600)); // every token now looks expired
//! assert_eq!(front.rejected(), 0);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod access_tokens;
mod auth;
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
mod service_account;
mod sts;
mod subject_token;
mod sync;
mod tls;
mod verifier;

pub use access_tokens::AccessTokens;
pub use auth::{CloudRunAuth, CloudRunAuthLayer, ResponseFuture};
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
pub use service_account::ServiceAccount;
pub use sts::{
    ACCESS_TOKEN_TYPE, DEFAULT_POOL_AUDIENCE, DEFAULT_SUBJECT, IDENTITY_PROVIDER_ISSUER,
    JWT_TOKEN_TYPE, STS_TOKEN_PATH, StsEmulator, StsEmulatorBuilder, TOKEN_EXCHANGE_GRANT,
    TokenExchangeRequest,
};
pub use subject_token::{SUBJECT_TOKEN_PATH, SubjectTokenServer, SubjectTokenServerBuilder};
pub use tls::{ServerCertificate, TestCa};
pub use verifier::{Claims, JwksError, Verifier, VerifyError};
