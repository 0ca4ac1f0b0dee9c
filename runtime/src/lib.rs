//! Call gRPC services on Google Cloud Run with ID tokens that fetch and refresh themselves.
//!
//! Cloud Run admits a request only with a Google-signed OIDC ID token whose audience is the
//! service's URL, and such tokens expire after an hour. This crate's [`CloudRunChannel`] gets
//! those tokens (from the metadata server on Cloud Run, GKE and GCE, or any other
//! [`token::IdTokenSource`]), keeps one fresh in a lock-free cache refreshed in the background,
//! and puts it on every request. It is the transport of any tonic client:
//!
//! ```
//! # fn main() -> Result<(), cloud_run_grpc::Error> {
//! use cloud_run_grpc::CloudRunChannel;
//!
//! let channel = CloudRunChannel::builder("bookstore-abc123-ew.a.run.app").build()?; // no I/O
//! // `pb::bookstore_client::BookstoreClient::new(channel)`, or any tonic client:
//! let client = tonic::client::Grpc::new(channel);
//! # let _ = client;
//! # Ok(()) }
//! ```
//!
//! Most programs need less: `cloud-run-grpc-build` generates, next to tonic's client, a wrapper
//! per service whose methods take `&self` and return the response message, and
//! [`cloud_run_client`] turns a unit struct into a client of one service on the process-wide
//! [`shared`] channel:
//!
//! ```ignore
//! #[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app", service = pb::bookstore_cloud_run::Bookstore)]
//! pub struct Bookstore;
//!
//! let book = Bookstore::new().create_book(request).await?; // no context, no token handling
//! ```
//!
//! The `examples/bookstore` program of this crate's repository runs all of it on one machine,
//! against the emulators of `cloud-run-grpc-testkit`.
#![deny(missing_docs)]

mod auth;
mod channel;
mod deadline;
mod error;
mod fetch;
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
