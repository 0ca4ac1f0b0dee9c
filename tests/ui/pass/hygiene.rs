//! Generated code uses absolute paths and prefixed names only: it compiles without the
//! prelude, beside items that shadow every name it could use, under `missing_docs`.
#![deny(warnings, missing_docs)]

/// Clients, in a module without the prelude.
pub mod clients {
    #![no_implicit_prelude]

    /// Shadows of what generated code might name.
    pub mod core {}
    /// Shadows of what generated code might name.
    pub mod std {}
    /// Shadows of what generated code might name.
    pub mod cloud_run_grpc {}
    /// Shadows of what generated code might name.
    pub struct Option;
    /// Shadows of what generated code might name.
    pub struct Some;
    /// Shadows of what generated code might name.
    pub struct None;
    /// Shadows of what generated code might name.
    pub struct Duration;
    /// Shadows of what generated code might name.
    pub trait Clone {}
    /// Shadows of what generated code might name.
    pub trait Default {}
    /// Shadows of what generated code might name.
    pub trait Debug {}
    /// Shadows of what generated code might name.
    pub trait Deref {}
    /// Shadows of what generated code might name.
    pub type Result = ();
    /// Shadows of what generated code might name.
    pub struct CloudRunChannel;

    /// A hand-written wrapper.
    pub struct Wrapper;

    impl Wrapper {
        /// Wraps a channel.
        pub fn new(_: ::cloud_run_grpc::CloudRunChannel) -> Self {
            Wrapper
        }
    }

    /// The bookstore.
    #[::cloud_run_grpc::cloud_run_client(
        host = "bookstore-abc123-ew.a.run.app",
        service = Wrapper,
        audience = "aud",
        env = "UI_HYGIENE_URL",
        header = "authorization",
        timeout = "1s",
    )]
    pub struct Bookstore;

    /// The bookstore, as a tonic client.
    #[::cloud_run_grpc::cloud_run_client(
        url = "http://127.0.0.1:1",
        client = ::cloud_run_grpc_examples::pb::bookstore_client::BookstoreClient,
    )]
    pub struct Raw;
}

fn main() {
    let books = clients::Bookstore::new();
    let _wrapper: &clients::Wrapper = &books;
    let _client = clients::Raw::default().client();
}
