//! What `service = …` and `client = …` name, checked against the mistakes a path shows.
//!
//! `cloud-run-grpc-build` puts three things with the service's name side by side: tonic's
//! client `foo_client::FooClient`, tonic's server `foo_server::{Foo, FooServer}`, and the
//! wrapper `foo_cloud_run::Foo`. Taking one for another is the likely mistake, and rustc's own
//! errors for it (missing generics, a trait used as a type) never name the right path. So a
//! path that shows the mistake is one error here that names the path to write, and the
//! expansion goes on with that path, so the struct keeps the API the user meant. A path that
//! shows nothing (an import under another name, a message type) is left to the type-level
//! check of the expansion (`__private::ServiceWrapper`).

use proc_macro2::Span;
use quote::ToTokens as _;
use syn::ext::IdentExt as _;
use syn::{Ident, Path, PathSegment};

use crate::attr::Api;

/// The API a `service` path gives, and the error when the path names something else. The API
/// is `None` only when the path shows a mistake but not what was meant.
pub(crate) fn service(path: Path) -> (Option<Api>, Option<syn::Error>) {
    let Some(mistake) = service_mistake(&path) else {
        return (Some(Api::Service(path)), None);
    };
    let written = text(&path);
    let (message, meant) = match mistake {
        Mistake::TonicClient { wrapper } => (
            format!(
                "`{written}` is tonic's client; `service` takes the Cloud Run wrapper generated \
                 next to it: write `service = {}`, or `client = {written}` for the raw tonic \
                 client",
                text(&wrapper)
            ),
            Some(wrapper),
        ),
        Mistake::TonicServer { wrapper } => (
            format!(
                "`{written}` is the server side of the service, which a client cannot call \
                 through; write `service = {}`, the Cloud Run wrapper (or `client = …` with \
                 tonic's `…_client::…Client` for the raw tonic client)",
                text(&wrapper)
            ),
            Some(wrapper),
        ),
        Mistake::Module {
            wrapper: Some(wrapper),
        } => (
            format!(
                "`{written}` is a module; `service` takes the wrapper type generated in it: write \
                 `service = {}` (or `client = …` with tonic's `…_client::…Client` for the raw \
                 tonic client)",
                text(&wrapper)
            ),
            Some(wrapper),
        ),
        Mistake::Module { wrapper: None } => (
            format!(
                "`{written}` is a module; `service` takes a Cloud Run wrapper type, e.g. \
                 `service = {written}::bookstore_cloud_run::Bookstore` (or `client = …` with \
                 tonic's `…_client::…Client` for the raw tonic client)"
            ),
            None,
        ),
    };
    (
        meant.map(Api::Service),
        Some(syn::Error::new_spanned(&path, message)),
    )
}

/// The API a `client` path gives, and the error when it is written with its type parameter or
/// names the Cloud Run wrapper instead of tonic's client.
pub(crate) fn client(mut path: Path) -> (Option<Api>, Option<syn::Error>) {
    let segments = &path.segments;
    if segments.len() >= 2 && suffixed(&segments[segments.len() - 2], "_cloud_run").is_some() {
        let message = format!(
            "`{}` is the Cloud Run wrapper; write `service = {}` to call through it, or \
             `client = …` with tonic's `…_client::…Client` for the raw tonic client",
            text(&path),
            text(&path)
        );
        let error = syn::Error::new_spanned(&path, message);
        return (Some(Api::Service(path)), Some(error));
    }
    let mut error = None;
    if let Some(last) = path.segments.last_mut()
        && !last.arguments.is_none()
    {
        error = Some(syn::Error::new_spanned(
            &path,
            format!(
                "write the client type without its type parameter, e.g. `client = {}`; the \
                 channel type is filled in",
                path.segments
                    .last()
                    .map_or_else(String::new, |last| last.ident.to_string())
            ),
        ));
        if let Some(last) = path.segments.last_mut() {
            last.arguments = syn::PathArguments::None;
        }
    }
    (Some(Api::Client(path)), error)
}

/// A path to one of the things generated beside the wrapper, with the wrapper it should
/// have been, when the path shows which.
enum Mistake {
    /// `…::foo_client::FooClient`.
    TonicClient { wrapper: Path },
    /// `…::foo_server::Foo` (the trait) or `…::foo_server::FooServer`.
    TonicServer { wrapper: Path },
    /// `…::foo_cloud_run`, `…::foo_client`, or another lower-case last segment.
    Module { wrapper: Option<Path> },
}

fn service_mistake(path: &Path) -> Option<Mistake> {
    let segments: Vec<&PathSegment> = path.segments.iter().collect();
    let (last, parent) = match segments.as_slice() {
        [.., parent, last] => (*last, Some(*parent)),
        [last] => (*last, None),
        [] => return None,
    };
    let name = last.ident.unraw().to_string();
    // The wrapper replaces the last two segments (`foo_client::FooClient`) or is appended
    // (`foo_cloud_run`), in the module the path came from.
    let prefix = || segments.len().saturating_sub(2);
    if let Some(parent) = parent {
        if let Some(service) = suffixed(parent, "_client") {
            let camel = name.strip_suffix("Client").unwrap_or(&name).to_owned();
            return Some(Mistake::TonicClient {
                wrapper: wrapper_path(path, prefix(), &service, &camel, last.ident.span()),
            });
        }
        if let Some(service) = suffixed(parent, "_server") {
            let camel = name.strip_suffix("Server").unwrap_or(&name).to_owned();
            return Some(Mistake::TonicServer {
                wrapper: wrapper_path(path, prefix(), &service, &camel, last.ident.span()),
            });
        }
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return None;
    }
    let span = last.ident.span();
    let wrapper = ["_cloud_run", "_client", "_server"]
        .iter()
        .find_map(|suffix| suffixed(last, suffix))
        .map(|service| {
            wrapper_path(
                path,
                segments.len() - 1,
                &service,
                &camel_case(&service),
                span,
            )
        });
    Some(Mistake::Module { wrapper })
}

/// The segment's name without `suffix`, when it is a snake-case name ending in it.
fn suffixed(segment: &PathSegment, suffix: &str) -> Option<String> {
    let name = segment.ident.unraw().to_string();
    let service = name.strip_suffix(suffix)?;
    let snake = !service.is_empty()
        && service
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    snake.then(|| service.to_owned())
}

/// `{the first `keep` segments of path}::{service}_cloud_run::{wrapper}`, spanned at `span`
/// so that a wrapper that does not exist is reported where the path was written.
fn wrapper_path(path: &Path, keep: usize, service: &str, wrapper: &str, span: Span) -> Path {
    let mut meant = Path {
        leading_colon: path.leading_colon,
        segments: path.segments.iter().take(keep).cloned().collect(),
    };
    meant.segments.push(PathSegment::from(Ident::new(
        &format!("{service}_cloud_run"),
        span,
    )));
    meant
        .segments
        .push(PathSegment::from(Ident::new(wrapper, span)));
    meant
}

/// tonic names a service's modules by its name in snake case (`BookStore` → `book_store`);
/// this goes back (`book_store` → `BookStore`), which gives the name for any service whose
/// name starts each word with a capital.
fn camel_case(snake: &str) -> String {
    snake
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// A path as the user would write it, for a message.
fn text(path: &Path) -> String {
    path.to_token_stream()
        .to_string()
        .split_whitespace()
        .collect()
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    fn service_of(path: Path) -> (String, String) {
        let (api, error) = service(path);
        let api = match api {
            Some(Api::Service(path)) => format!("service {}", text(&path)),
            Some(Api::Client(path)) => format!("client {}", text(&path)),
            None => "none".to_owned(),
        };
        (api, error.map_or_else(String::new, |e| e.to_string()))
    }

    #[test]
    fn a_wrapper_path_is_taken_as_it_is() {
        for path in [
            quote!(pb::bookstore_cloud_run::Bookstore),
            quote!(Bookstore),
            quote!(::acme::v1::book_store_cloud_run::BookStore),
            // A wrapper imported under a client's name shows nothing; the type-level check
            // of the expansion is what catches a real client there.
            quote!(BookstoreClient),
        ] {
            let expected = format!("service {}", text(&syn::parse2(path.clone()).unwrap()));
            assert_eq!(
                service_of(syn::parse2(path.clone()).unwrap()),
                (expected, String::new()),
                "{path}"
            );
        }
    }

    #[test]
    fn each_neighbour_of_the_wrapper_is_one_error_naming_it() {
        let cases = [
            (
                quote!(pb::bookstore_client::BookstoreClient),
                "service pb::bookstore_cloud_run::Bookstore",
                "`pb::bookstore_client::BookstoreClient` is tonic's client; `service` takes the \
                 Cloud Run wrapper generated next to it: write \
                 `service = pb::bookstore_cloud_run::Bookstore`, or \
                 `client = pb::bookstore_client::BookstoreClient` for the raw tonic client",
            ),
            (
                quote!(pb::bookstore_server::Bookstore),
                "service pb::bookstore_cloud_run::Bookstore",
                "write `service = pb::bookstore_cloud_run::Bookstore`",
            ),
            (
                quote!(::pb::book_store_server::BookStoreServer),
                "service ::pb::book_store_cloud_run::BookStore",
                "is the server side",
            ),
            (
                quote!(pb::bookstore_cloud_run),
                "service pb::bookstore_cloud_run::Bookstore",
                "`pb::bookstore_cloud_run` is a module; `service` takes the wrapper type \
                 generated in it: write `service = pb::bookstore_cloud_run::Bookstore`",
            ),
            (
                quote!(pb::book_store_client),
                "service pb::book_store_cloud_run::BookStore",
                "write `service = pb::book_store_cloud_run::BookStore`",
            ),
            (
                quote!(bookstore_server),
                "service bookstore_cloud_run::Bookstore",
                "is a module",
            ),
            (
                quote!(pb),
                "none",
                "e.g. `service = pb::bookstore_cloud_run::Bookstore`",
            ),
        ];
        for (path, api, message) in cases {
            let (found_api, found_message) = service_of(syn::parse2(path.clone()).unwrap());
            assert_eq!(found_api, api, "{path}");
            assert!(found_message.contains(message), "{path}: {found_message}");
            assert!(
                found_message.contains("client = "),
                "{path}: names the raw client option: {found_message}"
            );
        }
    }

    #[test]
    fn a_wrapper_given_as_client_is_one_error_and_used_as_the_service() {
        let (api, error) = client(syn::parse2(quote!(pb::bookstore_cloud_run::Bookstore)).unwrap());
        assert!(matches!(api, Some(Api::Service(_))));
        let message = error.expect("an error").to_string();
        assert!(
            message.contains("write `service = pb::bookstore_cloud_run::Bookstore`"),
            "{message}"
        );
    }

    #[test]
    fn a_client_keeps_its_path_without_the_type_parameter() {
        let (api, error) = client(syn::parse2(quote!(a::FooClient<T>)).unwrap());
        let Some(Api::Client(path)) = api else {
            panic!("a client")
        };
        assert_eq!(text(&path), "a::FooClient");
        assert!(
            error
                .expect("an error")
                .to_string()
                .contains("without its type parameter, e.g. `client = FooClient`")
        );
        let (api, error) = client(syn::parse2(quote!(a::foo_client::FooClient)).unwrap());
        assert!(matches!(api, Some(Api::Client(_))) && error.is_none());
    }

    #[test]
    fn snake_case_goes_back_to_the_service_name() {
        assert_eq!(camel_case("bookstore"), "Bookstore");
        assert_eq!(camel_case("book_store"), "BookStore");
        assert_eq!(camel_case("h_t_t_p_proxy"), "HTTPProxy");
        assert_eq!(camel_case("v2_service"), "V2Service");
    }
}
