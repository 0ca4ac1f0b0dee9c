//! Rust names for generated items: modules, wrapper methods, raw identifiers.

use proc_macro2::{Ident, Span};

/// Methods the wrapper defines itself; an RPC whose snake_case name is one of these gets
/// [`RENAME_SUFFIX`] appended so both stay callable.
pub(crate) const RESERVED_METHODS: &[&str] = &["new", "client", "with_timeout", "with_metadata"];

/// What a colliding RPC method name gets appended.
pub(crate) const RENAME_SUFFIX: &str = "_rpc";

/// tonic-build's `snake_case` for module names (`BookStore` → `book_store`), copied because the
/// wrapper must name tonic's `book_store_client` module exactly as tonic spells it.
pub(crate) fn naive_snake_case(name: &str) -> String {
    let mut snake = String::with_capacity(name.len() + 4);
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        snake.push(c.to_ascii_lowercase());
        if chars.peek().is_some_and(|next| next.is_uppercase()) {
            snake.push('_');
        }
    }
    snake
}

/// tonic's client module for a service (`Bookstore` → `bookstore_client`).
pub(crate) fn client_module(service: &str) -> String {
    format!("{}_client", naive_snake_case(service))
}

/// tonic's server module for a service (`Bookstore` → `bookstore_server`).
pub(crate) fn server_module(service: &str) -> String {
    format!("{}_server", naive_snake_case(service))
}

/// Our wrapper module for a service (`Bookstore` → `bookstore_cloud_run`).
pub(crate) fn cloud_run_module(service: &str) -> String {
    format!("{}_cloud_run", naive_snake_case(service))
}

/// The wrapper's method name for an RPC, given prost's method name (already snake_case and
/// keyword-escaped, e.g. `create_book`, `r#type`, `self_`).
pub(crate) fn wrapper_method(prost_name: &str) -> String {
    if RESERVED_METHODS.contains(&prost_name) {
        format!("{prost_name}{RENAME_SUFFIX}")
    } else {
        prost_name.to_owned()
    }
}

/// An identifier from a name that may be raw (`r#type`); `None` when it is not an identifier.
pub(crate) fn ident(name: &str) -> Option<Ident> {
    let (raw, bare) = match name.strip_prefix("r#") {
        Some(bare) => (true, bare),
        None => (false, name),
    };
    let mut chars = bare.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic());
    if !first_ok || !chars.all(|c| c == '_' || c.is_ascii_alphanumeric()) || bare == "_" {
        return None;
    }
    // Identifiers that are keywords must be raw, and a few keywords cannot be raw at all.
    if !raw && syn::parse_str::<syn::Ident>(bare).is_err() {
        return None;
    }
    if raw && matches!(bare, "crate" | "self" | "Self" | "super") {
        return None;
    }
    Some(if raw {
        Ident::new_raw(bare, Span::call_site())
    } else {
        Ident::new(bare, Span::call_site())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_follow_tonic() {
        assert_eq!(naive_snake_case("Bookstore"), "bookstore");
        assert_eq!(naive_snake_case("BookStore"), "book_store");
        assert_eq!(naive_snake_case("HTTPProxy"), "h_t_t_p_proxy");
        assert_eq!(client_module("BookStore"), "book_store_client");
        assert_eq!(server_module("BookStore"), "book_store_server");
        assert_eq!(cloud_run_module("BookStore"), "book_store_cloud_run");
        assert_eq!(cloud_run_module("Type"), "type_cloud_run");
    }

    #[test]
    fn rpc_names_that_clash_with_wrapper_methods_are_renamed() {
        assert_eq!(wrapper_method("create_book"), "create_book");
        assert_eq!(wrapper_method("new"), "new_rpc");
        assert_eq!(wrapper_method("client"), "client_rpc");
        assert_eq!(wrapper_method("with_timeout"), "with_timeout_rpc");
        assert_eq!(wrapper_method("with_metadata"), "with_metadata_rpc");
        assert_eq!(wrapper_method("r#type"), "r#type");
    }

    #[test]
    fn keywords_become_raw_identifiers() {
        assert_eq!(
            ident("r#type").map(|i| i.to_string()).as_deref(),
            Some("r#type")
        );
        assert_eq!(
            ident("r#move").map(|i| i.to_string()).as_deref(),
            Some("r#move")
        );
        assert_eq!(
            ident("r#async").map(|i| i.to_string()).as_deref(),
            Some("r#async")
        );
        assert_eq!(
            ident("self_").map(|i| i.to_string()).as_deref(),
            Some("self_")
        );
        assert_eq!(
            ident("get_book").map(|i| i.to_string()).as_deref(),
            Some("get_book")
        );
    }

    #[test]
    fn non_identifiers_are_refused_not_panicked_on() {
        assert!(ident("type").is_none());
        assert!(ident("r#self").is_none());
        assert!(ident("1abc").is_none());
        assert!(ident("a-b").is_none());
        assert!(ident("").is_none());
        assert!(ident("_").is_none());
    }

    #[test]
    fn every_escaped_prost_name_is_an_identifier() {
        for word in [
            "type", "move", "async", "await", "fn", "impl", "gen", "try", "box",
        ] {
            let escaped = format!("r#{word}");
            assert!(ident(&escaped).is_some(), "{escaped}");
        }
        for word in ["self_", "super_", "crate_", "Self_", "extern_"] {
            assert!(ident(word).is_some(), "{word}");
        }
    }
}
