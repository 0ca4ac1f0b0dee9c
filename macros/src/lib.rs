//! The `#[cloud_run_client]` attribute of [cloud-run-grpc]: annotate a unit struct and call a
//! gRPC service on Cloud Run through it, with no context to pass and no token code to write.
//!
//! Use it through the runtime crate, `cloud_run_grpc::cloud_run_client`; generated code names
//! only the runtime crate, so a user crate needs no other dependency.
//!
//! [cloud-run-grpc]: https://docs.rs/cloud-run-grpc

#![deny(missing_docs)]

mod api;
mod attr;
mod expand;
mod include_proto;

use proc_macro::TokenStream;

/// Turns a unit struct into a client of a gRPC service on Cloud Run.
///
/// ```ignore
/// // Runs as a doctest of `cloud_run_grpc::cloud_run_client`; a proc-macro crate cannot use
/// // its own macro in a doctest without depending on the runtime.
/// mod pb {
///     cloud_run_grpc::include_proto!("acme.bookstore.v1");
/// }
///
/// #[cloud_run_grpc::cloud_run_client(
///     host = "bookstore-abc123-ew.a.run.app",
///     service = pb::bookstore_cloud_run::Bookstore,
/// )]
/// pub struct Bookstore;
///
/// let books = Bookstore::new(); // the shared channel, created on first use
/// let book = books.get_book(pb::GetBookRequest { id: 7 }).await?; // `Deref` to the wrapper
/// ```
///
/// # Options
///
/// | option | value | |
/// |---|---|---|
/// | `host` | `"svc-abc123-ew.a.run.app"` | the Cloud Run host, with a port if needed (`"api.example.com:8443"`), no scheme or path; calls `https://{host}` |
/// | `url` | `"https://…"` | instead of `host`: a full URL, with a port if needed; `http://` only to a loopback address (127.0.0.0/8, `[::1]`, `localhost`) |
/// | `service` | `pb::foo_cloud_run::Foo` | the wrapper `cloud-run-grpc-build` generates for the service; the struct derefs to it |
/// | `client` | `pb::foo_client::FooClient` | instead of `service`: a tonic client type; the struct hands out `client() -> FooClient<CloudRunChannel>` |
/// | `audience` | `"https://…"` | the ID tokens' audience; default `https://{host}` of `host` or `url`, without a port |
/// | `env` | `"BOOKSTORE_URL"` | an environment variable that, when set (and not empty) at run time, replaces the URL |
/// | `header` | `"authorization"` or `"x-serverless-authorization"` | the header carrying the token, named in any case; default `authorization` |
/// | `timeout` | `"500ms"`, `"30s"`, `"2m"` | a deadline for each call |
/// | `crate` | `"cloud_run_grpc"` | the path of the runtime crate, if renamed; default `::cloud_run_grpc` |
///
/// Exactly one of `host` and `url`, and exactly one of `service` and `client`, are required.
///
/// # What it expands to
///
/// With `service = Wrapper` (`crate` stands for the runtime path, `::cloud_run_grpc` by
/// default):
///
/// ```ignore
/// pub struct Bookstore {
///     __cloud_run_grpc_channel: crate::CloudRunChannel,
///     __cloud_run_grpc_service: Wrapper,
/// }
///
/// impl Bookstore {
///     pub const HOST: &'static str = "bookstore-abc123-ew.a.run.app";
///     pub const URL: &'static str = "https://bookstore-abc123-ew.a.run.app";
///     pub const AUDIENCE: &'static str = "https://bookstore-abc123-ew.a.run.app";
///
///     pub fn new() -> Self {
///         Self::with_channel(crate::__private::shared_from_spec(&crate::__private::SharedSpec {
///             url: Self::URL,
///             audience: None,   // Some("...") with `audience = "..."`
///             env: None,        // Some("BOOKSTORE_URL") with `env = "BOOKSTORE_URL"`
///             header: None,     // Some("x-serverless-authorization") with `header = "..."`
///             timeout: None,    // Some(Duration::from_millis(30000)) with `timeout = "30s"`
///         }))
///     }
///     pub fn with_channel(__cloud_run_grpc_channel: crate::CloudRunChannel) -> Self {
///         Self {
///             __cloud_run_grpc_service: <Wrapper as crate::__private::ServiceWrapper>::from_channel(
///                 __cloud_run_grpc_channel.clone(),
///             ),
///             __cloud_run_grpc_channel,
///         }
///     }
///     pub fn channel(&self) -> &crate::CloudRunChannel { &self.__cloud_run_grpc_channel }
/// }
///
/// impl Deref for Bookstore { type Target = Wrapper; /* the wrapper */ }
/// impl Clone for Bookstore { /* with_channel(self.channel().clone()) */ }
/// impl Default for Bookstore { /* new() */ }
/// impl Debug for Bookstore { /* Bookstore { url: URL, channel: CloudRunChannel { host, audience, .. } } */ }
/// ```
///
/// With `client = FooClient` instead, the struct holds only the channel, has no `Deref`, and
/// adds:
///
/// ```ignore
/// impl Bookstore {
///     pub fn client(&self) -> FooClient<crate::CloudRunChannel> {
///         <FooClient<crate::CloudRunChannel>>::new(self.__cloud_run_grpc_channel.clone())
///     }
/// }
/// ```
///
/// `new()` asks the runtime for the process-wide channel of this configuration: the first
/// call creates it (no I/O), later calls and other instances, even of other structs with the
/// same configuration, share it and its token cache. Each call of `new()` reads the `env`
/// variable; when it is set, the URL it names replaces [`URL`], and without an `audience`
/// option the tokens' audience becomes `https://{host}` of that URL (staging and production
/// are different services); [`AUDIENCE`] is the audience for the compiled-in URL.
///
/// `Debug` shows `URL` and the channel (its host, audience and token source), never a token.
///
/// [`URL`]: #what-it-expands-to
/// [`AUDIENCE`]: #what-it-expands-to
///
/// # Errors
///
/// Bad input is a compile error at the span of the mistake, saying what to write: a missing
/// or doubled `host`/`url` or `service`/`client`; a host with a scheme, path, user name,
/// invalid port or invalid characters; a `url` that is not `https://` (except `http://` to
/// loopback), or has a path or a user name (the same rules as the runtime's, from
/// `cloud-run-grpc-endpoint`); a `header` Cloud Run does not read tokens from; an unknown or
/// repeated option; a malformed duration; a `#[derive]` of `Clone`, `Default` or `Debug`
/// (the expansion implements them) or of `PartialEq`, `Eq`, `PartialOrd`, `Ord`, `Hash` or
/// `Copy` (the channel implements none of them); a `service` that is not a generated wrapper
/// (tonic's `foo_client::FooClient`, the server's `foo_server::Foo`, the module
/// `foo_cloud_run`, or any other type: the error names the wrapper, `foo_cloud_run::Foo`, and
/// `client = …` for the raw tonic client); a `client` that is the wrapper; and any item other
/// than a unit struct without generics.
///
/// The expansion is still emitted beside the errors, so the rest of the crate finds `new()`,
/// the constants, `Deref` or `client()` and reports nothing more: one mistake gives one
/// error. A wrong or missing `host`/`url` gives the placeholder URL `https://invalid.invalid`;
/// a wrong optional option, or a conflicting derive, is left out; a `client` written with its
/// type parameter, or a `service` path in quotes, is used as meant; a `service` that names
/// tonic's client, the server or the wrapper's module is used as the wrapper it names, and a
/// `client` that is the wrapper as `service`; with both `service` and `client`, `service` is
/// used; with neither, only what does not depend on them is emitted.
/// An item other than a unit struct without generics is emitted unchanged.
#[proc_macro_attribute]
pub fn cloud_run_client(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::cloud_run_client(args.into(), item.into()).into()
}

/// Includes the code `cloud-run-grpc-build` generated for a protobuf package; used through
/// `cloud_run_grpc::include_proto!`, which documents it.
#[doc(hidden)]
#[proc_macro]
pub fn include_proto(input: TokenStream) -> TokenStream {
    include_proto::include_proto(input.into()).into()
}
