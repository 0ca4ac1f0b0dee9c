// Each wrong `host` is one error at the value, saying what to write; the struct is still
// emitted, on a placeholder URL, so the code that uses it reports nothing more.
mod pb {
    cloud_run_grpc::include_proto!("acme.bookstore.v1");
}

#[cloud_run_grpc::cloud_run_client(host = "https://bookstore-abc123-ew.a.run.app", service = pb::bookstore_cloud_run::Bookstore)]
pub struct Bookstore;

#[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app/v1", service = pb::bookstore_cloud_run::Bookstore)]
pub struct WithPath;

#[cloud_run_grpc::cloud_run_client(host = "book_store.a.run.app", service = pb::bookstore_cloud_run::Bookstore)]
pub struct InvalidCharacters;

#[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app:99999", service = pb::bookstore_cloud_run::Bookstore)]
pub struct WithBadPort;

#[cloud_run_grpc::cloud_run_client(host = "robot@bookstore-abc123-ew.a.run.app", service = pb::bookstore_cloud_run::Bookstore)]
pub struct WithUser;

include!("uses/the_whole_api.rs");
