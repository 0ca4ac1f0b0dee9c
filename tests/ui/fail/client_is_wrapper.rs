// The wrapper given as `client` is one error that says to write `service = ...`; the
// expansion goes on with it as `service`.
mod pb {
    cloud_run_grpc::include_proto!("acme.bookstore.v1");
}

#[cloud_run_grpc::cloud_run_client(
    host = "bookstore-abc123-ew.a.run.app",
    client = pb::bookstore_cloud_run::Bookstore,
)]
pub struct Bookstore;

fn main() {
    let books = Bookstore::new();
    let _call = books.create_book(pb::CreateBookRequest::default()); // through `Deref`
    let _constants: [&str; 3] = [Bookstore::HOST, Bookstore::URL, Bookstore::AUDIENCE];
    let _channel: &cloud_run_grpc::CloudRunChannel = books.channel();
    let _again = Bookstore::with_channel(books.channel().clone());
    let _copy = books.clone();
    let _default = Bookstore::default();
    println!("{books:?}");
}
