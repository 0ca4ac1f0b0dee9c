//! `timeout`: a deadline for each call, in `ms`, `s` or `m`.

use cloud_run_grpc_examples::pb::bookstore_cloud_run::Bookstore as Wrapper;

#[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app", service = Wrapper, timeout = "500ms")]
pub struct Fast;

#[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app", service = Wrapper, timeout = "30s")]
pub struct Usual;

#[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app", service = Wrapper, timeout = "2m")]
pub struct Patient;

fn main() {
    let (fast, usual, patient) = (Fast::new(), Usual::new(), Patient::new());
    for debug in [
        format!("{fast:?}"),
        format!("{usual:?}"),
        format!("{patient:?}"),
    ] {
        assert!(!debug.contains("misconfigured"), "{debug}");
    }
    assert!(fast.channel().shares_token_cache_with(patient.channel()));
}
