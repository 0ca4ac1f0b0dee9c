//! The `foo_cloud_run` module: a `&self` wrapper around tonic's client for one service.
//!
//! Everything here names the runtime and std through absolute paths (`::cloud_run_grpc` or
//! the configured runtime path, `::tonic`, `::core`), and the request/response messages
//! through `super::`, exactly as tonic's client module does, so no user import can change what
//! the code means.

use proc_macro2::TokenStream;
use prost_build::{Method, Service};
use quote::{format_ident, quote};

use crate::runtime::Runtime;
use crate::{docs, naming};

/// The wrapper module for `service`, naming the runtime crate by `runtime`, or why it cannot
/// be generated.
pub(crate) fn generate(service: &Service, runtime: &Runtime) -> Result<TokenStream, String> {
    let full_name = if service.package.is_empty() {
        service.proto_name.clone()
    } else {
        format!("{}.{}", service.package, service.proto_name)
    };
    let module = format_ident!("{}", naming::cloud_run_module(&service.name));
    let client_module = format_ident!("{}", naming::client_module(&service.name));
    let client = format_ident!("{}Client", service.name);
    let wrapper = naming::ident(&service.name).ok_or_else(|| {
        format!(
            "service `{full_name}`: `{}` is not a Rust identifier",
            service.name
        )
    })?;
    let rt = runtime.tokens();
    let client_type = quote! {
        super::#client_module::#client<#rt::CloudRunChannel>
    };

    let mut struct_doc = docs::comment_lines(&service.comments);
    let struct_allow = docs::allow_for_comments(&struct_doc);
    if !struct_doc.is_empty() {
        struct_doc.push(String::new());
    }
    struct_doc.extend([
        format!(
            "Calls `{full_name}` through a `{}::CloudRunChannel`, which attaches a",
            runtime.text()
        ),
        "fresh Cloud Run ID token to every request.".into(),
        String::new(),
        "Every method takes `&self`; the wrapper is cheap to clone. `with_timeout` and".into(),
        "`with_metadata` return a copy for per-call settings, and `client()` the tonic client"
            .into(),
        "for anything else.".into(),
    ]);
    let struct_doc = docs::attributes(&struct_doc);
    // An outer doc resolves links in the parent module, hence the module in the path.
    let module_doc = docs::attributes(&[format!(
        "`&self` wrapper for calling `{full_name}` on Cloud Run: [`{}`]({module}::{}).",
        service.name, service.name
    )]);

    let new_doc = docs::attributes(&[
        format!(
            "Calls the service through `channel`, e.g. `{}::shared(host)` or a",
            runtime.text().trim_start_matches("::")
        ),
        "`CloudRunChannel::builder(host)...build()?`.".to_owned(),
    ]);

    let methods = service
        .methods
        .iter()
        .map(|method| generate_method(&full_name, method, &rt))
        .collect::<Result<Vec<_>, _>>()?;

    let any_deprecated =
        service.options.deprecated() || service.methods.iter().any(|m| m.options.deprecated());
    // Deprecated RPCs are still wrapped; the wrapper calling tonic's deprecated method is not
    // the user's use of it (their call of the wrapper method still warns).
    let allow_deprecated = any_deprecated.then(|| quote! { deprecated, });
    let struct_deprecated = service
        .options
        .deprecated()
        .then(|| quote! { #[deprecated] });

    Ok(quote! {
        #module_doc
        pub mod #module {
            // Like tonic's client module: a binary that includes a package but calls only
            // some of its services must not get warnings about the others.
            #![allow(dead_code, #allow_deprecated)]

            #struct_doc
            #struct_allow
            #struct_deprecated
            #[derive(::core::clone::Clone)]
            pub struct #wrapper {
                client: #client_type,
                options: #rt::__private::CallOptions,
            }

            impl #wrapper {
                #new_doc
                pub fn new(channel: #rt::CloudRunChannel) -> Self {
                    Self {
                        client: super::#client_module::#client::new(channel),
                        options: <#rt::__private::CallOptions as ::core::default::Default>::default(),
                    }
                }

                /// The tonic client the wrapper calls, for what the wrapper does not cover
                /// (compression, message size limits, a hand-built `tonic::Request`), on the
                /// same channel.
                pub fn client(&self) -> #client_type {
                    ::core::clone::Clone::clone(&self.client)
                }

                /// A copy of this wrapper whose calls give up after `timeout` (sent to the server
                /// as the gRPC deadline).
                #[must_use]
                pub fn with_timeout(&self, timeout: ::core::time::Duration) -> Self {
                    Self {
                        client: ::core::clone::Clone::clone(&self.client),
                        options: ::core::clone::Clone::clone(&self.options).timeout(timeout),
                    }
                }

                /// A copy of this wrapper whose calls also send the metadata `key: value`, e.g.
                /// `with_metadata(MetadataKey::from_static("x-request-id"), value)`.
                #[must_use]
                pub fn with_metadata(
                    &self,
                    key: ::tonic::metadata::MetadataKey<::tonic::metadata::Ascii>,
                    value: ::tonic::metadata::MetadataValue<::tonic::metadata::Ascii>,
                ) -> Self {
                    Self {
                        client: ::core::clone::Clone::clone(&self.client),
                        options: ::core::clone::Clone::clone(&self.options).metadata(key, value),
                    }
                }

                #(#methods)*
            }

            // What `#[cloud_run_client(service = …)]` builds the wrapper with; its absence is
            // how the attribute tells a wrapper from a type that is not one.
            impl #rt::__private::ServiceWrapper for #wrapper {
                fn from_channel(channel: #rt::CloudRunChannel) -> Self {
                    Self::new(channel)
                }
            }

            // The options print metadata keys only: a value may be an end user's credential.
            impl ::core::fmt::Debug for #wrapper {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    f.debug_struct(::core::stringify!(#wrapper))
                        .field("options", &self.options)
                        .finish_non_exhaustive()
                }
            }
        }
    })
}

/// The `# Errors` section of every RPC method.
const ERRORS_DOC: &[&str] = &[
    "",
    "# Errors",
    "",
    "The `Status` the service answered with; Cloud Run's front end refusing the call, as gRPC",
    "maps its HTTP status (`UNAUTHENTICATED` for a token it refused, `PERMISSION_DENIED` for a",
    "caller without `roles/run.invoker`, `UNAVAILABLE` when no instance can take the call); or",
    "a `Status` made on this side when the call could not be made: no ID token could be had",
    "(the message names the token source and the audience), the service could not be",
    "reached, or the deadline passed.",
];
fn generate_method(
    service: &str,
    method: &Method,
    rt: &TokenStream,
) -> Result<TokenStream, String> {
    let rpc = format!("/{service}/{}", method.proto_name);
    let tonic_method = naming::ident(&method.name)
        .ok_or_else(|| format!("`{rpc}`: `{}` is not a Rust identifier", method.name))?;
    let wrapper_name = naming::wrapper_method(&method.name);
    let name = naming::ident(&wrapper_name)
        .ok_or_else(|| format!("`{rpc}`: `{wrapper_name}` is not a Rust identifier"))?;
    let request = message_type(&method.input_type).map_err(|e| format!("`{rpc}`: {e}"))?;
    let response = message_type(&method.output_type).map_err(|e| format!("`{rpc}`: {e}"))?;

    let (kind, returns) = match (method.client_streaming, method.server_streaming) {
        (false, false) => ("Unary", "Returns the response message."),
        (false, true) => (
            "Server-streaming",
            "Returns the stream of response messages.",
        ),
        (true, false) => (
            "Client-streaming",
            "Sends every message of `requests`, then returns the response message.",
        ),
        (true, true) => (
            "Bidirectional-streaming",
            "Sends the messages of `requests` while returning the stream of response messages.",
        ),
    };
    let retry = if method.client_streaming {
        "Sent again once, by the channel, only when it provably never reached the service \
         and `requests` had all its messages ready as the call started; a stream still being \
         produced cannot be replayed. A `Status` from the service is never retried."
    } else {
        "Sent again once, by the channel, only when it provably never reached the service \
         (Cloud Run's front end refused the token, or the server refused the stream \
         unprocessed); a `Status` from the service is its answer and is never retried."
    };
    let mut doc = docs::comment_lines(&method.comments);
    let allow = docs::allow_for_comments(&doc);
    if !doc.is_empty() {
        doc.push(String::new());
    }
    doc.push(format!("{kind} call of `{rpc}`. {returns}"));
    doc.push(String::new());
    doc.push(retry.to_owned());
    if wrapper_name != method.name {
        doc.push(String::new());
        doc.push(format!(
            "Named `{wrapper_name}` because the wrapper's own `{}` takes that name.",
            method.name
        ));
    }
    doc.extend(ERRORS_DOC.iter().map(|line| (*line).to_owned()));
    let doc = docs::attributes(&doc);
    let deprecated = method
        .options
        .deprecated()
        .then(|| quote! { #[deprecated] });

    let response_type = if method.server_streaming {
        quote! { ::tonic::Streaming<#response> }
    } else {
        response
    };

    let body = if method.client_streaming {
        quote! {
            let mut client = ::core::clone::Clone::clone(&self.client);
            client
                .#tonic_method(self.options.request(requests))
                .await
                .map(::tonic::Response::into_inner)
        }
    } else {
        quote! {
            #rt::__private::unary(&self.options, request, |request| {
                let mut client = ::core::clone::Clone::clone(&self.client);
                async move { client.#tonic_method(request).await }
            })
            .await
        }
    };
    let argument = if method.client_streaming {
        quote! {
            requests: impl ::tonic::codegen::tokio_stream::Stream<Item = #request>
                + ::core::marker::Send
                + 'static
        }
    } else {
        quote! { request: #request }
    };

    Ok(quote! {
        #doc
        #allow
        #deprecated
        pub async fn #name(
            &self,
            #argument,
        ) -> ::core::result::Result<#response_type, ::tonic::Status> {
            #body
        }
    })
}

/// The Rust type of a request or response message, spelled as tonic's client spells it:
/// `()` and other allow-listed non-path types as they are, absolute (`::…`) and `crate::`
/// paths (from `extern_path`) as they are, anything else relative to the package module.
pub(crate) fn message_type(rust_type: &str) -> Result<TokenStream, String> {
    let non_path = tonic_prost_build::NON_PATH_TYPE_ALLOWLIST
        .with(|list| list.borrow().iter().any(|t| rust_type.ends_with(t)));
    let spelled = if non_path || rust_type.starts_with("::") || rust_type.starts_with("crate::") {
        rust_type.to_owned()
    } else {
        format!("super::{rust_type}")
    };
    syn::parse_str::<syn::Type>(&spelled)
        .map(|ty| quote! { #ty })
        .map_err(|e| format!("`{spelled}` is not a Rust type: {e}"))
}

#[cfg(test)]
mod tests {
    use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
    use prost_build::{Comments, Method, Service};

    use super::*;

    fn method(name: &str, proto: &str, input: &str, output: &str, kind: (bool, bool)) -> Method {
        Method {
            name: name.into(),
            proto_name: proto.into(),
            comments: Comments::default(),
            input_type: input.into(),
            output_type: output.into(),
            input_proto_type: String::new(),
            output_proto_type: String::new(),
            options: Default::default(),
            client_streaming: kind.0,
            server_streaming: kind.1,
        }
    }

    fn runtime() -> Runtime {
        Runtime::parse(Runtime::DEFAULT).unwrap()
    }

    fn service() -> Service {
        Service {
            name: "BookStore".into(),
            proto_name: "BookStore".into(),
            package: "acme.v1".into(),
            comments: Comments {
                leading: vec![" Books.".into()],
                ..Comments::default()
            },
            methods: vec![
                method("r#type", "Type", "Option", "Result", (false, false)),
                method("r#move", "Move", "Box", "Result", (true, false)),
                method(
                    "list",
                    "List",
                    "()",
                    "::cloud_run_grpc::__private::prost_types::Timestamp",
                    (false, true),
                ),
                method(
                    "new",
                    "New",
                    "crate::Ext",
                    "super::other::Thing",
                    (true, true),
                ),
            ],
            options: Default::default(),
        }
    }

    /// Every token, groups flattened, with `(` `)` etc. as punctuation.
    fn flatten(tokens: TokenStream, out: &mut Vec<String>) {
        for tree in tokens {
            match tree {
                TokenTree::Group(group) => {
                    let (open, close) = match group.delimiter() {
                        Delimiter::Parenthesis => ("(", ")"),
                        Delimiter::Brace => ("{", "}"),
                        Delimiter::Bracket => ("[", "]"),
                        Delimiter::None => ("", ""),
                    };
                    out.push(open.into());
                    flatten(group.stream(), out);
                    out.push(close.into());
                }
                // `::` is a joint `:` then a `:`; a lone `:` (as in `field: Type`) is alone.
                TokenTree::Punct(punct) if punct.as_char() == ':' => {
                    out.push(match punct.spacing() {
                        Spacing::Joint => ":j".into(),
                        Spacing::Alone => ":a".into(),
                    });
                }
                other => out.push(other.to_string()),
            }
        }
    }

    #[test]
    fn paths_are_absolute_or_relative_to_the_package_only() {
        let tokens = generate(&service(), &runtime()).unwrap();
        let mut flat = Vec::new();
        flatten(tokens, &mut flat);
        // Idents allowed to start a path: the package module, the type itself, and locals
        // followed by a method call are not paths.
        let allowed_roots = [
            "super", "Self", "crate", // paths relative to the package or the type
            "impl", "dyn", "mut", "as", "in", "for", "where",
            "return", // keywords before `::`
            "clippy", // lint names in `#[allow]`, not paths
        ];
        for (i, token) in flat.iter().enumerate() {
            let starts_path = flat.get(i + 1).map(String::as_str) == Some(":j")
                && flat.get(i + 2).map(String::as_str) == Some(":a");
            let after_colons = i >= 2 && flat[i - 2] == ":j" && flat[i - 1] == ":a";
            let is_ident = token.starts_with(|c: char| c.is_alphabetic() || c == '_');
            if is_ident && starts_path && !after_colons {
                assert!(
                    allowed_roots.contains(&token.as_str()),
                    "relative path starting at `{token}`: {}",
                    flat[i.saturating_sub(5)..i + 5].join(" ")
                );
            }
        }
        // No prelude name is used bare: they would resolve to the messages named so.
        let prelude = [
            "Option", "Result", "Box", "String", "Vec", "Some", "None", "Ok", "Err", "Clone",
            "Default", "Send", "Future", "Debug",
        ];
        for (i, token) in flat.iter().enumerate() {
            if prelude.contains(&token.as_str()) {
                assert_eq!(
                    (flat[i - 2].as_str(), flat[i - 1].as_str()),
                    (":j", ":a"),
                    "bare `{token}`: {}",
                    flat[i.saturating_sub(5)..i + 3].join(" ")
                );
            }
        }
    }

    #[test]
    fn message_types_are_spelled_as_tonic_spells_them() {
        let spelled = |t: &str| message_type(t).unwrap().to_string().replace(' ', "");
        assert_eq!(spelled("Book"), "super::Book");
        assert_eq!(spelled("super::other::Book"), "super::super::other::Book");
        assert_eq!(spelled("()"), "()");
        assert_eq!(spelled("::x::Y"), "::x::Y");
        assert_eq!(spelled("crate::x::Y"), "crate::x::Y");
        assert!(message_type("not a type").is_err());
    }

    #[test]
    fn every_kind_gets_its_signature() {
        let code =
            prettyplease::unparse(&syn::parse2(generate(&service(), &runtime()).unwrap()).unwrap());
        let squashed: String = code.split_whitespace().collect();
        // Unary: the message in, the message out, through the runtime's call helper.
        assert!(squashed.contains("pubasyncfnr#type(&self,request:super::Option,)->::core::result::Result<super::Result,::tonic::Status>{::cloud_run_grpc::__private::unary("), "{code}");
        // Client streaming: any stream in, straight to tonic's client.
        assert!(squashed.contains("pubasyncfnr#move(&self,requests:impl::tonic::codegen::tokio_stream::Stream<Item=super::Box,>+::core::marker::Send+'static,)->::core::result::Result<super::Result,::tonic::Status>{letmutclient"), "{code}");
        // Server streaming: a stream out, through the runtime's call helper.
        assert!(squashed.contains("pubasyncfnlist(&self,request:(),)->::core::result::Result<::tonic::Streaming<::cloud_run_grpc::__private::prost_types::Timestamp>,::tonic::Status,>{::cloud_run_grpc::__private::unary("), "{code}");
        // Bidi, renamed from `new`, calling tonic's `new`-named method.
        assert!(squashed.contains("pubasyncfnnew_rpc(&self,requests:impl::tonic::codegen::tokio_stream::Stream<Item=crate::Ext,>+::core::marker::Send+'static,)->::core::result::Result<::tonic::Streaming<super::super::other::Thing>,::tonic::Status,>"), "{code}");
        assert!(
            squashed.contains(".new(self.options.request(requests))"),
            "{code}"
        );
        assert!(code.contains("pub mod book_store_cloud_run {"), "{code}");
        assert!(
            squashed.contains(
                "client:super::book_store_client::BookStoreClient<::cloud_run_grpc::CloudRunChannel"
            ),
            "{code}"
        );
        assert!(code.contains("/// Books.\n"), "{code}");
        assert!(!code.contains("deprecated"), "{code}");
    }

    #[test]
    fn deprecation_is_carried_over() {
        let mut service = service();
        service.options.deprecated = Some(true);
        service.methods[0].options.deprecated = Some(true);
        let code =
            prettyplease::unparse(&syn::parse2(generate(&service, &runtime()).unwrap()).unwrap());
        assert!(code.contains("#![allow(dead_code, deprecated)]"), "{code}");
        assert_eq!(code.matches("#[deprecated]").count(), 2, "{code}");
    }

    #[test]
    fn a_name_that_is_no_identifier_is_an_error_not_a_panic() {
        let mut service = service();
        service.methods[0].name = "type".into();
        let error = generate(&service, &runtime()).unwrap_err();
        assert!(error.contains("/acme.v1.BookStore/Type"), "{error}");
    }
}
