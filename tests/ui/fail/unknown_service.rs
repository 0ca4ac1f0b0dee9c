// A service path that does not resolve is one error, at the path, however often the
// expansion names it.
#[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app", service = pb::Bookstore)]
pub struct Bookstore;

fn main() {}
