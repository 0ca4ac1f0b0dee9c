// Every mistake is reported in one build, each at its own span.
mod pb {
    cloud_run_grpc::include_proto!("acme.bookstore.v1");
}

#[cloud_run_grpc::cloud_run_client(host = "https://bookstore", service = pb::bookstore_cloud_run::Bookstore, header = "bearer", timeout = "1h")]
pub struct Bookstore;

include!("uses/the_whole_api.rs");
