//! Call gRPC services on Google Cloud Run with ID tokens that fetch and refresh themselves.
//!
//! Cloud Run admits a request only with a Google-signed OIDC ID token whose audience is the
//! service's URL, and such tokens expire after an hour. This crate gets those tokens (from the
//! metadata server on Cloud Run, GKE and GCE, or any other [`token::IdTokenSource`]), keeps one
//! fresh in a lock-free cache refreshed in the background, and puts it on every call.
//!
//! # Setup
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [dependencies]
//! cloud-run-grpc = "0.1"
//! tonic = "0.14"
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//!
//! [build-dependencies]
//! cloud-run-grpc-build = "0.1"
//! ```
//!
//! `build.rs` (no `protoc` needed):
//!
//! ```ignore
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     cloud_run_grpc_build::configure().compile(&["proto/bookstore.proto"], &["proto"])?;
//!     Ok(())
//! }
//! ```
//!
//! Then, in your crate, the generated code and a client struct:
//!
//! ```
//! # mod pb { pub mod bookstore_cloud_run {
//! #     // Stands in for the wrapper `cloud-run-grpc-build` generates.
//! #     pub struct Bookstore(cloud_run_grpc::CloudRunChannel);
//! #     impl cloud_run_grpc::__private::ServiceWrapper for Bookstore {
//! #         fn from_channel(channel: cloud_run_grpc::CloudRunChannel) -> Self { Self(channel) }
//! #     }
//! # } }
//! # /*
//! mod pb {
//!     cloud_run_grpc::include_proto!("acme.bookstore.v1");
//! }
//! # */
//!
//! /// The bookstore service on Cloud Run.
//! #[cloud_run_grpc::cloud_run_client(
//!     host = "bookstore-abc123-ew.a.run.app",
//!     service = pb::bookstore_cloud_run::Bookstore,
//! )]
//! pub struct Bookstore;
//!
//! # fn main() {
//! let books = Bookstore::new(); // the process-wide channel: no I/O until the first call
//! // let book = books.create_book(request).await?;  — `&self`, no context, no token code
//! assert_eq!(books.channel().audience(), "https://bookstore-abc123-ew.a.run.app");
//! # }
//! ```
//!
//! Every method of the generated wrapper takes `&self` and returns the response message (or a
//! `tonic::Streaming` of them); the struct derefs to the wrapper.
//!
//! # The channel
//!
//! [`CloudRunChannel`] is what every client calls through, and the transport of any
//! tonic-generated client (`FooClient::new(channel)`). Build one yourself to choose where
//! tokens come from, deadlines, a custom audience, or a layer of your own:
//!
//! ```
//! use std::time::Duration;
//! use cloud_run_grpc::CloudRunChannel;
//! use cloud_run_grpc::token::GcloudCli;
//!
//! let channel = CloudRunChannel::builder("bookstore-abc123-ew.a.run.app")
//!     .token_source(GcloudCli::new()) // a developer's machine
//!     .timeout(Duration::from_secs(10)) // every call, streams included
//!     .interceptor(|mut request: tonic::Request<()>| {
//!         request.metadata_mut().insert("x-request-id", "r-42".parse().unwrap());
//!         Ok(request) // runs before the token is added: it never sees it
//!     })
//!     .build()?; // no I/O
//! assert_eq!(channel.url(), "https://bookstore-abc123-ew.a.run.app");
//! // `Bookstore::with_channel(channel)`, or `pb::bookstore_client::BookstoreClient::new(channel)`.
//! # Ok::<(), cloud_run_grpc::Error>(())
//! ```
//!
//! What every call gets, whatever the client:
//! - a valid token, read without a lock; a refresh happens in the background and never delays
//!   a call; a cold call dials while its first token is fetched;
//! - its deadline over the whole call (waiting for a token, connecting, the response and any
//!   stream), sent to the server;
//! - Cloud Run's refusals — HTTP 401 and 403 pages, not gRPC — as the statuses gRPC's HTTP
//!   mapping gives them (`UNAUTHENTICATED`, `PERMISSION_DENIED`), with what to check;
//! - one retry, only when the call provably never reached the service: the front end refused
//!   the token (sent again with another one) or the server refused the stream unprocessed;
//! - dead connections found by HTTP/2 keep-alive and replaced, without the caller's help.
//!
//! # Testing
//!
//! `cloud-run-grpc-testkit` (a dev-dependency) runs Google's metadata server and a
//! Cloud-Run-like front end on loopback, with real TLS and real RS256 tokens, and hands back a
//! [`CloudRunChannel`] for them: a test of your client is a few lines. Its front page shows one.
//!
//! # Where things are
//!
//! | item | what it is |
//! |---|---|
//! | [`cloud_run_client`] | the attribute: a unit struct becomes a client of one service |
//! | [`shared`] | the process-wide channel for a host, which the attribute uses |
//! | [`CloudRunChannel`], [`ChannelBuilder`] | the channel and its options |
//! | [`token`] | ID tokens: sources, Application Default Credentials, the cache |
//! | [`AuthLayer`] | the token as a tower layer, for a transport of your own |
//! | [`NonGrpcAnswer`] | what a front end said when it did not answer with gRPC |
//! | [`include_proto!`] | includes what `cloud-run-grpc-build` generated |
#![deny(missing_docs)]

mod auth;
mod channel;
mod deadline;
mod error;
mod excerpt;
mod fetch;
mod proxy;
mod registry;
mod sync;
mod tls;
pub mod token;
mod transport;
mod wrapper;

pub use auth::{AuthFuture, AuthHeader, AuthLayer, AuthService, BoxError};
pub use channel::{ChannelBuilder, ChannelService, CloudRunChannel, ResponseFuture};
pub use error::Error;
pub use registry::shared;
pub use transport::{NonGrpcAnswer, ResponseBody};

/// Turns a unit struct into a client of a gRPC service on Cloud Run: no context to pass, no
/// token code. The options, the exact expansion and the errors are documented below.
///
/// ```
/// # mod pb { pub mod bookstore_cloud_run {
/// #     // Stands in for the wrapper `cloud-run-grpc-build` generates.
/// #     pub struct Bookstore(cloud_run_grpc::CloudRunChannel);
/// #     impl cloud_run_grpc::__private::ServiceWrapper for Bookstore {
/// #         fn from_channel(channel: cloud_run_grpc::CloudRunChannel) -> Self { Self(channel) }
/// #     }
/// # } }
/// use cloud_run_grpc::cloud_run_client;
///
/// #[cloud_run_client(
///     host = "bookstore-abc123-ew.a.run.app",
///     service = pb::bookstore_cloud_run::Bookstore,
///     env = "BOOKSTORE_URL",
///     timeout = "30s",
/// )]
/// pub struct Bookstore;
///
/// assert_eq!(Bookstore::HOST, "bookstore-abc123-ew.a.run.app");
/// assert_eq!(Bookstore::URL, "https://bookstore-abc123-ew.a.run.app");
/// assert_eq!(Bookstore::AUDIENCE, "https://bookstore-abc123-ew.a.run.app");
///
/// // The process-wide channel, made on first use without I/O; every instance shares it.
/// let books = Bookstore::new();
/// let again = Bookstore::default();
/// assert!(books.channel().shares_token_cache_with(again.channel()));
///
/// // `Deref` to the wrapper: `books.create_book(request).await` calls the RPC.
/// let _wrapper: &pb::bookstore_cloud_run::Bookstore = &books;
///
/// // `Debug` shows where it calls, never a token.
/// let debug = format!("{books:?}");
/// assert!(debug.starts_with("Bookstore { url: \"https://bookstore-abc123-ew.a.run.app\""));
/// ```
#[doc(inline)]
pub use cloud_run_grpc_macros::cloud_run_client;

/// Includes the code `cloud-run-grpc-build` generated for a protobuf package: the messages,
/// tonic's client (and server, unless turned off) and the Cloud Run wrappers.
///
/// ```ignore
/// mod pb {
///     cloud_run_grpc::include_proto!("acme.bookstore.v1");
/// }
/// ```
///
/// The name is the one on the `package` line of a `.proto` file that `build.rs` compiles.
/// Asked for a package that was not generated, it fails with one error at the name that lists
/// the packages `build.rs` generated:
///
/// ```text
/// error: no protobuf package `acme.bookstore.v2` was generated into OUT_DIR; build.rs generated `acme.bookstore.v1`
/// ```
///
/// It includes `{package}.rs` from `OUT_DIR`, so code that tonic-build or prost-build wrote
/// there is included the same way.
#[macro_export]
macro_rules! include_proto {
    ($($package:tt)*) => {
        $crate::__private::include_proto! { $($package)* }
    };
}

/// What generated code needs, so that a user crate needs no other dependency. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::registry::{SharedSpec, shared_from_spec};
    pub use crate::wrapper::{CallOptions, unary};
    pub use cloud_run_grpc_macros::include_proto;
    pub use {prost, prost_types, tonic, tonic_prost};

    /// Implemented by every wrapper `cloud-run-grpc-build` generates, and how
    /// `#[cloud_run_client(service = …)]` builds one: a path to anything else is one error
    /// that names the wrapper to write.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` is not a Cloud Run wrapper generated by cloud-run-grpc-build",
        label = "`service` takes a generated wrapper, e.g. `pb::bookstore_cloud_run::Bookstore`",
        note = "`cloud-run-grpc-build` generates the wrapper of service `Foo` as `foo_cloud_run::Foo`, next to tonic's `foo_client::FooClient`",
        note = "for a tonic client type, write `client = pb::foo_client::FooClient` instead of `service = …`"
    )]
    pub trait ServiceWrapper: Sized {
        /// The wrapper, calling through `channel`.
        fn from_channel(channel: crate::CloudRunChannel) -> Self;
    }
}
