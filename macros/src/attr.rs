//! Parsing `#[cloud_run_client(...)]` and the struct under it into a [`Config`].
//!
//! Every mistake is collected (as serde_derive's `Ctxt` does) and reported at once, each at
//! the span of the option or token that is wrong, with a message that says what to write.
//! Parsing carries on past a mistake and fills in a fallback, so that the expansion still
//! gives the rest of the crate the struct's API and one mistake is one error (as
//! tokio-macros does): a placeholder target for a bad `host` or `url`, no value for a bad
//! optional option, and no API when neither `service` nor `client` can be read.

use cloud_run_grpc_endpoint::{self as endpoint, Problem, Target};
use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt as _;
use syn::parse::{ParseStream, Parser as _};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned as _;
use syn::{Ident, LitStr, Path, Token};

use crate::api;

mod kw {
    syn::custom_keyword!(host);
    syn::custom_keyword!(url);
    syn::custom_keyword!(service);
    syn::custom_keyword!(client);
    syn::custom_keyword!(audience);
    syn::custom_keyword!(env);
    syn::custom_keyword!(header);
    syn::custom_keyword!(timeout);
}

const OPTIONS: &str =
    "`host`, `url`, `service`, `client`, `audience`, `env`, `header`, `timeout` and `crate`";
const EXAMPLE: &str =
    "#[cloud_run_client(host = \"svc-abc123-ew.a.run.app\", service = pb::svc_cloud_run::Svc)]";
const SUPPORTED_ITEM: &str =
    "`#[cloud_run_client]` applies to a unit struct without generics, e.g. `pub struct Bookstore;`";

/// The host the expansion uses when `host` or `url` is missing or wrong: `.invalid` is
/// reserved (RFC 2606) and never resolves, and the crate does not build anyway.
const PLACEHOLDER_HOST: &str = "invalid.invalid";

/// What parsing found: the configuration to expand, with fallbacks where the attribute was
/// wrong, and every mistake.
pub(crate) struct Parsed {
    /// `None` when the item is not a struct the expansion can stand in for (an enum, a
    /// function, a struct with generics or fields): the item is then emitted unchanged.
    pub(crate) config: Option<Config>,
    /// Every mistake, combined; `None` when the attribute and the item are right.
    pub(crate) errors: Option<syn::Error>,
}

/// An attribute and the struct it is on: everything the expansion needs.
pub(crate) struct Config {
    /// The runtime crate, `::cloud_run_grpc` unless `crate = "..."` renames it.
    pub(crate) krate: Path,
    /// Where the client calls, checked by the rules the runtime shares; [`placeholder`] after
    /// a mistake in `host` or `url`.
    pub(crate) target: Target,
    /// The audience as written; `None` lets the runtime derive it from the URL it ends up
    /// using, so that an `env` override also moves the audience.
    pub(crate) audience: Option<String>,
    pub(crate) env: Option<String>,
    pub(crate) header: Option<&'static str>,
    pub(crate) timeout_ms: Option<u64>,
    /// `None` only after a mistake: neither `service` nor `client` could be read, so the
    /// expansion leaves out what depends on them.
    pub(crate) api: Option<Api>,
    pub(crate) item: syn::ItemStruct,
}

/// The target the expansion uses when `host` or `url` is missing or wrong.
pub(crate) fn placeholder() -> Target {
    endpoint::host(PLACEHOLDER_HOST).expect("the placeholder is a valid host")
}

/// What the annotated struct gives access to.
pub(crate) enum Api {
    /// A generated wrapper type with `fn new(CloudRunChannel) -> Self`; the struct derefs to it.
    Service(Path),
    /// A tonic client type `FooClient<T>`; the struct hands out `FooClient<CloudRunChannel>`.
    Client(Path),
}

/// Parses the attribute's arguments and the item under it, past every mistake.
pub(crate) fn parse(args: TokenStream, item: TokenStream) -> Parsed {
    let mut errors = Errors::default();
    let options = parse_options(args, &mut errors);
    let item = parse_item(item, &mut errors);
    let checked = validate(options, &mut errors);
    Parsed {
        config: item.map(|item| checked.with_item(item)),
        errors: errors.0,
    }
}

/// Collected errors, reported together.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn at(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    /// The value of a check that may have found a mistake, recording the mistake.
    fn keep<T>(&mut self, (value, error): (T, Option<syn::Error>)) -> T {
        if let Some(error) = error {
            self.push(error);
        }
        value
    }
}

/// An option as written: the span of its name and its value.
struct Given<T> {
    span: Span,
    value: T,
}

/// The options as written, each at most once, not yet checked against each other.
#[derive(Default)]
struct Options {
    host: Option<Given<LitStr>>,
    url: Option<Given<LitStr>>,
    service: Option<Given<Path>>,
    client: Option<Given<Path>>,
    audience: Option<Given<LitStr>>,
    env: Option<Given<LitStr>>,
    header: Option<Given<LitStr>>,
    timeout: Option<Given<LitStr>>,
    krate: Option<Given<LitStr>>,
    /// The attribute had no arguments at all.
    empty: bool,
    /// An option was misspelt or its value malformed: a required option that seems missing
    /// may be that one, so "missing" errors would only repeat the mistake.
    unreadable: bool,
}

fn parse_options(args: TokenStream, errors: &mut Errors) -> Options {
    let mut options = Options {
        empty: args.is_empty(),
        ..Options::default()
    };
    let parser = |input: ParseStream| {
        parse_option_list(input, &mut options, errors);
        Ok(())
    };
    // The closure records its own errors and always returns `Ok`.
    let _ = parser.parse2(args);
    options
}

fn parse_option_list(input: ParseStream, options: &mut Options, errors: &mut Errors) {
    while !input.is_empty() {
        if let Err(error) = parse_option(input, options, errors) {
            errors.push(error);
            skip_past_comma(input);
            continue;
        }
        if input.is_empty() {
            break;
        }
        if input.parse::<Token![,]>().is_err() {
            // Carry on with the next option: a missing comma is one mistake, not two.
            errors.push(input.error("expected `,` between options"));
        }
    }
}

/// Skips the rest of a malformed option, so that the options after it are still read.
fn skip_past_comma(input: ParseStream) {
    let _ = input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tree, next)) = rest.token_tree() {
            rest = next;
            if matches!(&tree, proc_macro2::TokenTree::Punct(p) if p.as_char() == ',') {
                break;
            }
        }
        Ok(((), rest))
    });
}

fn parse_option(input: ParseStream, options: &mut Options, errors: &mut Errors) -> syn::Result<()> {
    macro_rules! string_option {
        ($kw:ty, $name:literal, $field:ident, $example:literal) => {{
            let key: $kw = input.parse()?;
            let value =
                string_value(input, $name, $example).inspect_err(|_| options.unreadable = true)?;
            set(&mut options.$field, key.span, value, $name, errors);
        }};
    }
    macro_rules! path_option {
        ($kw:ty, $name:literal, $field:ident, $example:literal) => {{
            let key: $kw = input.parse()?;
            let value = path_value(input, $name, $example, errors)
                .inspect_err(|_| options.unreadable = true)?;
            set(&mut options.$field, key.span, value, $name, errors);
        }};
    }

    if input.peek(kw::host) {
        string_option!(kw::host, "host", host, "host = \"svc-abc123-ew.a.run.app\"");
    } else if input.peek(kw::url) {
        string_option!(
            kw::url,
            "url",
            url,
            "url = \"https://svc-abc123-ew.a.run.app\""
        );
    } else if input.peek(kw::service) {
        path_option!(
            kw::service,
            "service",
            service,
            "service = pb::bookstore_cloud_run::Bookstore"
        );
    } else if input.peek(kw::client) {
        path_option!(
            kw::client,
            "client",
            client,
            "client = pb::bookstore_client::BookstoreClient"
        );
    } else if input.peek(kw::audience) {
        string_option!(
            kw::audience,
            "audience",
            audience,
            "audience = \"https://svc-abc123-ew.a.run.app\""
        );
    } else if input.peek(kw::env) {
        string_option!(kw::env, "env", env, "env = \"BOOKSTORE_URL\"");
    } else if input.peek(kw::header) {
        string_option!(
            kw::header,
            "header",
            header,
            "header = \"x-serverless-authorization\""
        );
    } else if input.peek(kw::timeout) {
        string_option!(kw::timeout, "timeout", timeout, "timeout = \"30s\"");
    } else if input.peek(Token![crate]) {
        string_option!(Token![crate], "crate", krate, "crate = \"cloud_run_grpc\"");
    } else if input.peek(Ident::peek_any) {
        options.unreadable = true;
        let name = Ident::parse_any(input)?;
        return Err(syn::Error::new(
            name.span(),
            format!("unknown option `{name}`; the options are {OPTIONS}"),
        ));
    } else {
        options.unreadable = true;
        return Err(input.error(format!("expected an option: one of {OPTIONS}")));
    }
    Ok(())
}

fn set<T>(slot: &mut Option<Given<T>>, span: Span, value: T, name: &str, errors: &mut Errors) {
    if slot.is_some() {
        errors.at(span, format!("`{name}` is given twice; keep one"));
    } else {
        *slot = Some(Given { span, value });
    }
}

fn equals(input: ParseStream, name: &str, example: &str) -> syn::Result<()> {
    if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
        Ok(())
    } else {
        Err(input.error(format!("expected `=` after `{name}`, e.g. `{example}`")))
    }
}

fn string_value(input: ParseStream, name: &str, example: &str) -> syn::Result<LitStr> {
    equals(input, name, example)?;
    if input.peek(LitStr) {
        input.parse()
    } else {
        Err(input.error(format!("`{name}` takes a string literal, e.g. `{example}`")))
    }
}

fn path_value(
    input: ParseStream,
    name: &str,
    example: &str,
    errors: &mut Errors,
) -> syn::Result<Path> {
    equals(input, name, example)?;
    if input.peek(LitStr) {
        let quoted: LitStr = input.parse()?;
        let error = syn::Error::new(
            quoted.span(),
            format!("`{name}` takes a type path, not a string, e.g. `{example}`"),
        );
        // A path in quotes still names the API: the expansion keeps `Deref` or `client()`,
        // so the quotes are the only error.
        match quoted.parse::<Path>() {
            Ok(path) => {
                errors.push(error);
                Ok(path)
            }
            Err(_) => Err(error),
        }
    } else if input.peek(Token![::]) || input.peek(Ident::peek_any) {
        input.parse()
    } else {
        Err(input.error(format!("`{name}` takes a type path, e.g. `{example}`")))
    }
}

/// The options once checked, with fallbacks, before the item is attached.
struct Checked {
    krate: Path,
    target: Target,
    audience: Option<String>,
    env: Option<String>,
    header: Option<&'static str>,
    timeout_ms: Option<u64>,
    api: Option<Api>,
}

impl Checked {
    fn with_item(self, item: syn::ItemStruct) -> Config {
        Config {
            krate: self.krate,
            target: self.target,
            audience: self.audience,
            env: self.env,
            header: self.header,
            timeout_ms: self.timeout_ms,
            api: self.api,
            item,
        }
    }
}

/// Checks the options against each other and their values, recording each mistake and
/// falling back where one was made.
fn validate(options: Options, errors: &mut Errors) -> Checked {
    // No "is required" errors after an empty attribute (one error shows a whole one) or an
    // unreadable option (it may be the one that seems missing).
    let quiet = options.empty || options.unreadable;
    if options.empty {
        errors.at(
            Span::call_site(),
            format!("`#[cloud_run_client]` needs a target and a service, e.g. `{EXAMPLE}`"),
        );
    }

    let target = match (options.host, options.url) {
        (Some(_), Some(url)) => {
            errors.at(
                url.span,
                "`host` and `url` are both given; keep one: `host = \"...\"` for a Cloud Run \
                 host, or `url = \"https://...\"` for a full URL",
            );
            None
        }
        (Some(host), None) => check(errors, &host.value, validate_host(&host.value.value())),
        (None, Some(url)) => check(errors, &url.value, validate_url(&url.value.value())),
        (None, None) if quiet => None,
        (None, None) => {
            errors.at(
                Span::call_site(),
                "`host` or `url` is required, e.g. \
                 `#[cloud_run_client(host = \"svc-abc123-ew.a.run.app\", ...)]`",
            );
            None
        }
    };

    let api = match (options.service, options.client) {
        (Some(service), Some(client)) => {
            errors.at(
                client.span,
                "`service` and `client` are both given; keep one: `service = ...` for a \
                 generated wrapper, or `client = ...` for a tonic client",
            );
            // Either would do; `service` also gives the RPC methods through `Deref`.
            errors.keep(api::service(service.value))
        }
        (Some(service), None) => errors.keep(api::service(service.value)),
        (None, Some(client)) => errors.keep(api::client(client.value)),
        (None, None) if quiet => None,
        (None, None) => {
            errors.at(
                Span::call_site(),
                "`service` or `client` is required, e.g. \
                 `service = pb::bookstore_cloud_run::Bookstore` for a generated wrapper, or \
                 `client = pb::bookstore_client::BookstoreClient` for a tonic client",
            );
            None
        }
    };

    let audience = options.audience.and_then(|audience| {
        check(
            errors,
            &audience.value,
            validate_audience(&audience.value.value()),
        )
    });
    let env = options
        .env
        .and_then(|env| check(errors, &env.value, validate_env(&env.value.value())));
    let header = options.header.and_then(|header| {
        check(
            errors,
            &header.value,
            validate_header(&header.value.value()),
        )
    });
    let timeout_ms = options.timeout.and_then(|timeout| {
        check(
            errors,
            &timeout.value,
            parse_duration_ms(&timeout.value.value()),
        )
    });
    let krate = options.krate.and_then(|krate| {
        let path = krate.value.parse::<Path>().map_err(|_| {
            "`crate` takes the path of the runtime crate, e.g. `crate = \"cloud_run_grpc\"`"
                .to_owned()
        });
        check(errors, &krate.value, path)
    });

    Checked {
        // After a mistake in `crate`, the default name is the best guess: it is right
        // whenever the dependency was not renamed (`crate = "cloud-run-grpc"`, say).
        krate: krate.unwrap_or_else(|| syn::parse_quote!(::cloud_run_grpc)),
        target: target.unwrap_or_else(placeholder),
        audience,
        env,
        header,
        timeout_ms,
        api,
    }
}

/// Records a validation failure at the span of what was written.
fn check<T>(
    errors: &mut Errors,
    at: &impl quote::ToTokens,
    result: Result<T, String>,
) -> Option<T> {
    result
        .map_err(|message| errors.push(syn::Error::new_spanned(at, message)))
        .ok()
}

/// Checks a Cloud Run host (`svc-abc123-ew.a.run.app`, `api.example.com:8443`) by the rules
/// the runtime shares, with advice in the attribute's terms.
pub(crate) fn validate_host(host: &str) -> Result<Target, String> {
    endpoint::host(host).map_err(|problem| {
        let advice = match &problem {
            Problem::HostWithScheme => format!(
                "write `host = \"{}\"`, or `url = \"{host}\"` for a full URL",
                host_part(host)
            ),
            Problem::Path | Problem::UserInfo => {
                format!("write `host = \"{}\"`", host_part(host))
            }
            Problem::Port(_) => format!(
                "e.g. `host = \"{}:8443\"`, or no port for 443",
                host_part(host)
            ),
            _ => "e.g. `host = \"svc-abc123-ew.a.run.app\"`".to_owned(),
        };
        format!("invalid `host`: {problem}; {advice}")
    })
}

/// What follows the scheme, if there is one.
fn scheme_free(written: &str) -> &str {
    written.split_once("://").map_or(written, |(_, rest)| rest)
}

/// The host name in something written as a URL, for a suggestion.
fn host_part(written: &str) -> &str {
    let rest = scheme_free(written.trim());
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    match authority.rfind(':') {
        Some(colon) if !authority.ends_with(']') => &authority[..colon],
        _ => authority,
    }
}

/// Checks a `url` (`https://host[:port]`, or `http://` to a loopback address) by the rules the
/// runtime shares, with advice in the attribute's terms.
pub(crate) fn validate_url(url: &str) -> Result<Target, String> {
    endpoint::url(url).map_err(|problem| {
        let rest = scheme_free(url.trim());
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let advice = match &problem {
            Problem::NoScheme => {
                format!("write `url = \"https://{url}\"`, or `host = \"{url}\"`")
            }
            Problem::UnsupportedScheme(_) | Problem::Plaintext(_) => {
                format!("write `url = \"https://{authority}\"`")
            }
            Problem::Path => {
                let scheme = url.trim().split_once("://").map_or("https", |(s, _)| s);
                format!("write `url = \"{scheme}://{authority}\"`")
            }
            Problem::UserInfo => format!("write `url = \"https://{}\"`", host_part(url)),
            Problem::Port(_) => format!(
                "e.g. `url = \"https://{}:8443\"`, or no port for the scheme's own",
                host_part(url)
            ),
            _ => "e.g. `url = \"https://svc-abc123-ew.a.run.app\"`".to_owned(),
        };
        format!("invalid `url`: {problem}; {advice}")
    })
}

fn validate_audience(audience: &str) -> Result<String, String> {
    if audience.is_empty()
        || audience
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(
            "`audience` must be non-empty with no spaces, e.g. `audience = \"https://svc-abc123-ew.a.run.app\"`; \
             leave it out to use `https://{host}`"
                .to_owned(),
        );
    }
    Ok(audience.to_owned())
}

fn validate_env(name: &str) -> Result<String, String> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "`env` takes the name of an environment variable (letters, digits and `_`, not \
             starting with a digit), e.g. `env = \"BOOKSTORE_URL\"`; `{}` is not one",
            name.escape_default()
        ))
    }
}

/// The token header, in any case, by the rule the runtime shares.
fn validate_header(header: &str) -> Result<&'static str, String> {
    endpoint::header(header)
        .map(endpoint::Header::name)
        .map_err(|problem| format!("invalid `header`: {problem}"))
}

/// Parses `"500ms"`, `"30s"` or `"2m"` into milliseconds.
pub(crate) fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let malformed = || {
        format!(
            "malformed duration `\"{}\"`: write a whole number followed by `ms`, `s` or `m`, \
             e.g. `\"500ms\"`, `\"30s\"` or `\"2m\"`",
            text.escape_default()
        )
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(malformed)?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(malformed());
    }
    let per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        _ => return Err(malformed()),
    };
    let too_long = || format!("duration `\"{text}\"` is too long");
    let ms = number
        .parse::<u64>()
        .map_err(|_| too_long())?
        .checked_mul(per_unit)
        .ok_or_else(too_long)?;
    if ms == 0 {
        return Err(
            "`timeout` must be longer than zero, e.g. `\"30s\"`; leave it out for no timeout"
                .to_owned(),
        );
    }
    Ok(ms)
}

/// Why a derive on the struct cannot stay, if it cannot.
fn derive_conflict(derived: &Path) -> Option<String> {
    let last = derived.segments.last()?;
    let name = last.ident.to_string();
    match name.as_str() {
        "Clone" | "Default" | "Debug" => Some(format!(
            "`#[cloud_run_client]` implements `Clone`, `Default` and `Debug` itself; \
             remove `{name}` from `#[derive(..)]`"
        )),
        // These need every field to implement them, and the channel the expansion adds
        // implements none of them.
        "PartialEq" | "Eq" | "PartialOrd" | "Ord" | "Hash" | "Copy" => Some(format!(
            "a `#[cloud_run_client]` struct cannot derive `{name}`: the channel it holds does \
             not implement it; remove `{name}` from `#[derive(..)]`"
        )),
        _ => None,
    }
}

/// Takes out of the struct's `#[derive(..)]`s each trait that cannot be derived beside the
/// expansion, with an error at it, so that the expansion stands in for the struct without a
/// follow-on error.
fn remove_conflicting_derives(attrs: &mut Vec<syn::Attribute>, errors: &mut Errors) {
    attrs.retain_mut(|attr| {
        if !attr.path().is_ident("derive") {
            return true;
        }
        let syn::Meta::List(list) = &mut attr.meta else {
            return true;
        };
        let Ok(derived) = list.parse_args_with(Punctuated::<Path, Token![,]>::parse_terminated)
        else {
            return true;
        };
        let mut kept = Vec::new();
        let mut removed = false;
        for derived in derived {
            match derive_conflict(&derived) {
                Some(message) => {
                    errors.push(syn::Error::new_spanned(&derived, message));
                    removed = true;
                }
                None => kept.push(derived),
            }
        }
        if removed {
            list.tokens = quote::quote!(#(#kept),*);
        }
        !kept.is_empty() || !removed
    });
}

/// Checks that the item is a unit struct without generics.
///
/// Returns the struct the expansion stands in for, or `None` when it cannot: on any other
/// item, the error says what is supported and the caller emits the item unchanged.
fn parse_item(item: TokenStream, errors: &mut Errors) -> Option<syn::ItemStruct> {
    let item = match syn::parse2::<syn::Item>(item) {
        Ok(item) => item,
        Err(error) => {
            errors.at(error.span(), SUPPORTED_ITEM);
            return None;
        }
    };
    let (span, found) = match item {
        syn::Item::Struct(mut item) => {
            let mut ok = true;
            if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
                let message = format!("{SUPPORTED_ITEM}; remove the generics");
                errors.push(match &item.generics.where_clause {
                    Some(clause) if item.generics.params.is_empty() => {
                        syn::Error::new_spanned(clause, message)
                    }
                    _ => syn::Error::new_spanned(&item.generics, message),
                });
                ok = false;
            }
            if !item.fields.is_empty() {
                errors.push(syn::Error::new_spanned(
                    &item.fields,
                    format!(
                        "{SUPPORTED_ITEM}; remove the fields: the attribute adds its own \
                         (use `with_channel` to pass a configured channel)"
                    ),
                ));
                ok = false;
            }
            remove_conflicting_derives(&mut item.attrs, errors);
            return ok.then_some(item);
        }
        syn::Item::Enum(item) => (item.enum_token.span, "an enum"),
        syn::Item::Fn(item) => (item.sig.fn_token.span, "a function"),
        syn::Item::Union(item) => (item.union_token.span, "a union"),
        syn::Item::Trait(item) => (item.trait_token.span, "a trait"),
        syn::Item::Impl(item) => (item.impl_token.span, "an impl block"),
        syn::Item::Mod(item) => (item.mod_token.span, "a module"),
        syn::Item::Type(item) => (item.type_token.span, "a type alias"),
        other => (other.span(), "this item"),
    };
    errors.at(span, format!("{SUPPORTED_ITEM}, not to {found}"));
    None
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    /// `(HOST, URL)` of a target, as the expansion's constants say them.
    fn target(target: &Target) -> (String, String) {
        (target.host.clone(), target.url())
    }

    fn host_and_url(host: &str, url: &str) -> (String, String) {
        (host.to_owned(), url.to_owned())
    }

    /// The table the runtime runs too, through the attribute's own front door (the option as
    /// written, parsed with the rest of the attribute), so the two cannot disagree.
    #[test]
    fn hosts_and_urls_follow_the_shared_table() {
        use cloud_run_grpc_endpoint::{CASES, Front};
        for case in CASES {
            let value = LitStr::new(case.input, Span::call_site());
            let args = match case.front {
                Front::Host => quote!(host = #value, service = W),
                Front::Url => quote!(url = #value, service = W),
            };
            let parsed = parse(
                args,
                quote!(
                    struct S;
                ),
            );
            let got = match parsed.errors {
                None => {
                    let target = parsed.config.expect("a unit struct").target;
                    Ok((target.url(), target.default_audience()))
                }
                Some(error) => Err(error),
            };
            case.check(got).unwrap_or_else(|why| panic!("{why}"));
        }
    }

    #[test]
    fn a_host_may_carry_a_port_that_the_audience_leaves_out() {
        let found = validate_host("svc.example.com:8443").unwrap();
        assert_eq!(
            target(&found),
            host_and_url("svc.example.com", "https://svc.example.com:8443")
        );
        assert_eq!(found.default_audience(), "https://svc.example.com");
    }

    #[test]
    fn a_wrong_host_says_what_to_write_as_an_attribute() {
        let cases = [
            (
                "https://svc.a.run.app",
                "invalid `host`: a host takes no scheme; write `host = \"svc.a.run.app\"`, or \
                 `url = \"https://svc.a.run.app\"` for a full URL",
            ),
            (
                "svc.a.run.app/v1",
                "path, query or fragment, and gRPC names the method in the path; write \
                 `host = \"svc.a.run.app\"`",
            ),
            (
                "user@svc.a.run.app",
                "user name or password; write `host = \"svc.a.run.app\"`",
            ),
            (
                "svc.a.run.app:0",
                "the port `0` is not a number from 1 to 65535; e.g. \
                 `host = \"svc.a.run.app:8443\"`, or no port for 443",
            ),
            (
                "svc_1.a.run.app",
                "`_` is not allowed in a host name; use letters, digits, `-` and `.`; e.g. \
                 `host = \"svc-abc123-ew.a.run.app\"`",
            ),
        ];
        for (host, expected) in cases {
            let message = validate_host(host).expect_err(host);
            assert!(message.contains(expected), "{host:?}: {message}");
        }
    }

    #[test]
    fn a_wrong_url_says_what_to_write_as_an_attribute() {
        let cases = [
            (
                "svc.a.run.app",
                "write `url = \"https://svc.a.run.app\"`, or `host = \"svc.a.run.app\"`",
            ),
            (
                "ftp://svc.a.run.app",
                "the scheme `ftp` is not supported: use `https` (or `http` to a loopback \
                 address); write `url = \"https://svc.a.run.app\"`",
            ),
            (
                "http://svc.a.run.app:8080",
                "only to a loopback address (127.0.0.0/8, [::1], localhost); write \
                 `url = \"https://svc.a.run.app:8080\"`",
            ),
            (
                "HTTP://svc.a.run.app/v1?x",
                "write `url = \"HTTP://svc.a.run.app\"`",
            ),
            (
                "https://user:pw@svc.a.run.app",
                "user name or password; write `url = \"https://svc.a.run.app\"`",
            ),
            (
                "https://svc.a.run.app:99999",
                "the port `99999` is not a number from 1 to 65535; e.g. \
                 `url = \"https://svc.a.run.app:8443\"`",
            ),
        ];
        for (url, expected) in cases {
            let message = validate_url(url).expect_err(url);
            assert!(message.contains(expected), "{url:?}: {message}");
        }
        // No advice repeats the credentials of a URL with user info.
        assert!(
            !validate_url("https://user:pw@svc.a.run.app")
                .unwrap_err()
                .contains("pw")
        );
    }

    #[test]
    fn durations_take_ms_s_and_m() {
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("30s"), Ok(30_000));
        assert_eq!(parse_duration_ms("2m"), Ok(120_000));
        assert_eq!(parse_duration_ms("007s"), Ok(7_000));
    }

    #[test]
    fn malformed_durations_name_the_accepted_forms() {
        for text in [
            "30", "s", "30 s", " 30s", "1h", "1.5s", "-1s", "30S", "", "5sec",
        ] {
            let message = parse_duration_ms(text).expect_err(text);
            assert!(message.contains("`ms`, `s` or `m`"), "{text:?}: {message}");
        }
        assert!(
            parse_duration_ms("0s")
                .unwrap_err()
                .contains("longer than zero")
        );
        assert!(
            parse_duration_ms("99999999999999999999s")
                .unwrap_err()
                .contains("too long")
        );
        assert!(
            parse_duration_ms("18446744073709551615m")
                .unwrap_err()
                .contains("too long")
        );
    }

    #[test]
    fn env_and_audience_values() {
        assert_eq!(
            validate_env("BOOKSTORE_URL"),
            Ok("BOOKSTORE_URL".to_owned())
        );
        assert_eq!(validate_env("_x1"), Ok("_x1".to_owned()));
        for bad in ["", "1X", "A-B", "A B", "A=B"] {
            assert!(validate_env(bad).is_err(), "{bad:?}");
        }
        assert!(validate_audience("").is_err());
        assert!(validate_audience("a b").is_err());
        assert_eq!(validate_audience("custom-aud"), Ok("custom-aud".to_owned()));
    }

    /// The header rule is the runtime's: the attribute accepts what it accepts, in any case.
    #[test]
    fn headers_follow_the_shared_rule() {
        for name in [
            "authorization",
            "Authorization",
            "x-serverless-authorization",
            "X-Serverless-Authorization",
            " authorization ",
            "bearer",
            "x-api-key",
            "",
        ] {
            let shared = cloud_run_grpc_endpoint::header(name);
            match validate_header(name) {
                Ok(header) => assert_eq!(Ok(header), shared.map(|h| h.name()), "{name:?}"),
                Err(message) => {
                    let problem = shared.expect_err(name);
                    assert!(
                        message.contains(&problem.to_string()),
                        "{name:?}: {message}"
                    );
                }
            }
        }
        assert_eq!(
            validate_header("X-Serverless-Authorization"),
            Ok("x-serverless-authorization")
        );
    }

    fn errors(args: TokenStream, item: TokenStream) -> Vec<String> {
        parse(args, item).errors.map_or_else(Vec::new, |error| {
            error.into_iter().map(|e| e.to_string()).collect()
        })
    }

    /// The configuration of a right attribute.
    fn config(args: TokenStream, item: TokenStream) -> Config {
        let parsed = parse(args, item);
        if let Some(error) = parsed.errors {
            panic!("{error}");
        }
        parsed.config.expect("a unit struct")
    }

    /// The configuration the expansion falls back to after the mistakes in `args`.
    fn fallback(args: TokenStream, item: TokenStream) -> Config {
        let parsed = parse(args.clone(), item);
        assert!(parsed.errors.is_some(), "{args}: no error");
        parsed.config.expect("a unit struct")
    }

    fn api(config: &Config) -> String {
        match &config.api {
            Some(Api::Service(path)) => format!("service {}", quote!(#path)),
            Some(Api::Client(path)) => format!("client {}", quote!(#path)),
            None => "none".to_owned(),
        }
    }

    #[test]
    fn full_configuration_parses() {
        let config = config(
            quote!(
                url = "https://svc.a.run.app:8443/",
                client = a::b::FooClient,
                audience = "aud",
                env = "SVC_URL",
                header = "x-serverless-authorization",
                timeout = "2m",
                crate = "renamed::rt",
            ),
            quote!(
                pub(crate) struct Svc;
            ),
        );
        assert_eq!(
            target(&config.target),
            host_and_url("svc.a.run.app", "https://svc.a.run.app:8443")
        );
        assert_eq!(config.audience.as_deref(), Some("aud"));
        assert_eq!(config.env.as_deref(), Some("SVC_URL"));
        assert_eq!(config.header, Some("x-serverless-authorization"));
        assert_eq!(config.timeout_ms, Some(120_000));
        let krate = &config.krate;
        assert_eq!(quote!(#krate).to_string(), quote!(renamed::rt).to_string());
        let Some(Api::Client(client)) = &config.api else {
            panic!("expected a client")
        };
        assert_eq!(
            quote!(#client).to_string(),
            quote!(a::b::FooClient).to_string()
        );
        assert_eq!(config.item.ident, "Svc");
    }

    #[test]
    fn defaults() {
        let config = config(
            quote!(host = "svc.a.run.app", service = W),
            quote!(
                struct S;
            ),
        );
        let krate = &config.krate;
        assert_eq!(
            quote!(#krate).to_string(),
            quote!(::cloud_run_grpc).to_string()
        );
        assert!(config.audience.is_none() && config.env.is_none());
        assert!(config.header.is_none() && config.timeout_ms.is_none());
        assert!(matches!(&config.api, Some(Api::Service(path)) if path.is_ident("W")));
    }

    #[test]
    fn each_mistake_is_one_error() {
        let item = quote!(
            struct S;
        );
        let cases = [
            (quote!(), "needs a target and a service"),
            (quote!(service = W), "`host` or `url` is required"),
            (quote!(host = "h"), "`service` or `client` is required"),
            (
                quote!(host = "h", url = "https://h", service = W),
                "both given",
            ),
            (quote!(host = "h", service = W, client = C), "both given"),
            (quote!(host = "h", host = "g", service = W), "given twice"),
            (
                quote!(host = "h", service = W, hots = "x"),
                "unknown option `hots`",
            ),
            (
                quote!(host = "h", service = W, timeout = "30"),
                "malformed duration",
            ),
            (quote!(host = h, service = W), "takes a string literal"),
            (quote!(hots = "h", service = W), "unknown option `hots`"),
            (quote!(host = "h", servce = W), "unknown option `servce`"),
            (
                quote!(host = "h", service = "W"),
                "takes a type path, not a string",
            ),
            (quote!(host "h", service = W), "expected `=` after `host`"),
            (quote!(host = "h" service = W), "expected `,`"),
            (
                quote!(host = "h", client = C<T>),
                "without its type parameter",
            ),
            (
                quote!(host = "h", service = W, crate = "a b"),
                "`crate` takes the path",
            ),
            (quote!(host = "h", service = W, 5), "expected an option"),
        ];
        for (args, expected) in cases {
            let found = errors(args.clone(), item.clone());
            assert_eq!(found.len(), 1, "{args}: {found:?}");
            assert!(found[0].contains(expected), "{args}: {found:?}");
        }
    }

    #[test]
    fn every_mistake_is_reported_at_once() {
        let found = errors(
            quote!(
                host = "https://h",
                service = W,
                timeout = "1h",
                bogus = 1,
                env = "1"
            ),
            quote!(
                struct S<T>(T);
            ),
        );
        assert_eq!(found.len(), 6, "{found:?}");
    }

    #[test]
    fn only_unit_structs_without_generics() {
        let args = quote!(host = "h", service = W);
        assert!(
            errors(
                args.clone(),
                quote!(
                    struct S {}
                )
            )
            .is_empty()
        );
        assert!(
            errors(
                args.clone(),
                quote!(
                    struct S();
                )
            )
            .is_empty()
        );
        let cases = [
            (
                quote!(
                    enum E {
                        A,
                    }
                ),
                "not to an enum",
            ),
            (
                quote!(
                    fn f() {}
                ),
                "not to a function",
            ),
            (
                quote!(
                    struct S<T>;
                ),
                "remove the generics",
            ),
            (
                quote!(
                    struct S
                    where
                        u8: Copy;
                ),
                "remove the generics",
            ),
            (
                quote!(
                    struct S {
                        x: u8,
                    }
                ),
                "remove the fields",
            ),
            (
                quote!(
                    struct S(u8);
                ),
                "remove the fields",
            ),
            (quote!(let x = 1;), "applies to a unit struct"),
        ];
        for (item, expected) in cases {
            let found = errors(args.clone(), item.clone());
            assert_eq!(found.len(), 1, "{item}: {found:?}");
            assert!(found[0].contains(expected), "{item}: {found:?}");
        }
    }

    #[test]
    fn derives_the_expansion_implements_are_one_error_each() {
        let args = quote!(host = "h", service = W);
        let found = errors(
            args.clone(),
            quote!(
                #[derive(Debug, Describe)]
                struct S;
            ),
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("remove `Debug` from `#[derive(..)]`"),
            "{found:?}"
        );
        let found = errors(
            args.clone(),
            quote!(
                #[derive(Clone, ::core::default::Default)]
                struct S;
            ),
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            errors(
                args,
                quote!(
                    #[derive(Describe, other::Derive)]
                    struct S;
                )
            )
            .is_empty()
        );
    }

    #[test]
    fn derives_the_channel_cannot_satisfy_are_one_error_each() {
        let found = errors(
            quote!(host = "h", service = W),
            quote!(
                #[derive(PartialEq, Eq, Hash, PartialOrd, Ord, Copy, Describe)]
                struct S;
            ),
        );
        assert_eq!(found.len(), 6, "{found:?}");
        for (message, name) in
            found
                .iter()
                .zip(["PartialEq", "Eq", "Hash", "PartialOrd", "Ord", "Copy"])
        {
            assert!(
                message.contains(&format!("cannot derive `{name}`: the channel")),
                "{message}"
            );
        }
    }

    #[test]
    fn a_bad_or_missing_target_falls_back_to_the_placeholder() {
        let item = quote!(
            struct S;
        );
        for args in [
            quote!(service = W),
            quote!(host = "https://h", service = W),
            quote!(host = h, service = W),
            quote!(url = "http://remote.example.com", service = W),
            quote!(host = "h", url = "https://h", service = W),
            quote!(),
        ] {
            let config = fallback(args.clone(), item.clone());
            assert_eq!(config.target, placeholder(), "{args}");
            assert_eq!(config.target.url(), "https://invalid.invalid", "{args}");
        }
        // A misspelt option does not cost the options around it.
        let config = fallback(quote!(host = "h", timeot = "1s", service = W), item);
        assert_eq!(target(&config.target), host_and_url("h", "https://h"));
        assert_eq!(api(&config), "service W");
    }

    #[test]
    fn the_api_is_kept_whenever_it_can_be_read() {
        let item = quote!(
            struct S;
        );
        let cases = [
            (quote!(service = W), "service W"),
            (quote!(host = "h", service = W, client = C), "service W"),
            (quote!(host = "h", client = a::C<T>), "client a :: C"),
            (quote!(host = "h", service = "a::W"), "service a :: W"),
            (quote!(host = "h", client = C, timeout = "1h"), "client C"),
            (quote!(host = "h"), "none"),
            (quote!(host = "h", servce = W), "none"),
            (quote!(host = "h", service = "not a path"), "none"),
            (quote!(), "none"),
        ];
        for (args, expected) in cases {
            assert_eq!(
                api(&fallback(args.clone(), item.clone())),
                expected,
                "{args}"
            );
        }
    }

    #[test]
    fn a_bad_optional_option_is_left_out() {
        let config = fallback(
            quote!(
                host = "h",
                service = W,
                audience = "a b",
                env = "1X",
                header = "bearer",
                timeout = "1h",
                crate = "cloud-run-grpc",
            ),
            quote!(
                struct S;
            ),
        );
        assert!(config.audience.is_none() && config.env.is_none());
        assert!(config.header.is_none() && config.timeout_ms.is_none());
        let krate = &config.krate;
        assert_eq!(
            quote!(#krate).to_string(),
            quote!(::cloud_run_grpc).to_string()
        );
        assert_eq!(target(&config.target), host_and_url("h", "https://h"));
    }

    #[test]
    fn derives_that_cannot_stay_are_taken_out() {
        let args = quote!(host = "h", service = W);
        let config = fallback(
            args.clone(),
            quote!(
                #[derive(Debug, Describe, PartialEq)]
                /// Docs stay.
                #[derive(Clone)]
                #[allow(unused)]
                #[derive(Serialize)]
                struct S;
            ),
        );
        let attrs = &config.item.attrs;
        // rustfmt merges adjacent derives, so the ones here are kept apart.
        assert_eq!(
            quote!(#(#attrs)*).to_string(),
            quote!(
                #[derive(Describe)]
                #[doc = r" Docs stay."]
                #[allow(unused)]
                #[derive(Serialize)]
            )
            .to_string()
        );
    }

    #[test]
    fn an_item_the_expansion_cannot_stand_in_for_is_left_alone() {
        let args = quote!(host = "h", service = W);
        for item in [
            quote!(
                enum E {
                    A,
                }
            ),
            quote!(
                fn f() {}
            ),
            quote!(
                struct S<T>;
            ),
            quote!(
                struct S(u8);
            ),
            quote!(
                #[derive(Debug)]
                struct S {
                    x: u8,
                }
            ),
        ] {
            let parsed = parse(args.clone(), item.clone());
            assert!(parsed.errors.is_some(), "{item}");
            assert!(parsed.config.is_none(), "{item}");
        }
    }
}
