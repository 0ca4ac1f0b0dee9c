// A package that was not generated is one error at its name that lists those that were.
mod pb {
    cloud_run_grpc::include_proto!("acme.bookstore.v2");
}

mod named_badly {
    cloud_run_grpc::include_proto!(acme::bookstore::v1);
}

fn main() {}
