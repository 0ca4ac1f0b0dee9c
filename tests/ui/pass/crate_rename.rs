//! `crate`: generated code names the runtime by the path given, for a renamed dependency.

extern crate cloud_run_grpc as rt;

use cloud_run_grpc_examples::pb;

#[rt::cloud_run_client(
    crate = "rt",
    host = "bookstore-abc123-ew.a.run.app",
    service = pb::bookstore_cloud_run::Bookstore,
)]
pub struct Bookstore;

fn main() {
    let books = Bookstore::new();
    let channel: &rt::CloudRunChannel = books.channel();
    assert_eq!(channel.audience(), Bookstore::AUDIENCE);
}
