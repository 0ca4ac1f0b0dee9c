// A `service` whose path shows nothing wrong but that is not a generated wrapper (a message,
// a hand-written type, tonic's client imported under another name) is one error at the
// path, from the trait every generated wrapper implements.
use pb::bookstore_client::BookstoreClient as Books;

mod pb {
    cloud_run_grpc::include_proto!("acme.bookstore.v1");
}

#[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app", service = pb::Book)]
pub struct Bookstore;

pub struct Handmade;

impl Handmade {
    pub fn new(_: cloud_run_grpc::CloudRunChannel) -> Self {
        Handmade
    }
}

#[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app", service = Handmade)]
pub struct Inventory;

#[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app", service = Books<cloud_run_grpc::CloudRunChannel>)]
pub struct Imported;

fn main() {
    let _ = (Bookstore::new(), Inventory::new(), Imported::new());
}
