//! The builder `configure()` returns: options first, one `compile(..)` at the end.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::Error;
use crate::generator::CloudRunServiceGenerator;
use crate::runtime::Runtime;
use crate::{include_file, package_list, pedantic, protos, well_known};

/// Configures code generation; created by [`configure`](crate::configure).
///
/// Setters take and return the builder by value; [`compile`](Builder::compile) runs it.
#[derive(Debug, Clone)]
#[must_use = "a Builder does nothing until `.compile(..)` is called"]
pub struct Builder {
    build_client: bool,
    build_server: bool,
    build_cloud_run: bool,
    extern_paths: Vec<(String, String)>,
    type_attributes: Vec<(String, String)>,
    field_attributes: Vec<(String, String)>,
    out_dir: Option<PathBuf>,
    file_descriptor_set_path: Option<PathBuf>,
    include_file: Option<PathBuf>,
    protoc: bool,
    emit_rerun_if_changed: Option<bool>,
    runtime_crate: String,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            build_client: true,
            build_server: true,
            build_cloud_run: true,
            extern_paths: Vec::new(),
            type_attributes: Vec::new(),
            field_attributes: Vec::new(),
            out_dir: None,
            file_descriptor_set_path: None,
            include_file: None,
            protoc: false,
            emit_rerun_if_changed: None,
            runtime_crate: Runtime::DEFAULT.to_owned(),
        }
    }
}

impl Builder {
    /// Generate tonic's `foo_client::FooClient<T>` (default `true`).
    pub fn build_client(mut self, enable: bool) -> Self {
        self.build_client = enable;
        self
    }

    /// Generate tonic's `foo_server::{Foo, FooServer}` (default `true`, as in tonic-prost-build).
    pub fn build_server(mut self, enable: bool) -> Self {
        self.build_server = enable;
        self
    }

    /// Generate the `foo_cloud_run::Foo` wrappers (default `true`; needs
    /// [`build_client`](Builder::build_client)).
    pub fn build_cloud_run(mut self, enable: bool) -> Self {
        self.build_cloud_run = enable;
        self
    }

    /// Use an existing Rust type for a protobuf path instead of generating one
    /// (`prost_build::Config::extern_path`), e.g.
    /// `.extern_path(".acme.common.v1", "::acme_common::v1")`.
    pub fn extern_path(
        mut self,
        proto_path: impl Into<String>,
        rust_path: impl Into<String>,
    ) -> Self {
        self.extern_paths
            .push((proto_path.into(), rust_path.into()));
        self
    }

    /// Add an attribute to the matching messages and enums
    /// (`prost_build::Config::type_attribute`), e.g.
    /// `.type_attribute(".acme.bookstore.v1.Book", "#[derive(Eq, Hash)]")`.
    pub fn type_attribute(mut self, path: impl Into<String>, attribute: impl Into<String>) -> Self {
        self.type_attributes.push((path.into(), attribute.into()));
        self
    }

    /// Add an attribute to the matching fields (`prost_build::Config::field_attribute`).
    pub fn field_attribute(
        mut self,
        path: impl Into<String>,
        attribute: impl Into<String>,
    ) -> Self {
        self.field_attributes.push((path.into(), attribute.into()));
        self
    }

    /// Write the generated files here instead of `OUT_DIR`.
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// Also write the compiled, encoded `FileDescriptorSet` (with imports and source info) to
    /// this path, e.g. for `tonic-reflection`.
    pub fn file_descriptor_set_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.file_descriptor_set_path = Some(path.into());
        self
    }

    /// Also write one file, in the output directory, that `include!`s every generated package
    /// inside nested `pub mod`s (`prost_build::Config::include_file`).
    pub fn include_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.include_file = Some(path.into());
        self
    }

    /// Compile the `.proto` files with `protoc` (found through `PROTOC` or `PATH`) instead of
    /// the built-in pure-Rust compiler. Only for protos protox cannot handle yet.
    pub fn protoc(mut self) -> Self {
        self.protoc = true;
        self
    }

    /// Print `cargo:rerun-if-changed` for every `.proto` file read. Defaults to `true` inside a
    /// build script (when `OUT_DIR` is set).
    pub fn emit_rerun_if_changed(mut self, enable: bool) -> Self {
        self.emit_rerun_if_changed = Some(enable);
        self
    }

    /// The path generated code names the runtime crate by, for a crate that depends on
    /// `cloud-run-grpc` under another name (default `::cloud_run_grpc`), as the attribute's
    /// `#[cloud_run_client(crate = "…")]` does for the struct it expands.
    ///
    /// ```no_run
    /// // Cargo.toml: `rt = { package = "cloud-run-grpc", version = "0.1" }`
    /// cloud_run_grpc_build::configure()
    ///     .runtime_crate("::rt")
    ///     .compile(&["proto/bookstore.proto"], &["proto"])?;
    /// # Ok::<(), cloud_run_grpc_build::Error>(())
    /// ```
    ///
    /// Everything generated code needs from prost, prost-types and tonic's prost codec is
    /// reached through this path too. [`compile`](Builder::compile) refuses a value that is
    /// not a Rust path.
    pub fn runtime_crate(mut self, path: impl Into<String>) -> Self {
        self.runtime_crate = path.into();
        self
    }

    /// Compiles `protos`, looking up imports in `includes`, and writes one `{package}.rs` per
    /// protobuf package to the output directory.
    ///
    /// Also writes the list of the packages generated so far by this build script, which
    /// `cloud_run_grpc::include_proto!` shows when asked for a package that is not there.
    ///
    /// # Errors
    /// A `.proto` file that does not compile (the error names the file, line and reason),
    /// no `OUT_DIR` and no [`out_dir`](Builder::out_dir), a
    /// [`runtime_crate`](Builder::runtime_crate) that is not a path, or a file that cannot be
    /// written.
    pub fn compile<P, I>(self, protos: &[P], includes: &[I]) -> Result<(), Error>
    where
        P: AsRef<Path>,
        I: AsRef<Path>,
    {
        let protos: Vec<PathBuf> = protos.iter().map(|p| p.as_ref().to_path_buf()).collect();
        let includes: Vec<PathBuf> = includes.iter().map(|p| p.as_ref().to_path_buf()).collect();
        let runtime = Runtime::parse(&self.runtime_crate)?;

        let out_dir = match (&self.out_dir, std::env::var_os("OUT_DIR")) {
            (Some(dir), _) => dir.clone(),
            (None, Some(dir)) => PathBuf::from(dir),
            (None, None) => {
                return Err(Error::config(
                    "OUT_DIR is not set: call `compile` from build.rs, or set `.out_dir(..)`",
                ));
            }
        };

        let loaded = if self.protoc {
            protos::with_protoc(&protos, &includes)?
        } else {
            protos::with_protox(&protos, &includes)?
        };

        let emit = self
            .emit_rerun_if_changed
            .unwrap_or_else(|| std::env::var_os("OUT_DIR").is_some());
        if emit {
            for path in &loaded.read {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }

        if let Some(path) = &self.file_descriptor_set_path {
            let bytes = protox::prost::Message::encode_to_vec(&loaded.set);
            std::fs::write(path, bytes).map_err(|e| {
                Error::io(
                    "cannot write the file descriptor set",
                    Some(path.clone()),
                    e,
                )
            })?;
        }

        std::fs::create_dir_all(&out_dir).map_err(|e| {
            Error::io(
                "cannot create the output directory",
                Some(out_dir.clone()),
                e,
            )
        })?;

        let errors = Rc::new(RefCell::new(Vec::new()));
        let mut config = self.prost_config(&out_dir, &runtime, Rc::clone(&errors));
        for (proto, rust) in well_known::extern_paths(&loaded.set, &runtime.prost_types()) {
            if !self.extern_paths.iter().any(|(p, _)| *p == proto) {
                config.extern_path(proto, rust);
            }
        }
        let packages: Vec<String> = loaded
            .set
            .file
            .iter()
            .map(|file| file.package().to_owned())
            .collect();
        config
            .compile_fds(loaded.set)
            .map_err(|e| Error::io("prost-build failed", Some(out_dir.clone()), e))?;

        let errors = errors.take();
        if !errors.is_empty() {
            return Err(Error::codegen(errors.join("\n")));
        }
        if let Some(include_file) = &self.include_file {
            include_file::document(&out_dir.join(include_file))?;
        }
        let written = package_list::written(&out_dir, &packages);
        for package in &written {
            pedantic::allow_enum_helper_lints(&out_dir.join(format!("{package}.rs")))?;
        }
        package_list::record(&out_dir, &written)
    }

    fn prost_config(
        &self,
        out_dir: &Path,
        runtime: &Runtime,
        errors: Rc<RefCell<Vec<String>>>,
    ) -> prost_build::Config {
        let mut config = prost_build::Config::new();
        // Left unset for OUT_DIR, so the include file names it through `env!("OUT_DIR")`.
        if self.out_dir.is_some() {
            config.out_dir(out_dir);
        }
        // Through the runtime's re-exports, so a user crate needs no prost dependencies.
        config.prost_path(runtime.prost());
        config.prost_types_path(runtime.prost_types());
        for (proto_path, rust_path) in &self.extern_paths {
            config.extern_path(proto_path, rust_path);
        }
        for (path, attribute) in &self.type_attributes {
            config.type_attribute(path, attribute);
        }
        for (path, attribute) in &self.field_attributes {
            config.field_attribute(path, attribute);
        }
        if let Some(include_file) = &self.include_file {
            config.include_file(include_file);
        }

        let tonic = (self.build_client || self.build_server).then(|| {
            tonic_prost_build::configure()
                .build_client(self.build_client)
                .build_server(self.build_server)
                .build_transport(false)
                .codec_path(runtime.prost_codec())
                .service_generator()
        });
        config.service_generator(Box::new(CloudRunServiceGenerator {
            tonic,
            wrappers: (self.build_client && self.build_cloud_run).then(|| runtime.clone()),
            errors,
        }));
        config
    }
}
