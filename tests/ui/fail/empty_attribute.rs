// With no arguments at all, one error says what a minimal attribute looks like.
#[cloud_run_grpc::cloud_run_client]
pub struct Bookstore;

fn main() {}
