// The expansion implements `Clone`, `Default` and `Debug`, and its channel is not `PartialEq`:
// each such derive is one error at the derive, not a conflict reported inside the expansion.
use cloud_run_grpc_examples::pb::bookstore_cloud_run::Bookstore as Wrapper;

#[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app", service = Wrapper)]
#[derive(Debug, PartialEq)]
pub struct Bookstore;

fn main() {}
