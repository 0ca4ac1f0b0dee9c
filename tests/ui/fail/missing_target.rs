// A missing `host` or `url` is one error, not one more at every use of the struct: it is
// emitted on a placeholder URL.
mod pb {
    cloud_run_grpc::include_proto!("acme.bookstore.v1");
}

#[cloud_run_grpc::cloud_run_client(service = pb::bookstore_cloud_run::Bookstore)]
pub struct Bookstore;

include!("uses/the_whole_api.rs");
