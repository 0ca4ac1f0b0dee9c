// Each malformed optional value is one error at it; the expansion leaves the option out and
// nothing else changes.
mod pb {
    cloud_run_grpc::include_proto!("acme.bookstore.v1");
}

#[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app", service = pb::bookstore_cloud_run::Bookstore, timeout = "30 seconds")]
pub struct Bookstore;

#[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app", service = pb::bookstore_cloud_run::Bookstore, timeout = "0s")]
pub struct ZeroTimeout;

#[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app", service = pb::bookstore_cloud_run::Bookstore, env = "BOOKSTORE URL")]
pub struct BadEnv;

#[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app", service = pb::bookstore_cloud_run::Bookstore, header = "x-api-key")]
pub struct BadHeader;

include!("uses/the_whole_api.rs");
