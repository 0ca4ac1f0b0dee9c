// A `crate` that is not a path is one error: the expansion names the runtime by its usual
// name, which is right unless the dependency was renamed.
mod pb {
    cloud_run_grpc::include_proto!("acme.bookstore.v1");
}

#[cloud_run_grpc::cloud_run_client(
    crate = "cloud-run-grpc",
    host = "bookstore-abc123-ew.a.run.app",
    service = pb::bookstore_cloud_run::Bookstore,
)]
pub struct Bookstore;

include!("uses/the_whole_api.rs");
