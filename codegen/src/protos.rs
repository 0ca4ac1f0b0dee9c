//! Turning `.proto` files into a `FileDescriptorSet`: protox by default, protoc on request.

use std::path::{Path, PathBuf};

use prost_types::FileDescriptorSet;

use crate::Error;

/// A compiled set of files, and the files on disk it was read from (for `rerun-if-changed`).
pub(crate) struct Loaded {
    pub(crate) set: FileDescriptorSet,
    pub(crate) read: Vec<PathBuf>,
}

/// Compiles with protox, the pure-Rust compiler: no protoc needed.
pub(crate) fn with_protox(protos: &[PathBuf], includes: &[PathBuf]) -> Result<Loaded, Error> {
    let mut compiler =
        protox::Compiler::new(includes).map_err(|error| Error::proto(&error, includes))?;
    compiler.include_imports(true).include_source_info(true);
    for proto in protos {
        compiler
            .open_file(proto)
            .map_err(|error| Error::proto(&error, includes))?;
    }
    let read = compiler
        .files()
        .filter_map(|file| file.path().map(Path::to_path_buf))
        .collect();
    Ok(Loaded {
        set: compiler.file_descriptor_set(),
        read,
    })
}

/// Compiles with the `protoc` prost-build finds (`PROTOC` or `PATH`).
pub(crate) fn with_protoc(protos: &[PathBuf], includes: &[PathBuf]) -> Result<Loaded, Error> {
    let set = prost_build::Config::new()
        .load_fds(protos, includes)
        .map_err(|error| Error::proto_text(format!("protoc failed: {error}")))?;
    // protoc reports names relative to the include paths; find the file each one came from.
    let read = set
        .file
        .iter()
        .filter_map(|file| {
            includes
                .iter()
                .map(|include| include.join(file.name()))
                .find(|candidate| candidate.is_file())
        })
        .collect();
    Ok(Loaded { set, read })
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::with_protox;

    fn workspace_protos() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto")
    }

    #[test]
    fn every_file_read_from_disk_is_reported_for_rerun_if_changed() {
        let protos = workspace_protos();
        let loaded = with_protox(
            &[protos.join("awkward/other.proto")],
            std::slice::from_ref(&protos),
        )
        .unwrap();
        let mut read: Vec<_> = loaded
            .read
            .iter()
            .map(|p| p.strip_prefix(&protos).unwrap().to_path_buf())
            .collect();
        read.sort();
        // The file asked for and both of its imports; the well-known types come from protox
        // itself, not from disk.
        let expected: Vec<PathBuf> = [
            "awkward/awkward.proto",
            "awkward/inner.proto",
            "awkward/other.proto",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(read, expected);
        assert!(
            loaded
                .set
                .file
                .iter()
                .any(|f| f.name() == "google/protobuf/timestamp.proto")
        );
    }
}
