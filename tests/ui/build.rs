//! Generates the bookstore, for the cases and tests to include with `include_proto!`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    cloud_run_grpc_build::configure()
        .compile(&["../../proto/bookstore.proto"], &["../../proto"])?;
    Ok(())
}
