// The expansion implements `Clone`, `Default` and `Debug`, and its channel is not `PartialEq`:
// each such derive is one error at the derive, not a conflict reported inside the expansion,
// and the derive is taken out so that the expansion's own `Debug` and `Clone` serve the code
// below.
mod pb {
    cloud_run_grpc::include_proto!("acme.bookstore.v1");
}

#[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app", service = pb::bookstore_cloud_run::Bookstore)]
#[derive(Clone, Debug, PartialEq)]
pub struct Bookstore;

include!("uses/the_whole_api.rs");
