pub struct Wrapper;

#[cloud_run_grpc::cloud_run_client(host = "book_store.a.run.app", service = Wrapper)]
pub struct Bookstore;

fn main() {}
