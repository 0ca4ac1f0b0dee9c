//! Compiles the workspace protos with the build helper under test.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    cloud_run_grpc_build::configure().compile(&["../proto/bookstore.proto"], &["../proto"])?;
    Ok(())
}
