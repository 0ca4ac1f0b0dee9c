// A client written with its type parameter is one error: `client()` is still there, on the
// type the parameter was taken off.
use cloud_run_grpc::CloudRunChannel;
use pb::bookstore_client::BookstoreClient;

mod pb {
    cloud_run_grpc::include_proto!("acme.bookstore.v1");
}

#[cloud_run_grpc::cloud_run_client(
    host = "bookstore-abc123-ew.a.run.app",
    client = BookstoreClient<CloudRunChannel>,
)]
pub struct Bookstore;

fn main() {
    let books = Bookstore::new();
    let mut client: BookstoreClient<CloudRunChannel> = books.client();
    let _call = client.get_book(pb::GetBookRequest::default());
    let _constants: [&str; 3] = [Bookstore::HOST, Bookstore::URL, Bookstore::AUDIENCE];
    println!("{:?}", books.clone());
}
