//! Exact `extern_path`s for the well-known types, pointing into the runtime's re-export.
//!
//! prost-build maps `.google.protobuf.Foo` under `prost_types_path` by snake-casing every
//! segment of that path, which turns `__private` into `private`. Paths registered for a type's
//! exact name are used verbatim, so every well-known type the protos can see is registered.

use prost_build::Module;
use prost_types::{DescriptorProto, FileDescriptorSet};

/// Types prost-build already maps exactly (to `()` and Rust primitives); registering them again
/// would be a duplicate.
const MAPPED_BY_PROST: &[&str] = &[
    ".google.protobuf.Empty",
    ".google.protobuf.BoolValue",
    ".google.protobuf.BytesValue",
    ".google.protobuf.DoubleValue",
    ".google.protobuf.FloatValue",
    ".google.protobuf.Int32Value",
    ".google.protobuf.Int64Value",
    ".google.protobuf.StringValue",
    ".google.protobuf.UInt32Value",
    ".google.protobuf.UInt64Value",
];

/// `(protobuf name, Rust path)` for every message and enum of the `google.protobuf` packages in
/// `set`, as prost-types defines them under `prost_types`.
pub(crate) fn extern_paths(set: &FileDescriptorSet, prost_types: &str) -> Vec<(String, String)> {
    let mut paths = Vec::new();
    for file in &set.file {
        let package = file.package();
        let Some(rest) = package.strip_prefix("google.protobuf") else {
            continue;
        };
        if !(rest.is_empty() || rest.starts_with('.')) {
            continue;
        }
        // `google.protobuf.compiler` lives in `prost_types::compiler`.
        let mut rust = prost_types.to_owned();
        for part in Module::from_protobuf_package_name(rest).parts() {
            rust.push_str("::");
            rust.push_str(part);
        }
        let proto = format!(".{package}");
        for message in &file.message_type {
            add_message(message, &proto, &rust, &mut paths);
        }
        for enumeration in &file.enum_type {
            add(&proto, &rust, enumeration.name(), &mut paths);
        }
    }
    paths.retain(|(proto, _)| !MAPPED_BY_PROST.contains(&proto.as_str()));
    paths
}

fn add_message(
    message: &DescriptorProto,
    proto: &str,
    rust: &str,
    paths: &mut Vec<(String, String)>,
) {
    add(proto, rust, message.name(), paths);
    // Nested types live in a module named after the message, e.g. `field_descriptor_proto`.
    let nested_proto = format!("{proto}.{}", message.name());
    let mut nested_rust = rust.to_owned();
    for part in Module::from_protobuf_package_name(message.name()).parts() {
        nested_rust.push_str("::");
        nested_rust.push_str(part);
    }
    for nested in &message.nested_type {
        // Map entries are not types of their own.
        if nested.options.as_ref().is_some_and(|o| o.map_entry()) {
            continue;
        }
        add_message(nested, &nested_proto, &nested_rust, paths);
    }
    for enumeration in &message.enum_type {
        add(&nested_proto, &nested_rust, enumeration.name(), paths);
    }
}

fn add(proto: &str, rust: &str, name: &str, paths: &mut Vec<(String, String)>) {
    // Well-known type names are already UpperCamelCase, as prost-types spells them.
    paths.push((format!("{proto}.{name}"), format!("{rust}::{name}")));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(files: &[&str]) -> FileDescriptorSet {
        let mut compiler = protox::Compiler::new(Vec::<&str>::new()).expect("compiler");
        compiler.include_imports(true);
        for file in files {
            compiler.open_file(file).expect("well-known file");
        }
        compiler.file_descriptor_set()
    }

    fn lookup<'a>(paths: &'a [(String, String)], proto: &str) -> Option<&'a str> {
        paths
            .iter()
            .find(|(p, _)| p == proto)
            .map(|(_, r)| r.as_str())
    }

    #[test]
    fn paths_keep_the_double_underscore_verbatim() {
        let set = compiled(&[
            "google/protobuf/timestamp.proto",
            "google/protobuf/empty.proto",
        ]);
        let paths = extern_paths(&set, "::cloud_run_grpc::__private::prost_types");
        assert_eq!(
            lookup(&paths, ".google.protobuf.Timestamp"),
            Some("::cloud_run_grpc::__private::prost_types::Timestamp")
        );
        // prost-build maps Empty to `()` itself.
        assert_eq!(lookup(&paths, ".google.protobuf.Empty"), None);
    }

    #[test]
    fn nested_types_and_subpackages_follow_prost_types() {
        let set = compiled(&[
            "google/protobuf/descriptor.proto",
            "google/protobuf/type.proto",
            "google/protobuf/compiler/plugin.proto",
            "google/protobuf/struct.proto",
        ]);
        let paths = extern_paths(&set, "::p");
        assert_eq!(
            lookup(&paths, ".google.protobuf.FieldDescriptorProto.Type"),
            Some("::p::field_descriptor_proto::Type")
        );
        assert_eq!(
            lookup(&paths, ".google.protobuf.DescriptorProto.ExtensionRange"),
            Some("::p::descriptor_proto::ExtensionRange")
        );
        assert_eq!(
            lookup(&paths, ".google.protobuf.Field.Kind"),
            Some("::p::field::Kind")
        );
        assert_eq!(
            lookup(&paths, ".google.protobuf.compiler.CodeGeneratorRequest"),
            Some("::p::compiler::CodeGeneratorRequest")
        );
        assert_eq!(
            lookup(&paths, ".google.protobuf.NullValue"),
            Some("::p::NullValue")
        );
        // `Struct.FieldsEntry` is a map entry, not a type.
        assert_eq!(lookup(&paths, ".google.protobuf.Struct.FieldsEntry"), None);
    }
}
