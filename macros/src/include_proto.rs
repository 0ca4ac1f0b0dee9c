//! `include_proto!("acme.bookstore.v1")`: the `include!` of a package `cloud-run-grpc-build`
//! generated, or one error at the name that lists the packages it did generate.
//!
//! The package's file is looked for in `OUT_DIR`, as `include!` would; only when it is not
//! there is the build helper's list of packages read, so a build that includes the right
//! packages pays one file-system lookup per package.

use std::path::Path;

use proc_macro2::TokenStream;
use quote::quote;
use syn::LitStr;

/// The list of generated packages, one per line, that `cloud-run-grpc-build` writes next to
/// them (its `package_list::FILE_NAME`).
const PACKAGE_LIST: &str = "cloud-run-grpc-packages.txt";

const EXAMPLE: &str = "`include_proto!(\"acme.bookstore.v1\")`";

pub(crate) fn include_proto(input: TokenStream) -> TokenStream {
    let out_dir = std::env::var_os("OUT_DIR");
    expand(input, out_dir.as_deref().map(Path::new))
}

fn expand(input: TokenStream, out_dir: Option<&Path>) -> TokenStream {
    let package = match syn::parse2::<LitStr>(input) {
        Ok(package) => package,
        Err(error) => {
            return syn::Error::new(
                error.span(),
                format!("`include_proto!` takes the protobuf package as a string, e.g. {EXAMPLE}"),
            )
            .into_compile_error();
        }
    };
    match check(&package.value(), out_dir) {
        Ok(()) => quote! {
            ::core::include!(::core::concat!(::core::env!("OUT_DIR"), "/", #package, ".rs"));
        },
        Err(message) => syn::Error::new(package.span(), message).into_compile_error(),
    }
}

/// Whether `package` can be included from `out_dir`, and if not, what to write instead.
fn check(package: &str, out_dir: Option<&Path>) -> Result<(), String> {
    let is_name = !package.is_empty()
        && package
            .split('.')
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_alphanumeric() || c == '_'));
    if !is_name {
        return Err(format!(
            "`{}` is not a protobuf package name; write the name on the `package` line of the \
             .proto, e.g. {EXAMPLE}",
            package.escape_default()
        ));
    }
    let Some(out_dir) = out_dir else {
        return Err(
            "`include_proto!` includes what `cloud-run-grpc-build` generated into `OUT_DIR`, and \
             this crate has no `OUT_DIR`: add a `build.rs` that calls \
             `cloud_run_grpc_build::configure().compile(&[\"proto/bookstore.proto\"], &[\"proto\"])`"
                .to_owned(),
        );
    };
    if out_dir.join(format!("{package}.rs")).is_file() {
        return Ok(());
    }
    let generated = match std::fs::read_to_string(out_dir.join(PACKAGE_LIST)) {
        Ok(list) => {
            let packages: Vec<String> = list
                .lines()
                .filter(|line| !line.trim().is_empty())
                .map(|line| format!("`{}`", line.trim()))
                .collect();
            match packages.as_slice() {
                [] => "build.rs generated none (do its protos have a `package` line?)".to_owned(),
                [one] => format!("build.rs generated {one}"),
                [all @ .., last] => format!("build.rs generated {} and {last}", all.join(", ")),
            }
        }
        Err(_) => "build.rs has not run `cloud_run_grpc_build::configure().compile(..)`, which \
                   generates them"
            .to_owned(),
    };
    Err(format!(
        "no protobuf package `{package}` was generated into OUT_DIR; {generated}"
    ))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A directory of its own under the system's temporary directory, removed on drop.
    struct OutDir(PathBuf);

    impl OutDir {
        fn new(name: &str, files: &[(&str, &str)]) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "cloud-run-grpc-macros-{name}-{}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).expect("a temporary directory");
            for (file, text) in files {
                std::fs::write(dir.join(file), text).expect("a file in it");
            }
            Self(dir)
        }
    }

    impl Drop for OutDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_generated_package_is_included() {
        let dir = OutDir::new("found", &[("acme.bookstore.v1.rs", "")]);
        let output = expand(quote!("acme.bookstore.v1"), Some(&dir.0)).to_string();
        assert_eq!(
            output,
            quote!(::core::include!(::core::concat!(
                ::core::env!("OUT_DIR"),
                "/",
                "acme.bookstore.v1",
                ".rs"
            ));)
            .to_string()
        );
    }

    #[test]
    fn a_missing_package_lists_the_generated_ones() {
        let dir = OutDir::new(
            "listed",
            &[
                ("a.v1.rs", ""),
                ("b.v1.rs", ""),
                (PACKAGE_LIST, "a.v1\nb.v1\n\nc.v1\n"),
            ],
        );
        assert_eq!(
            check("a.v2", Some(&dir.0)),
            Err(
                "no protobuf package `a.v2` was generated into OUT_DIR; build.rs generated \
                 `a.v1`, `b.v1` and `c.v1`"
                    .to_owned()
            )
        );
        let one = OutDir::new("one", &[(PACKAGE_LIST, "a.v1\n")]);
        let message = check("b", Some(&one.0)).unwrap_err();
        assert!(message.ends_with("build.rs generated `a.v1`"), "{message}");
        let none = OutDir::new("none", &[(PACKAGE_LIST, "")]);
        let message = check("b", Some(&none.0)).unwrap_err();
        assert!(message.contains("generated none"), "{message}");
    }

    #[test]
    fn without_a_list_or_out_dir_it_says_what_generates_them() {
        let dir = OutDir::new("unlisted", &[]);
        let message = check("a.v1", Some(&dir.0)).unwrap_err();
        assert!(
            message.contains("no protobuf package `a.v1`")
                && message.contains("cloud_run_grpc_build::configure().compile(..)"),
            "{message}"
        );
        let message = check("a.v1", None).unwrap_err();
        assert!(
            message.contains("no `OUT_DIR`") && message.contains("build.rs"),
            "{message}"
        );
    }

    #[test]
    fn what_is_not_a_package_name_is_refused_before_any_file_is_read() {
        for name in ["", "../secret", "a..b", "a/b", ".a", "a b"] {
            let message = check(name, None).unwrap_err();
            assert!(
                message.contains("is not a protobuf package name"),
                "{name:?}: {message}"
            );
        }
        let output = expand(quote!(acme::bookstore), None).to_string();
        assert!(
            output.contains("takes the protobuf package as a string"),
            "{output}"
        );
    }
}
