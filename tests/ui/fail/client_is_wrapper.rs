// The wrapper given as `client` is one error that says to write `service = ...`; the
// expansion goes on with it as `service`.
mod pb {
    cloud_run_grpc::include_proto!("acme.bookstore.v1");
}

#[cloud_run_grpc::cloud_run_client(
    host = "bookstore-abc123-ew.a.run.app",
    client = pb::bookstore_cloud_run::Bookstore,
)]
pub struct Bookstore;

include!("uses/the_whole_api.rs");
