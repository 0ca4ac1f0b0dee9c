// `host` or `url` is required.
use cloud_run_grpc_examples::pb::bookstore_cloud_run::Bookstore as Wrapper;

#[cloud_run_grpc::cloud_run_client(service = Wrapper)]
pub struct Bookstore;

fn main() {}
