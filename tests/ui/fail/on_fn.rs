pub struct Wrapper;

#[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app", service = Wrapper)]
pub fn bookstore() {}

fn main() {
    // The function is still emitted, so its callers compile.
    bookstore();
}
