//! The code `#[cloud_run_client]` emits for a validated [`Config`].
//!
//! Every path is absolute (`::core::…` or the runtime crate's path) and every generated field
//! or local starts with `__cloud_run_grpc_`, so nothing in the user's scope can capture them.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned as _;

use crate::attr::{self, Api, Config};

/// Expands the attribute.
///
/// On bad input the errors follow the expansion, made with the fallbacks parsing chose, so
/// the rest of the crate still finds the struct's API and reports nothing more; an item the
/// expansion cannot stand in for is emitted unchanged.
pub(crate) fn cloud_run_client(args: TokenStream, item: TokenStream) -> TokenStream {
    let parsed = attr::parse(args, item.clone());
    let code = match &parsed.config {
        Some(config) => expand(config),
        None => item,
    };
    let errors = parsed.errors.map(syn::Error::into_compile_error);
    quote! { #code #errors }
}

fn expand(config: &Config) -> TokenStream {
    let Config {
        krate,
        target,
        audience,
        env,
        header,
        timeout_ms,
        api,
        item,
    } = config;
    let attrs = &item.attrs;
    let vis = &item.vis;
    let ident = &item.ident;
    let name = ident.to_string();
    let channel = format_ident!("__cloud_run_grpc_channel");
    let service = format_ident!("__cloud_run_grpc_service");
    let formatter = format_ident!("__cloud_run_grpc_formatter");

    let host = &target.host;
    let url = target.url();
    let default_audience = target.default_audience();
    let audience_const = audience.as_deref().unwrap_or(&default_audience);
    let audience = option(audience.as_ref().map(|audience| quote!(#audience)));
    let env = option(env.as_ref().map(|env| quote!(#env)));
    let header = option(header.map(|header| quote!(#header)));
    let timeout = option(timeout_ms.map(|ms| quote!(::core::time::Duration::from_millis(#ms))));

    let (service_field, service_init, api_items) = match api {
        // Only after an error: what does not depend on the API is still emitted.
        None => (quote! {}, quote! {}, quote! {}),
        Some(Api::Service(wrapper)) => (
            quote! { #service: #wrapper, },
            // Through the trait every generated wrapper implements, spanned at the path: any
            // other type is one error there, whose message names the wrapper to write.
            quote_spanned! {wrapper.span()=>
                #service: <#wrapper as #krate::__private::ServiceWrapper>::from_channel(
                    ::core::clone::Clone::clone(&#channel),
                ),
            },
            quote! {
                #[automatically_derived]
                impl ::core::ops::Deref for #ident {
                    type Target = #wrapper;

                    fn deref(&self) -> &#wrapper {
                        &self.#service
                    }
                }
            },
        ),
        Some(Api::Client(client)) => {
            let new_client =
                quote_spanned!(client.span()=> <#client<#krate::CloudRunChannel>>::new);
            (
                quote! {},
                quote! {},
                quote! {
                    impl #ident {
                        /// The tonic client on this struct's channel; cheap, make one per task.
                        #[allow(dead_code)]
                        pub fn client(&self) -> #client<#krate::CloudRunChannel> {
                            #new_client(::core::clone::Clone::clone(&self.#channel))
                        }
                    }
                },
            )
        }
    };

    quote! {
        #(#attrs)*
        #vis struct #ident {
            #channel: #krate::CloudRunChannel,
            #service_field
        }

        #[allow(dead_code)]
        impl #ident {
            /// The Cloud Run host this client calls, as configured at compile time.
            pub const HOST: &'static str = #host;
            /// The URL `new()` calls, unless the `env` variable of the attribute overrides it.
            pub const URL: &'static str = #url;
            /// The audience of the ID tokens sent to [`Self::URL`]. When the `env` variable
            /// overrides the URL, the audience is that of the new URL, unless the attribute
            /// sets `audience`.
            pub const AUDIENCE: &'static str = #audience_const;

            /// A client on the process-wide channel for this configuration, created on first
            /// use and shared, with its token cache, by every instance.
            pub fn new() -> Self {
                Self::with_channel(#krate::__private::shared_from_spec(
                    &#krate::__private::SharedSpec {
                        url: Self::URL,
                        audience: #audience,
                        env: #env,
                        header: #header,
                        timeout: #timeout,
                    },
                ))
            }

            /// A client on the given channel instead of the shared one.
            pub fn with_channel(#channel: #krate::CloudRunChannel) -> Self {
                Self {
                    #service_init
                    #channel,
                }
            }

            /// The channel this client calls through.
            pub fn channel(&self) -> &#krate::CloudRunChannel {
                &self.#channel
            }
        }

        #api_items

        #[automatically_derived]
        impl ::core::clone::Clone for #ident {
            fn clone(&self) -> Self {
                Self::with_channel(::core::clone::Clone::clone(&self.#channel))
            }
        }

        #[automatically_derived]
        impl ::core::default::Default for #ident {
            fn default() -> Self {
                Self::new()
            }
        }

        #[automatically_derived]
        impl ::core::fmt::Debug for #ident {
            fn fmt(&self, #formatter: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                #formatter
                    .debug_struct(#name)
                    .field("url", &Self::URL)
                    .field("channel", &self.#channel)
                    .finish()
            }
        }
    }
}

fn option(value: Option<TokenStream>) -> TokenStream {
    match value {
        Some(value) => quote!(::core::option::Option::Some(#value)),
        None => quote!(::core::option::Option::None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_to_file(args: TokenStream, item: TokenStream) -> syn::File {
        let output = cloud_run_client(args, item);
        syn::parse2(output.clone()).unwrap_or_else(|e| panic!("{e}: {output}"))
    }

    fn items(file: &syn::File) -> Vec<String> {
        file.items
            .iter()
            .map(|item| match item {
                syn::Item::Struct(item) => format!("struct {}", item.ident),
                syn::Item::Impl(item) => {
                    let trait_ = item.trait_.as_ref().map(|(_, path, _)| path);
                    quote!(impl #trait_).to_string()
                }
                syn::Item::Macro(item) => quote!(#item).to_string(),
                other => quote!(#other).to_string(),
            })
            .collect()
    }

    #[test]
    fn service_struct_gets_deref_and_no_client() {
        let file = expand_to_file(
            quote!(host = "svc.a.run.app", service = pb::Wrapper),
            quote!(
                /// Docs stay.
                pub struct Svc;
            ),
        );
        assert_eq!(
            items(&file),
            [
                "struct Svc",
                "impl",
                "impl :: core :: ops :: Deref",
                "impl :: core :: clone :: Clone",
                "impl :: core :: default :: Default",
                "impl :: core :: fmt :: Debug",
            ]
        );
        let text = quote!(#file).to_string();
        assert!(text.contains("__cloud_run_grpc_service : pb :: Wrapper"));
        assert!(text.contains("\"https://svc.a.run.app\""));
        assert!(text.contains("audience : :: core :: option :: Option :: None"));
        assert!(text.contains("doc = r\" Docs stay.\""));
        assert!(!text.contains("fn client"));
    }

    #[test]
    fn client_struct_gets_client_and_no_deref() {
        let file = expand_to_file(
            quote!(
                url = "http://127.0.0.1:8080",
                client = pb::foo_client::FooClient,
                audience = "aud",
                env = "FOO_URL",
                header = "x-serverless-authorization",
                timeout = "500ms",
                crate = "rt",
            ),
            quote!(
                struct Foo;
            ),
        );
        let found = items(&file);
        assert!(
            !found.iter().any(|item| item.contains("Deref")),
            "{found:?}"
        );
        let text = quote!(#file).to_string();
        for expected in [
            "pub fn client (& self) -> pb :: foo_client :: FooClient < rt :: CloudRunChannel >",
            "rt :: __private :: shared_from_spec",
            "audience : :: core :: option :: Option :: Some (\"aud\")",
            "env : :: core :: option :: Option :: Some (\"FOO_URL\")",
            "header : :: core :: option :: Option :: Some (\"x-serverless-authorization\")",
            ":: core :: time :: Duration :: from_millis (500u64)",
            "pub const URL : & 'static str = \"http://127.0.0.1:8080\"",
            "pub const HOST : & 'static str = \"127.0.0.1\"",
            "pub const AUDIENCE : & 'static str = \"aud\"",
        ] {
            assert!(text.contains(expected), "{expected}\n{text}");
        }
        assert!(!text.contains("cloud_run_grpc ::"), "{text}");
    }

    #[test]
    fn bad_input_keeps_the_item_and_adds_the_errors() {
        let file = expand_to_file(
            quote!(host = "https://h"),
            quote!(
                pub enum E {
                    A,
                }
            ),
        );
        assert_eq!(file.items.len(), 4, "{:?}", items(&file));
        assert!(matches!(&file.items[0], syn::Item::Enum(item) if item.ident == "E"));
        for item in &file.items[1..] {
            assert!(is_compile_error(item), "{}", quote!(#item));
        }
    }

    fn is_compile_error(item: &syn::Item) -> bool {
        matches!(item, syn::Item::Macro(m) if m.mac.path.segments.last().is_some_and(|s| s.ident == "compile_error"))
    }

    #[test]
    fn a_bad_target_still_expands_with_the_placeholder_and_one_error() {
        let file = expand_to_file(
            quote!(host = "https://h", service = pb::Wrapper, timeout = "30"),
            quote!(
                pub struct Svc;
            ),
        );
        let found = items(&file);
        assert_eq!(found.len(), 8, "{found:?}");
        assert_eq!(
            found[..6],
            [
                "struct Svc",
                "impl",
                "impl :: core :: ops :: Deref",
                "impl :: core :: clone :: Clone",
                "impl :: core :: default :: Default",
                "impl :: core :: fmt :: Debug",
            ]
        );
        assert!(file.items[6..].iter().all(is_compile_error), "{found:?}");
        let text = quote!(#file).to_string();
        for expected in [
            "pub const HOST : & 'static str = \"invalid.invalid\"",
            "pub const URL : & 'static str = \"https://invalid.invalid\"",
            "pub const AUDIENCE : & 'static str = \"https://invalid.invalid\"",
            "timeout : :: core :: option :: Option :: None",
            "__cloud_run_grpc_service : pb :: Wrapper",
        ] {
            assert!(text.contains(expected), "{expected}\n{text}");
        }
    }

    #[test]
    fn without_an_api_what_does_not_depend_on_it_is_still_emitted() {
        let file = expand_to_file(
            quote!(url = "https://svc.a.run.app"),
            quote!(
                pub struct Svc;
            ),
        );
        assert_eq!(
            items(&file)[..5],
            [
                "struct Svc",
                "impl",
                "impl :: core :: clone :: Clone",
                "impl :: core :: default :: Default",
                "impl :: core :: fmt :: Debug",
            ]
        );
        assert_eq!(file.items.len(), 6);
        assert!(is_compile_error(&file.items[5]));
        let text = quote!(#file).to_string();
        assert!(!text.contains("__cloud_run_grpc_service"), "{text}");
        assert!(!text.contains("fn client"), "{text}");
        assert!(text.contains("pub fn with_channel"), "{text}");
        assert!(
            text.contains("pub const URL : & 'static str = \"https://svc.a.run.app\""),
            "{text}"
        );
    }

    #[test]
    fn a_client_with_its_type_parameter_still_gets_client() {
        let file = expand_to_file(
            quote!(host = "svc.a.run.app", client = pb::FooClient<Channel>),
            quote!(
                pub struct Svc;
            ),
        );
        let text = quote!(#file).to_string();
        assert!(
            text.contains(
                "pub fn client (& self) -> pb :: FooClient < :: cloud_run_grpc :: CloudRunChannel >"
            ),
            "{text}"
        );
        assert!(!text.contains("Channel >>"), "{text}");
        assert!(is_compile_error(file.items.last().expect("items")));
    }

    #[test]
    fn a_derived_debug_is_one_error_and_the_expansion_debug_stays() {
        let file = expand_to_file(
            quote!(host = "svc.a.run.app", service = W),
            quote!(
                #[derive(Debug)]
                pub struct Svc;
            ),
        );
        let syn::Item::Struct(item) = &file.items[0] else {
            panic!("{:?}", items(&file))
        };
        assert!(item.attrs.is_empty(), "{}", quote!(#item));
        assert!(items(&file).contains(&"impl :: core :: fmt :: Debug".to_owned()));
        assert_eq!(file.items.iter().filter(|i| is_compile_error(i)).count(), 1);
    }
}
