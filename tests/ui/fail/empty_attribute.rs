// With no arguments at all, one error says what a minimal attribute looks like, however much
// code uses the struct.
#[cloud_run_grpc::cloud_run_client]
pub struct Bookstore;

include!("uses/all_but_the_rpcs.rs");
