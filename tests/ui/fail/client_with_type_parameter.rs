use cloud_run_grpc_examples::pb::bookstore_client::BookstoreClient;

#[cloud_run_grpc::cloud_run_client(
    host = "bookstore-abc123-ew.a.run.app",
    client = BookstoreClient<cloud_run_grpc::CloudRunChannel>,
)]
pub struct Bookstore;

fn main() {}
