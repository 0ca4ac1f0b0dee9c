//! Build-script helper for `cloud-run-grpc`: compiles `.proto` files without `protoc` and
//! generates tonic clients plus typed Cloud Run wrappers.
//!
//! ```no_run
//! // build.rs
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     cloud_run_grpc_build::configure().compile(&["proto/bookstore.proto"], &["proto"])?;
//!     Ok(())
//! }
//! ```
//!
//! Then, in the crate: `mod pb { cloud_run_grpc::include_proto!("acme.bookstore.v1"); }`.
#![deny(missing_docs)]

mod builder;
mod docs;
mod error;
mod generator;
mod include_file;
mod naming;
mod protos;
mod well_known;
mod wrapper;

pub use builder::Builder;
pub use error::Error;

/// Starts configuring code generation; finish with [`Builder::compile`].
pub fn configure() -> Builder {
    Builder::default()
}
