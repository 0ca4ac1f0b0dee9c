// `host` or `url` is required.
pub struct Wrapper;

#[cloud_run_grpc::cloud_run_client(service = Wrapper)]
pub struct Bookstore;

fn main() {}
