// The attribute applies to a unit struct without generics; on anything else it is one error,
// and the item is emitted unchanged, so its uses compile.
mod pb {
    cloud_run_grpc::include_proto!("acme.bookstore.v1");
}

#[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app", service = pb::bookstore_cloud_run::Bookstore)]
pub enum Bookstore {
    Production,
    Staging,
}

#[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app", service = pb::bookstore_cloud_run::Bookstore)]
pub fn bookstore() {}

#[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app", service = pb::bookstore_cloud_run::Bookstore)]
pub struct Regional<const REGION: usize>;

#[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app", service = pb::bookstore_cloud_run::Bookstore)]
pub struct Named {
    pub name: String,
}

fn main() {
    bookstore();
    let _ = (Bookstore::Production, Bookstore::Staging, Regional::<1>);
    let _ = Named { name: String::new() }.name;
}
