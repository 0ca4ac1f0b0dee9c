use cloud_run_grpc_examples::pb::bookstore_cloud_run::Bookstore as Wrapper;

#[cloud_run_grpc::cloud_run_client(url = "https://bookstore-abc123-ew.a.run.app/api", service = Wrapper)]
pub struct Bookstore;

fn main() {}
