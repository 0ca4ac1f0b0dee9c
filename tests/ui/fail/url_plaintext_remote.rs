// Plaintext is only allowed to a loopback address: a token must never cross the network in clear.
use cloud_run_grpc_examples::pb::bookstore_cloud_run::Bookstore as Wrapper;

#[cloud_run_grpc::cloud_run_client(url = "http://bookstore-abc123-ew.a.run.app", service = Wrapper)]
pub struct Bookstore;

fn main() {}
