// Without `service` or `client`, the one error says so, and what does not depend on them
// (constructors, constants, the channel, `Clone`, `Default`, `Debug`) is still emitted.
#[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app")]
pub struct Bookstore;

include!("uses/all_but_the_rpcs.rs");
