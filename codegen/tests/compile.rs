//! `configure().compile(..)` on real files in a temporary directory: what it writes, and how
//! it fails on a broken proto.

use std::path::{Path, PathBuf};

/// A fresh directory with `proto/` and `out/` under the system temp dir, removed on drop.
struct TempDir(tempfile::TempDir);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("cloud-run-grpc-build-{name}-"))
            .tempdir()
            .unwrap();
        std::fs::create_dir(dir.path().join("proto")).unwrap();
        std::fs::create_dir(dir.path().join("out")).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, source: &str) -> PathBuf {
        let path = self.proto().join(name);
        std::fs::write(&path, source).unwrap();
        path
    }

    fn proto(&self) -> PathBuf {
        self.0.path().join("proto")
    }

    fn out(&self) -> PathBuf {
        self.0.path().join("out")
    }
}

fn compile(dir: &TempDir, file: &Path) -> Result<(), cloud_run_grpc_build::Error> {
    cloud_run_grpc_build::configure()
        .out_dir(dir.out())
        .emit_rerun_if_changed(false)
        .compile(&[file], &[dir.proto()])
}

#[test]
fn a_syntax_error_names_the_file_line_and_reason() {
    let dir = TempDir::new("syntax");
    let file = dir.write(
        "broken.proto",
        "syntax = \"proto3\";\npackage broken.v1;\n\nmessage Book {\n  string id = 1\n  string title = 2;\n}\n",
    );
    let error = compile(&dir, &file).unwrap_err();
    assert!(error.is_proto());
    let text = error.to_string();
    // The path of the file as the build script named its directory, so it can be clicked.
    let path = dir.proto().join("broken.proto");
    assert!(
        text.starts_with(&format!("{}:6:3: ", path.display())),
        "{text}"
    );
    assert!(text.contains("expected ';'"), "{text}");
    // The offending line, with a caret under the spot.
    assert!(
        text.contains("\n    6 |   string title = 2;\n      |   ^"),
        "{text}"
    );
    // What a build script returning `Result<(), Box<dyn Error>>` prints is the same text.
    assert_eq!(format!("{error:?}"), text);
}

#[test]
fn an_unknown_type_names_the_file_line_and_type() {
    let dir = TempDir::new("unknown");
    let file = dir.write(
        "unknown.proto",
        "syntax = \"proto3\";\npackage unknown.v1;\n\nservice S {\n  rpc Get(Missing) returns (Missing);\n}\n",
    );
    let text = compile(&dir, &file).unwrap_err().to_string();
    let path = dir.proto().join("unknown.proto").display().to_string();
    // Both uses of the unknown name, each with its own position.
    assert!(
        text.starts_with(&format!("{path}:5:11: name 'Missing' is not defined")),
        "{text}"
    );
    assert!(
        text.contains(&format!("\n{path}:5:29: name 'Missing' is not defined")),
        "{text}"
    );
}

#[test]
fn a_missing_import_is_an_error_not_a_panic() {
    let dir = TempDir::new("import");
    let file = dir.write(
        "importer.proto",
        "syntax = \"proto3\";\npackage importer.v1;\nimport \"nowhere.proto\";\n",
    );
    let text = compile(&dir, &file).unwrap_err().to_string();
    assert!(text.contains("nowhere.proto"), "{text}");
    let path = dir.proto().join("importer.proto").display().to_string();
    assert!(text.starts_with(&format!("{path}:3:1: ")), "{text}");
}

#[test]
fn no_out_dir_is_a_clear_error() {
    // Integration tests of a crate without a build script have no OUT_DIR.
    assert!(std::env::var_os("OUT_DIR").is_none());
    let error = cloud_run_grpc_build::configure()
        .compile(&["x.proto"], &["."])
        .unwrap_err();
    assert!(error.to_string().contains("OUT_DIR"), "{error}");
}

#[test]
fn writes_one_file_per_package_with_the_wrapper_and_a_descriptor_set() {
    let dir = TempDir::new("generate");
    let file = dir.write(
        "shop.proto",
        r#"syntax = "proto3";
package shop.v1;
import "google/protobuf/timestamp.proto";

// Sells things.
service Shop {
  // Buys one thing.
  rpc Buy(Item) returns (google.protobuf.Timestamp);
  // Not any more.
  rpc Sell(stream Item) returns (stream Item) { option deprecated = true; }
}

// A thing.
message Item {
  // Its name.
  string name = 1;
}
"#,
    );
    let descriptors = dir.out().join("shop.bin");
    cloud_run_grpc_build::configure()
        .out_dir(dir.out())
        .emit_rerun_if_changed(false)
        .build_server(false)
        .file_descriptor_set_path(&descriptors)
        .include_file("all.rs")
        .type_attribute(".shop.v1.Item", "#[derive(Eq, Hash)]")
        .compile(&[&file], &[&dir.proto()])
        .unwrap();

    let code = std::fs::read_to_string(dir.out().join("shop.v1.rs")).unwrap();
    assert!(code.contains("pub mod shop_client"), "{code}");
    assert!(!code.contains("pub mod shop_server"), "build_server(false)");
    assert!(code.contains("pub mod shop_cloud_run"), "{code}");
    assert!(code.contains("pub struct Shop {"), "{code}");
    assert!(code.contains("/// Sells things."), "{code}");
    assert!(code.contains("/// Buys one thing."), "{code}");
    assert!(code.contains("#[derive(Eq, Hash)]"), "{code}");
    // The well-known type goes through the runtime, spelled with its double underscore.
    assert!(
        code.contains("::core::result::Result<\n            ::cloud_run_grpc::__private::prost_types::Timestamp,")
            || code.contains("::cloud_run_grpc::__private::prost_types::Timestamp,"),
        "{code}"
    );
    assert!(!code.contains("::cloud_run_grpc::private"), "{code}");
    // The deprecated RPC is deprecated in the wrapper too.
    let sell = code.find("pub async fn sell(").unwrap();
    assert!(
        code[..sell].rfind("#[deprecated]").unwrap()
            > code[..sell].rfind("pub async fn buy(").unwrap()
    );

    let include = std::fs::read_to_string(dir.out().join("all.rs")).unwrap();
    assert!(
        include.contains("/// The `shop.v1` protobuf package."),
        "{include}"
    );

    let set = std::fs::read(&descriptors).unwrap();
    assert!(!set.is_empty());
}

#[test]
fn build_client_false_means_no_wrapper_either() {
    let dir = TempDir::new("server-only");
    let file = dir.write(
        "s.proto",
        "syntax = \"proto3\";\npackage s.v1;\nservice S { rpc Get(M) returns (M); }\nmessage M {}\n",
    );
    cloud_run_grpc_build::configure()
        .out_dir(dir.out())
        .emit_rerun_if_changed(false)
        .build_client(false)
        .compile(&[&file], &[&dir.proto()])
        .unwrap();
    let code = std::fs::read_to_string(dir.out().join("s.v1.rs")).unwrap();
    assert!(code.contains("pub mod s_server"));
    assert!(!code.contains("pub mod s_client"));
    assert!(!code.contains("s_cloud_run"));
}

#[test]
fn protoc_is_only_an_escape_hatch_and_its_absence_is_an_error() {
    let dir = TempDir::new("protoc");
    let file = dir.write(
        "p.proto",
        "syntax = \"proto3\";\npackage p.v1;\nmessage M {}\n",
    );
    let result = cloud_run_grpc_build::configure()
        .out_dir(dir.out())
        .emit_rerun_if_changed(false)
        .protoc()
        .compile(&[&file], &[&dir.proto()]);
    match result {
        // A machine with protoc compiles it the same way.
        Ok(()) => assert!(dir.out().join("p.v1.rs").is_file()),
        // Without protoc: an error that says so, not a panic.
        Err(error) => assert!(error.to_string().contains("protoc"), "{error}"),
    }
}
