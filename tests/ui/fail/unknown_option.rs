// A misspelt `host` is one error, not also "`host` or `url` is required": the options around
// it still apply, and the struct is there.
mod pb {
    cloud_run_grpc::include_proto!("acme.bookstore.v1");
}

#[cloud_run_grpc::cloud_run_client(
    hots = "bookstore-abc123-ew.a.run.app",
    service = pb::bookstore_cloud_run::Bookstore,
    timeout = "30s",
)]
pub struct Bookstore;

include!("uses/the_whole_api.rs");
