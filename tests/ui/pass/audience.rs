//! `audience`: a custom audience, as Cloud Run allows them.

use cloud_run_grpc_examples::pb;

#[cloud_run_grpc::cloud_run_client(
    host = "bookstore-abc123-ew.a.run.app",
    service = pb::bookstore_cloud_run::Bookstore,
    audience = "https://books.example.com",
)]
pub struct Bookstore;

fn main() {
    assert_eq!(Bookstore::AUDIENCE, "https://books.example.com");
    let books = Bookstore::new();
    assert_eq!(books.channel().audience(), "https://books.example.com");
    assert_eq!(books.channel().host(), "bookstore-abc123-ew.a.run.app");
}
