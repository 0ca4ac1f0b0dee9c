use cloud_run_grpc_examples::pb::bookstore_cloud_run::Bookstore as Wrapper;
pub struct BookstoreClient<T>(T);

#[cloud_run_grpc::cloud_run_client(
    host = "bookstore-abc123-ew.a.run.app",
    service = Wrapper,
    client = BookstoreClient,
)]
pub struct Bookstore;

fn main() {}
