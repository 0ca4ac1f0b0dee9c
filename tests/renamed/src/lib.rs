//! Generated code and the attribute's expansion in a crate that depends on the runtime as
//! `rt` only: `cloud-run-grpc-build`'s `runtime_crate("::rt")` and `#[cloud_run_client]`'s
//! `crate = "rt"` must name every runtime path through it, or this crate does not compile.
#![deny(warnings, missing_docs)]
#![warn(clippy::pedantic)]

/// The bookstore, generated with `runtime_crate("::rt")`.
pub mod pb {
    rt::include_proto!("acme.bookstore.v1");
}

/// The bookstore as a unit struct, told the runtime's name with `crate = "rt"`.
#[rt::cloud_run_client(
    crate = "rt",
    host = "bookstore-abc123-ew.a.run.app",
    service = pb::bookstore_cloud_run::Bookstore,
)]
pub struct Bookstore;

#[cfg(test)]
mod tests {
    use super::{Bookstore, pb};

    #[test]
    fn the_wrapper_and_the_struct_run_on_the_renamed_runtime() {
        let books = Bookstore::new();
        let channel: &rt::CloudRunChannel = books.channel();
        assert_eq!(channel.host(), "bookstore-abc123-ew.a.run.app");
        assert_eq!(channel.audience(), Bookstore::AUDIENCE);

        // The struct derefs to the generated wrapper, whose tonic client is on the channel.
        let wrapper: &pb::bookstore_cloud_run::Bookstore = &books;
        let _client: pb::bookstore_client::BookstoreClient<rt::CloudRunChannel> = wrapper.client();
        let _call = books.get_book(pb::GetBookRequest::default());

        // The wrapper on its own, on the process-wide channel of the same host.
        let direct = pb::bookstore_cloud_run::Bookstore::new(rt::shared(Bookstore::HOST));
        assert!(
            format!("{direct:?}").starts_with("Bookstore { options: CallOptions"),
            "{direct:?}"
        );
    }
}
