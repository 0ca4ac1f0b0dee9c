// The server's trait given as `service` is one error at the path that names the wrapper to
// write; the expansion goes on with the wrapper.
mod pb {
    cloud_run_grpc::include_proto!("acme.bookstore.v1");
}

#[cloud_run_grpc::cloud_run_client(
    host = "bookstore-abc123-ew.a.run.app",
    service = pb::bookstore_server::Bookstore,
)]
pub struct Bookstore;

include!("uses/the_whole_api.rs");
