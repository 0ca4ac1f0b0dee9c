// A `crate` that is not a path is one error: the expansion names the runtime by its usual
// name, which is right unless the dependency was renamed.
mod pb {
    cloud_run_grpc::include_proto!("acme.bookstore.v1");
}

#[cloud_run_grpc::cloud_run_client(
    crate = "cloud-run-grpc",
    host = "bookstore-abc123-ew.a.run.app",
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
