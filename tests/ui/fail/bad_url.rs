// Each wrong `url` is one error at the value; plaintext is only allowed to a loopback
// address, since a token must never cross the network in clear.
mod pb {
    cloud_run_grpc::include_proto!("acme.bookstore.v1");
}

#[cloud_run_grpc::cloud_run_client(url = "http://bookstore-abc123-ew.a.run.app", service = pb::bookstore_cloud_run::Bookstore)]
pub struct Bookstore;

#[cloud_run_grpc::cloud_run_client(url = "grpc://bookstore-abc123-ew.a.run.app", service = pb::bookstore_cloud_run::Bookstore)]
pub struct OtherScheme;

#[cloud_run_grpc::cloud_run_client(url = "https://bookstore-abc123-ew.a.run.app/api", service = pb::bookstore_cloud_run::Bookstore)]
pub struct WithPath;

include!("uses/the_whole_api.rs");
