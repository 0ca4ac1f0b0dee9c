//! Generates the bookstore naming the runtime `::rt`, as `Cargo.toml` renames it.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    cloud_run_grpc_build::configure()
        .runtime_crate("::rt")
        .compile(&["../../proto/bookstore.proto"], &["../../proto"])?;
    Ok(())
}
