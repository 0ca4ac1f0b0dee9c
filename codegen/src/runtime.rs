//! The path generated code names the runtime crate by: `::cloud_run_grpc`, or what
//! [`Builder::runtime_crate`](crate::Builder::runtime_crate) says.

use proc_macro2::TokenStream;
use quote::ToTokens as _;

use crate::Error;

/// A checked runtime path, as tokens for the wrappers and as text for prost-build's options.
#[derive(Clone)]
pub(crate) struct Runtime {
    path: syn::Path,
    /// The path without whitespace, e.g. `::cloud_run_grpc`.
    text: String,
}

impl Runtime {
    pub(crate) const DEFAULT: &str = "::cloud_run_grpc";

    /// Checks that `text` is a path without generic arguments.
    pub(crate) fn parse(text: &str) -> Result<Self, Error> {
        let invalid = || {
            Error::config(format!(
                "`runtime_crate(\"{}\")` is not a Rust path; write the name this crate depends \
                 on `cloud-run-grpc` by, e.g. `runtime_crate(\"::cloud_run_grpc\")`, or \
                 `runtime_crate(\"::rt\")` for `rt = {{ package = \"cloud-run-grpc\", .. }}`",
                text.escape_default()
            ))
        };
        let path = syn::parse_str::<syn::Path>(text).map_err(|_| invalid())?;
        if path
            .segments
            .iter()
            .any(|segment| !segment.arguments.is_none())
        {
            return Err(invalid());
        }
        let text = path
            .to_token_stream()
            .to_string()
            .split_whitespace()
            .collect();
        Ok(Self { path, text })
    }

    /// The path, as tokens.
    pub(crate) fn tokens(&self) -> TokenStream {
        self.path.to_token_stream()
    }

    /// The path as written in code, e.g. `::cloud_run_grpc`.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// Where generated messages find prost: the runtime's hidden re-export.
    pub(crate) fn prost(&self) -> String {
        format!("{}::__private::prost", self.text)
    }

    /// Where generated messages find the well-known types.
    pub(crate) fn prost_types(&self) -> String {
        format!("{}::__private::prost_types", self.text)
    }

    /// Where tonic's generated client finds its prost codec.
    pub(crate) fn prost_codec(&self) -> String {
        format!("{}::__private::tonic_prost::ProstCodec", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::Runtime;

    #[test]
    fn paths_are_normalised() {
        let runtime = Runtime::parse(" :: rt ").unwrap();
        assert_eq!(runtime.prost(), "::rt::__private::prost");
        assert_eq!(runtime.prost_types(), "::rt::__private::prost_types");
        assert_eq!(
            runtime.prost_codec(),
            "::rt::__private::tonic_prost::ProstCodec"
        );
        assert_eq!(
            Runtime::parse("crate::deps::rt").unwrap().prost(),
            "crate::deps::rt::__private::prost"
        );
        assert_eq!(
            Runtime::parse(Runtime::DEFAULT)
                .unwrap()
                .tokens()
                .to_string(),
            ":: cloud_run_grpc"
        );
    }

    #[test]
    fn what_is_not_a_path_is_refused_with_an_example() {
        for text in ["cloud-run-grpc", "", "::rt<T>", "a b", "::"] {
            let Err(error) = Runtime::parse(text) else {
                panic!("{text:?} was taken for a path")
            };
            let message = error.to_string();
            assert!(
                message.contains("is not a Rust path")
                    && message.contains("runtime_crate(\"::cloud_run_grpc\")"),
                "{text:?}: {message}"
            );
        }
    }
}
