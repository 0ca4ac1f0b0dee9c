fn main() -> Result<(), Box<dyn std::error::Error>> {
    cloud_run_grpc_build::configure()
        .build_server(true)
        .compile(&["../proto/bookstore.proto"], &["../proto"])?;
    Ok(())
}
