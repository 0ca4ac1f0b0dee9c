//! `client`: a plain tonic client on the shared channel, for users of plain tonic-build.

use cloud_run_grpc::CloudRunChannel;
use cloud_run_grpc_examples::pb::bookstore_client::BookstoreClient;

#[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app", client = BookstoreClient)]
pub struct Bookstore;

fn main() {
    let books = Bookstore::new();
    let mut client: BookstoreClient<CloudRunChannel> = books.client();
    let _call = client.get_book(cloud_run_grpc_examples::pb::GetBookRequest::default());
    assert_eq!(books.channel().audience(), Bookstore::AUDIENCE);
    assert!(format!("{books:?}").contains("bookstore-abc123-ew.a.run.app"));
}
