//! `header`: the token goes in `authorization` (the default) or `x-serverless-authorization`.

use cloud_run_grpc_examples::pb;

#[cloud_run_grpc::cloud_run_client(
    host = "bookstore-abc123-ew.a.run.app",
    service = pb::bookstore_cloud_run::Bookstore,
    header = "x-serverless-authorization",
)]
pub struct Serverless;

#[cloud_run_grpc::cloud_run_client(
    host = "bookstore-abc123-ew.a.run.app",
    service = pb::bookstore_cloud_run::Bookstore,
    header = "authorization",
)]
pub struct Standard;

fn main() {
    let serverless = Serverless::new();
    let standard = Standard::new();
    assert!(
        !format!("{serverless:?}").contains("misconfigured"),
        "{serverless:?}"
    );
    assert!(
        !format!("{standard:?}").contains("misconfigured"),
        "{standard:?}"
    );
    // Same audience, so one token cache, whatever header carries the token.
    assert!(
        serverless
            .channel()
            .shares_token_cache_with(standard.channel())
    );
}
