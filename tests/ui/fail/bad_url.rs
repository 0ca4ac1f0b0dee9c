// Each wrong `url` is one error at the value; plaintext is only allowed to a loopback
// address, since a token must never cross the network in clear.
mod pb {
    cloud_run_grpc::include_proto!("acme.bookstore.v1");
}

#[cloud_run_grpc::cloud_run_client(url = "http://bookstore-abc123-ew.a.run.app", service = pb::bookstore_cloud_run::Bookstore)]
pub struct Bookstore;

#[cloud_run_grpc::cloud_run_client(url = "grpc://bookstore-abc123-ew.a.run.app", service = pb::bookstore_cloud_run::Bookstore)]
pub struct OtherScheme;

#[cloud_run_grpc::cloud_run_client(url = "https://bookstore-abc123-ew.a.run.app/api", service = pb::bookstore_cloud_run::Bookstore)]
pub struct WithPath;

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
