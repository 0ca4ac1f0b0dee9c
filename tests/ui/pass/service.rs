//! `host` and `service`: the struct derefs to the generated wrapper, so every RPC is a method.

use cloud_run_grpc_examples::pb;

#[cloud_run_grpc::cloud_run_client(
    host = "bookstore-abc123-ew.a.run.app",
    service = pb::bookstore_cloud_run::Bookstore,
)]
pub struct Bookstore;

fn assert_send_sync<T: Send + Sync + 'static>() {}

fn main() {
    assert_eq!(Bookstore::HOST, "bookstore-abc123-ew.a.run.app");
    assert_eq!(Bookstore::URL, "https://bookstore-abc123-ew.a.run.app");
    assert_eq!(Bookstore::AUDIENCE, "https://bookstore-abc123-ew.a.run.app");
    assert_send_sync::<Bookstore>();

    let books = Bookstore::new();
    assert_eq!(books.channel().host(), "bookstore-abc123-ew.a.run.app");
    assert_eq!(books.channel().audience(), Bookstore::AUDIENCE);

    // `Deref` to the wrapper: its RPCs and its `client()` are callable on the struct.
    let wrapper: &pb::bookstore_cloud_run::Bookstore = &books;
    let _tonic_client = wrapper.client();
    let _call = books.create_book(pb::CreateBookRequest::default());

    // `new()`, `Default` and `Clone` all give the one shared channel and token cache.
    let again = Bookstore::default();
    assert!(again.channel().shares_token_cache_with(books.channel()));
    let copy = books.clone();
    assert!(copy.channel().shares_token_cache_with(books.channel()));

    let debug = format!("{books:?}");
    assert!(
        debug.starts_with("Bookstore { url: \"https://bookstore-abc123-ew.a.run.app\""),
        "{debug}"
    );
    assert!(
        debug.contains("audience: \"https://bookstore-abc123-ew.a.run.app\""),
        "{debug}"
    );
}
