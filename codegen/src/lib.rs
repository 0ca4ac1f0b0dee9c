//! Build-script helper for [`cloud-run-grpc`]: compiles `.proto` files with no `protoc`
//! installed, and generates tonic clients plus a typed `&self` wrapper per service that calls
//! Cloud Run with self-refreshing ID tokens.
//!
//! ```no_run
//! // build.rs
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     cloud_run_grpc_build::configure().compile(&["proto/bookstore.proto"], &["proto"])?;
//!     Ok(())
//! }
//! ```
//!
//! ```toml
//! # Cargo.toml: the generated code needs only these two crates.
//! [dependencies]
//! cloud-run-grpc = "0.1"
//! tonic = { version = "0.14", default-features = false, features = ["codegen"] }
//!
//! [build-dependencies]
//! cloud-run-grpc-build = "0.1"
//! ```
//!
//! ```ignore
//! // src/main.rs
//! mod pb {
//!     cloud_run_grpc::include_proto!("acme.bookstore.v1");
//! }
//!
//! let books = pb::bookstore_cloud_run::Bookstore::new(cloud_run_grpc::shared("bookstore-abc123-ew.a.run.app"));
//! let book = books.create_book(pb::CreateBookRequest { book: Some(book) }).await?;
//! let mut listed = books.with_timeout(Duration::from_secs(5)).list_books(request).await?;
//! ```
//!
//! # What is generated
//!
//! One file per protobuf package, `{package}.rs` in `OUT_DIR` (what
//! `cloud_run_grpc::include_proto!("acme.bookstore.v1")` includes; the list of the packages,
//! `cloud-run-grpc-packages.txt`, is what it shows when asked for one that is not there),
//! holding:
//!
//! - the prost messages and enums, with the proto comments as docs;
//! - tonic's `bookstore_client::BookstoreClient<T>` and, unless
//!   [`build_server(false)`](Builder::build_server), `bookstore_server`;
//! - per service, a module `bookstore_cloud_run` with the wrapper `Bookstore`:
//!
//! ```ignore
//! impl Bookstore {
//!     pub fn new(channel: CloudRunChannel) -> Self;
//!     pub fn client(&self) -> BookstoreClient<CloudRunChannel>;      // the tonic client
//!     pub fn with_timeout(&self, timeout: Duration) -> Self;          // a copy, per call
//!     pub fn with_metadata(&self, key: MetadataKey<Ascii>, value: MetadataValue<Ascii>) -> Self;
//!     // unary: the message in, the message out
//!     pub async fn create_book(&self, request: CreateBookRequest) -> Result<Book, Status>;
//!     // server streaming
//!     pub async fn list_books(&self, request: ListBooksRequest) -> Result<Streaming<Book>, Status>;
//!     // client streaming: any stream of request messages
//!     pub async fn upload_books(&self, requests: impl Stream<Item = Book> + Send + 'static)
//!         -> Result<UploadBooksResponse, Status>;
//!     // bidirectional streaming
//!     pub async fn chat(&self, requests: impl Stream<Item = ChatMessage> + Send + 'static)
//!         -> Result<Streaming<ChatMessage>, Status>;
//! }
//! ```
//!
//! The channel sends a unary or server-streaming call again once, and only when it provably
//! never reached the service: Cloud Run's front end refused the token (HTTP 401; sent again
//! with another token), or the server refused the stream unprocessed (`REFUSED_STREAM`, a
//! `GOAWAY` below it). A `Status` from the service is its answer and is never retried. A client
//! or bidirectional stream is sent again only when all its messages were ready as the call
//! started (the request was then whole); one still being produced cannot be replayed, and a
//! refused token is still dropped, so the caller's next call carries a new one.
//!
//! Streaming requests are `impl Stream<Item = Req> + Send + 'static` rather than tonic's
//! `impl IntoStreamingRequest`: the signature then says plainly "a stream of `Book`"
//! (`tokio_stream::iter(books)`, a `ReceiverStream`, …), and there is exactly one way to set
//! a deadline or metadata for every kind of call, [`with_timeout`/`with_metadata`], instead of
//! two that would have to be merged. A hand-built `tonic::Request` still works through
//! `client()`.
//!
//! # Names
//!
//! - Methods are prost's snake_case names, so a Rust keyword becomes a raw identifier
//!   (`rpc Type` → `r#type`, `rpc Async` → `r#async`); `self`, `super`, `crate` and `Self`,
//!   which cannot be raw, get an underscore (`rpc Self` → `self_`), as in tonic's client.
//! - An RPC whose name is the wrapper's own (`new`, `client`, `with_timeout`,
//!   `with_metadata`) gets `_rpc` appended: `rpc Client` → `client_rpc`. Its doc says so.
//! - The wrapper module is the service name in snake_case plus `_cloud_run`, as tonic's is
//!   plus `_client`: a message `BookstoreCloudRun` with nested types would clash with it
//!   the way a message `BookstoreClient` clashes with tonic's.
//! - Generated code names the runtime, tonic and std only through absolute paths
//!   (`::cloud_run_grpc::…`, `::tonic::…`, `::core::…`), and messages through `super::`, so
//!   it compiles whatever the including module imports or defines. prost, prost-types
//!   (the well-known types) and tonic's prost codec are reached through the runtime's hidden
//!   re-exports, so no prost crate is needed as a dependency. A crate that depends on the
//!   runtime under another name says so with [`runtime_crate`](Builder::runtime_crate).
//! - Generated code passes `clippy::pedantic`, as it lands in crates that may deny it: what
//!   tonic's and prost's templates trip (client methods without `# Errors`, prost's enum
//!   helpers that could be `#[must_use]`, …) is allowed on exactly the items that trip it,
//!   and proto comments, copied as the proto's author wrote them, are not held to
//!   `clippy::doc_markdown`.
//! - Proto comments become docs and `option deprecated = true` becomes `#[deprecated]`, on
//!   services and methods. Every generated item is documented; messages are documented when
//!   the proto comments them, so `#![deny(missing_docs)]` holds for commented protos. The
//!   [`include_file`](Builder::include_file), if asked for, documents its modules too.
//!
//! # Errors
//!
//! A proto that does not compile fails the build with a message naming the file, line,
//! column and reason, and showing the line:
//!
//! ```text
//! Error: proto/bookstore.proto:12:3: expected ';' or '[', but found 'string'
//!     12 |   string title = 2;
//!        |   ^^^^^^ found here
//! ```
//!
//! [`cloud-run-grpc`]: https://docs.rs/cloud-run-grpc
//! [`with_timeout`/`with_metadata`]: #what-is-generated
#![deny(missing_docs)]

mod builder;
mod docs;
mod error;
mod generator;
mod include_file;
mod naming;
mod package_list;
mod pedantic;
mod protos;
mod runtime;
mod well_known;
mod wrapper;

pub use builder::Builder;
pub use error::Error;

/// Starts configuring code generation; finish with [`Builder::compile`].
///
/// Defaults: protox (no `protoc`), client, server and Cloud Run wrappers, output to `OUT_DIR`,
/// `cargo:rerun-if-changed` for every proto read.
pub fn configure() -> Builder {
    Builder::default()
}
