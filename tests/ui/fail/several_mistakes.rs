// Every mistake is reported in one build, each at its own span.
use cloud_run_grpc_examples::pb::bookstore_cloud_run::Bookstore as Wrapper;

#[cloud_run_grpc::cloud_run_client(host = "https://bookstore", service = Wrapper, header = "bearer", timeout = "1h")]
pub struct Bookstore;

fn main() {}
