//! Compiles the workspace protos with the build helper under test.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // One `{package}.rs` per package, for `cloud_run_grpc::include_proto!`.
    cloud_run_grpc_build::configure().compile(&["../proto/bookstore.proto"], &["../proto"])?;
    // Nested packages, included through one generated module tree.
    cloud_run_grpc_build::configure()
        .include_file("awkward.rs")
        .compile(
            &[
                "../proto/awkward/awkward.proto",
                "../proto/awkward/inner.proto",
                "../proto/awkward/other.proto",
            ],
            &["../proto"],
        )?;
    Ok(())
}
