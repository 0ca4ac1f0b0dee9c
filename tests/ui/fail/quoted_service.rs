// A `service` path in quotes is one error: the path inside still names the wrapper.
mod pb {
    cloud_run_grpc::include_proto!("acme.bookstore.v1");
}

#[cloud_run_grpc::cloud_run_client(
    host = "bookstore-abc123-ew.a.run.app",
    service = "pb::bookstore_cloud_run::Bookstore",
)]
pub struct Bookstore;

include!("uses/the_whole_api.rs");
