//! The doctest proposed for `cloud_run_grpc::cloud_run_client`, kept compiling here.

mod pb {
    pub mod bookstore_cloud_run {
        /// Stands in for the wrapper `cloud-run-grpc-build` generates.
        pub struct Bookstore(cloud_run_grpc::CloudRunChannel);

        impl Bookstore {
            pub fn new(channel: cloud_run_grpc::CloudRunChannel) -> Self {
                Self(channel)
            }
        }
    }
}

use cloud_run_grpc::cloud_run_client;

#[cloud_run_client(
    host = "bookstore-abc123-ew.a.run.app",
    service = pb::bookstore_cloud_run::Bookstore,
    env = "BOOKSTORE_URL",
    timeout = "30s",
)]
pub struct Bookstore;

fn main() {
    assert_eq!(Bookstore::HOST, "bookstore-abc123-ew.a.run.app");
    assert_eq!(Bookstore::URL, "https://bookstore-abc123-ew.a.run.app");
    assert_eq!(Bookstore::AUDIENCE, "https://bookstore-abc123-ew.a.run.app");

    // The process-wide channel, made on first use without I/O; every instance shares it.
    let books = Bookstore::new();
    let again = Bookstore::default();
    assert!(books.channel().shares_token_cache_with(again.channel()));

    // `Deref` to the wrapper: `books.create_book(request).await` calls the RPC.
    let _wrapper: &pb::bookstore_cloud_run::Bookstore = &books;

    // `Debug` shows where it calls, never a token.
    let debug = format!("{books:?}");
    assert!(debug.starts_with("Bookstore { url: \"https://bookstore-abc123-ew.a.run.app\""));
}
