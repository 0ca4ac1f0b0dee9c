// A wrong `host` is one error: the struct is still emitted, on a placeholder URL, so the code
// that uses it (constructors, constants, RPC methods through `Deref`) reports nothing more.
use cloud_run_grpc_examples::pb;

#[cloud_run_grpc::cloud_run_client(
    host = "https://bookstore-abc123-ew.a.run.app",
    service = pb::bookstore_cloud_run::Bookstore,
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
