#!/usr/bin/env bash
# Build weight: a user crate with cloud-run-grpc + cloud-run-grpc-build against the same crate
# written with plain tonic + TLS (tls-ring, native roots) + tonic-prost-build over protox, both
# compiling proto/bookstore.proto and calling one RPC. Clean debug builds, alternated, with the
# workspace's Cargo.lock so both use the same versions. Usage: tools/weight.sh [rounds]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-2}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir"/{plain,ours}/src "$dir/proto"
cp "$repo/proto/bookstore.proto" "$dir/proto/"

cat > "$dir/plain/Cargo.toml" <<'TOML'
[package]
name = "plain"
version = "0.1.0"
edition = "2024"
[dependencies]
tonic = { version = "0.14", features = ["tls-ring", "tls-native-roots"] }
tonic-prost = "0.14"
prost = "0.14"
prost-types = "0.14"
tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
[build-dependencies]
tonic-prost-build = "0.14"
protox = "0.10"
[workspace]
TOML
cat > "$dir/plain/build.rs" <<'RS'
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(["bookstore.proto"], ["../proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
RS
cat > "$dir/plain/src/main.rs" <<'RS'
mod pb { tonic::include_proto!("acme.bookstore.v1"); }
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tls = tonic::transport::ClientTlsConfig::new().with_native_roots();
    let channel = tonic::transport::Endpoint::from_static("https://bookstore-abc123-ew.a.run.app")
        .tls_config(tls)?
        .connect_lazy();
    let token: tonic::metadata::MetadataValue<_> = "Bearer x".parse()?;
    let mut client = pb::bookstore_client::BookstoreClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
        r.metadata_mut().insert("authorization", token.clone());
        Ok(r)
    });
    let _ = client.get_book(pb::GetBookRequest { id: "1".into() }).await;
    Ok(())
}
RS

cat > "$dir/ours/Cargo.toml" <<TOML
[package]
name = "ours"
version = "0.1.0"
edition = "2024"
[dependencies]
cloud-run-grpc = { path = "$repo/runtime" }
tonic = "0.14"
tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
[build-dependencies]
cloud-run-grpc-build = { path = "$repo/codegen" }
[workspace]
TOML
cat > "$dir/ours/build.rs" <<'RS'
fn main() -> Result<(), Box<dyn std::error::Error>> {
    cloud_run_grpc_build::configure().compile(&["../proto/bookstore.proto"], &["../proto"])?;
    Ok(())
}
RS
cat > "$dir/ours/src/main.rs" <<'RS'
mod pb { cloud_run_grpc::include_proto!("acme.bookstore.v1"); }
#[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app", service = pb::bookstore_cloud_run::Bookstore)]
pub struct Bookstore;
#[tokio::main]
async fn main() {
    let _ = Bookstore::new().get_book(pb::GetBookRequest { id: "1".into() }).await;
}
RS

for crate in plain ours; do
  cp "$repo/Cargo.lock" "$dir/$crate/"
  (cd "$dir/$crate" && cargo fetch -q)
  crates=$(cd "$dir/$crate" && cargo tree -e normal --prefix none | sed 's/ (\*)//' | sort -u | wc -l)
  echo "$crate: $crates crates in the normal dependency tree; crypto stacks: $(cd "$dir/$crate" && cargo tree -e normal --prefix none | grep -oE '^(ring|aws-lc-rs|openssl-sys)' | sort -u | tr '\n' ' ')"
done
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
total_plain=0; total_ours=0
for round in $(seq "$rounds"); do
  for crate in plain ours; do
    (cd "$dir/$crate" && cargo clean -q)
    start=$(date +%s.%N)
    (cd "$dir/$crate" && cargo build -q)
    took=$(echo "$(date +%s.%N) - $start" | bc)
    echo "round $round: $crate $took s"
    if [ "$crate" = plain ]; then total_plain=$(echo "$total_plain + $took" | bc); else total_ours=$(echo "$total_ours + $took" | bc); fi
  done
done
echo "ratio ours/plain: $(echo "scale=2; $total_ours / $total_plain" | bc)"
