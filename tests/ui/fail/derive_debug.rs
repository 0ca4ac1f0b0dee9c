// The expansion implements `Clone`, `Default` and `Debug`: deriving them too is one error at
// the derive, not a conflict reported inside the expansion.
pub struct Wrapper;

#[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app", service = Wrapper)]
#[derive(Debug, PartialEq)]
pub struct Bookstore;

fn main() {}
