#[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app")]
pub struct Bookstore;

fn main() {}
