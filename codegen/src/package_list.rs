//! The list of the packages a build script generated, one per line in
//! `cloud-run-grpc-packages.txt` in the output directory: `cloud_run_grpc::include_proto!`
//! reads it only when asked for a package that is not there, to say which ones are.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::Error;

/// The file's name; the `include_proto!` macro (in `cloud-run-grpc-macros`) reads the same
/// name. A `.txt` cannot clash with a package's `{package}.rs`.
pub(crate) const FILE_NAME: &str = "cloud-run-grpc-packages.txt";

/// The packages written so far by this process, per output directory: a build script may call
/// `compile` several times, and the list must hold all of them but none left over from an
/// earlier run of the build script.
static GENERATED: Mutex<BTreeMap<PathBuf, BTreeSet<String>>> = Mutex::new(BTreeMap::new());

/// The packages among `packages` (those of every file one `compile` compiled, imports
/// included) that prost-build wrote a file for: a package whose types are all `extern_path`s
/// gets none. prost-build names the file of the package-less protos `_.rs`.
pub(crate) fn written(out_dir: &Path, packages: &[String]) -> Vec<String> {
    let mut written: Vec<String> = packages
        .iter()
        .map(|package| if package.is_empty() { "_" } else { package }.to_owned())
        .filter(|name| out_dir.join(format!("{name}.rs")).is_file())
        .collect();
    written.sort();
    written.dedup();
    written
}

/// Adds the `written` packages of one `compile` to the list of `out_dir` and rewrites it.
pub(crate) fn record(out_dir: &Path, written: &[String]) -> Result<(), Error> {
    // A panic elsewhere while the lock was held leaves the sets whole: each update is one insert.
    let mut generated = GENERATED.lock().unwrap_or_else(PoisonError::into_inner);
    let listed = generated.entry(out_dir.to_path_buf()).or_default();
    listed.extend(written.iter().cloned());
    let text: String = listed.iter().map(|name| format!("{name}\n")).collect();
    let path = out_dir.join(FILE_NAME);
    std::fs::write(&path, text)
        .map_err(|e| Error::io("cannot write the package list", Some(path), e))
}
