pub struct Wrapper;

#[cloud_run_grpc::cloud_run_client(host = bookstore, service = Wrapper)]
pub struct Bookstore;

fn main() {}
