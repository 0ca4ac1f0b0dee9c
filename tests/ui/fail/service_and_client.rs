// `service` and `client` both given is one error: the expansion goes on with `service`, so
// the RPC methods through `Deref` still resolve.
mod pb {
    cloud_run_grpc::include_proto!("acme.bookstore.v1");
}

#[cloud_run_grpc::cloud_run_client(
    host = "bookstore-abc123-ew.a.run.app",
    service = pb::bookstore_cloud_run::Bookstore,
    client = pb::bookstore_client::BookstoreClient,
)]
pub struct Bookstore;

include!("uses/the_whole_api.rs");
