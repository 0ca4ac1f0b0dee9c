//! Parsing `#[cloud_run_client(...)]` and the struct under it into a [`Config`].
//!
//! Every mistake is collected (as serde_derive's `Ctxt` does) and reported at once, each at
//! the span of the option or token that is wrong, with a message that says what to write.
//! Parsing carries on past a mistake and fills in a fallback, so that the expansion still
//! gives the rest of the crate the struct's API and one mistake is one error (as
//! tokio-macros does): a placeholder target for a bad `host` or `url`, no value for a bad
//! optional option, and no API when neither `service` nor `client` can be read.

use std::net::{Ipv4Addr, Ipv6Addr};

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
    /// Where the client calls; [`Target::placeholder`] after a mistake in `host` or `url`.
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

/// Where the client calls, known at compile time.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// The host as it appears in the URL (an IPv6 address keeps its brackets).
    pub(crate) host: String,
    /// `scheme://host[:port]`, normalised: lower-case scheme and no trailing slash.
    pub(crate) url: String,
}

impl Target {
    /// The audience Cloud Run expects when none is configured: `https://{host}`, no port.
    pub(crate) fn default_audience(&self) -> String {
        format!("https://{}", self.host)
    }

    /// The target the expansion uses when `host` or `url` is missing or wrong.
    pub(crate) fn placeholder() -> Self {
        Target {
            host: PLACEHOLDER_HOST.to_owned(),
            url: format!("https://{PLACEHOLDER_HOST}"),
        }
    }
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
        target: target.unwrap_or_else(Target::placeholder),
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

/// Checks a Cloud Run host: a DNS name with no scheme, path or port.
pub(crate) fn validate_host(host: &str) -> Result<Target, String> {
    if host.contains("://") {
        return Err(format!(
            "`host` takes a host name without a scheme; write `host = \"{}\"`, or \
             `url = \"{host}\"` for a full URL",
            host_part(host)
        ));
    }
    if host.contains('/') {
        return Err(format!(
            "`host` takes a host name without a path; write `host = \"{}\"`",
            host_part(host)
        ));
    }
    if host.contains(':') {
        return Err(format!(
            "`host` takes a host name without a port (Cloud Run serves on 443); write \
             `host = \"{}\"`, or `url = \"https://{host}\"` to call another port",
            host.split(':').next().unwrap_or_default()
        ));
    }
    validate_dns_name(host).map_err(|why| format!("`host` is not a valid host name: {why}"))?;
    Ok(Target {
        host: host.to_owned(),
        url: format!("https://{host}"),
    })
}

/// What follows the scheme, if there is one.
fn scheme_free(host: &str) -> &str {
    host.split_once("://").map_or(host, |(_, rest)| rest)
}

/// The host name in something written as a URL, for a suggestion.
fn host_part(written: &str) -> &str {
    let rest = scheme_free(written);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    match authority.rfind(':') {
        Some(colon) if !authority.ends_with(']') => &authority[..colon],
        _ => authority,
    }
}

/// Letters, digits and `-` in dot-separated labels of 1 to 63 characters.
fn validate_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty; write e.g. `svc-abc123-ew.a.run.app`".to_owned());
    }
    if name.len() > 253 {
        return Err("it is longer than 253 characters".to_owned());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return Err(format!(
            "`{}` is not allowed; use letters, digits, `-` and `.`",
            bad.escape_default()
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("it has an empty label (a leading, trailing or doubled `.`)".to_owned());
        }
        if label.len() > 63 {
            return Err(format!("the label `{label}` is longer than 63 characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("the label `{label}` starts or ends with `-`"));
        }
    }
    Ok(())
}

/// Checks a `url`: `https://host[:port]`, or `http://` to a loopback address.
pub(crate) fn validate_url(url: &str) -> Result<Target, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "`url` needs a scheme; write `url = \"https://{url}\"`, or `host = \"{url}\"`"
        ));
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return Err(format!(
            "`url` must start with `https://` (or `http://` to a loopback address such as \
             `http://127.0.0.1:8080`), not `{scheme}://`"
        ));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if !tail.is_empty() && tail != "/" {
        return Err(format!(
            "`url` takes no path, query or fragment (gRPC names the method in the path); \
             write `url = \"{scheme}://{authority}\"`"
        ));
    }
    if authority.contains('@') {
        return Err("`url` takes no user name or password".to_owned());
    }
    let (host, port) = split_port(authority)?;
    let loopback = if let Some(inner) = host.strip_prefix('[') {
        let address = inner
            .strip_suffix(']')
            .and_then(|inner| inner.parse::<Ipv6Addr>().ok())
            .ok_or_else(|| format!("`url` has an invalid IPv6 address `{host}`"))?;
        address.is_loopback()
    } else {
        validate_dns_name(host).map_err(|why| format!("`url` has an invalid host: {why}"))?;
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<Ipv4Addr>()
                .is_ok_and(|address| address.is_loopback())
    };
    if scheme == "http" && !loopback {
        return Err(format!(
            "`url` must use `https://`: a token is never sent in plaintext except to a \
             loopback address (127.0.0.0/8, [::1], localhost); write `url = \"https://{authority}\"`"
        ));
    }
    let url = match port {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    };
    Ok(Target {
        host: host.to_owned(),
        url,
    })
}

fn split_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    let colon = match authority.rfind(':') {
        Some(colon) if !authority[colon..].contains(']') => colon,
        _ => return Ok((authority, None)),
    };
    let (host, port) = (&authority[..colon], &authority[colon + 1..]);
    match port.parse::<u16>() {
        Ok(port) if port != 0 => Ok((host, Some(port))),
        _ => Err(format!(
            "`url` has an invalid port `{port}`; write a number from 1 to 65535"
        )),
    }
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

fn validate_header(header: &str) -> Result<&'static str, String> {
    match header {
        "authorization" => Ok("authorization"),
        "x-serverless-authorization" => Ok("x-serverless-authorization"),
        other => Err(format!(
            "`header` is `\"authorization\"` or `\"x-serverless-authorization\"`, not `\"{}\"`",
            other.escape_default()
        )),
    }
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

    fn target(host: &str, url: &str) -> Target {
        Target {
            host: host.to_owned(),
            url: url.to_owned(),
        }
    }

    #[test]
    fn host_accepts_dns_names() {
        for host in ["bookstore-abc123-ew.a.run.app", "a", "x1.y2", "127.0.0.1"] {
            assert_eq!(
                validate_host(host),
                Ok(target(host, &format!("https://{host}")))
            );
        }
        assert_eq!(
            validate_host("svc.a.run.app").map(|t| t.default_audience()),
            Ok("https://svc.a.run.app".to_owned())
        );
    }

    #[test]
    fn host_rejects_scheme_path_port_and_bad_characters() {
        let cases = [
            (
                "https://svc.a.run.app",
                "without a scheme; write `host = \"svc.a.run.app\"`",
            ),
            (
                "svc.a.run.app/v1",
                "without a path; write `host = \"svc.a.run.app\"`",
            ),
            ("svc.a.run.app:443", "without a port"),
            ("svc_1.a.run.app", "`_` is not allowed"),
            ("svc a.run.app", "` ` is not allowed"),
            ("", "it is empty"),
            ("svc..run.app", "empty label"),
            (".svc.run.app", "empty label"),
            ("svc.run.app.", "empty label"),
            ("-svc.run.app", "starts or ends with `-`"),
            ("svc-.run.app", "starts or ends with `-`"),
        ];
        for (host, expected) in cases {
            let message = validate_host(host).expect_err(host);
            assert!(message.contains(expected), "{host:?}: {message}");
        }
        let long_label = "a".repeat(64);
        assert!(validate_host(&long_label).is_err());
        let long_name = vec!["a".repeat(63); 5].join(".");
        assert!(validate_host(&long_name).is_err());
    }

    #[test]
    fn url_accepts_https_and_loopback_http() {
        let cases = [
            (
                "https://svc.a.run.app",
                "svc.a.run.app",
                "https://svc.a.run.app",
            ),
            (
                "https://svc.a.run.app/",
                "svc.a.run.app",
                "https://svc.a.run.app",
            ),
            (
                "HTTPS://svc.a.run.app:8443",
                "svc.a.run.app",
                "https://svc.a.run.app:8443",
            ),
            (
                "http://127.0.0.1:8080",
                "127.0.0.1",
                "http://127.0.0.1:8080",
            ),
            ("http://127.1.2.3:1", "127.1.2.3", "http://127.1.2.3:1"),
            (
                "http://localhost:8080",
                "localhost",
                "http://localhost:8080",
            ),
            ("http://[::1]:8080", "[::1]", "http://[::1]:8080"),
            (
                "https://[2001:db8::1]",
                "[2001:db8::1]",
                "https://[2001:db8::1]",
            ),
        ];
        for (url, host, normalised) in cases {
            assert_eq!(validate_url(url), Ok(target(host, normalised)), "{url}");
        }
        assert_eq!(
            validate_url("http://127.0.0.1:8080").map(|t| t.default_audience()),
            Ok("https://127.0.0.1".to_owned())
        );
    }

    #[test]
    fn url_rejects_plaintext_elsewhere_and_paths() {
        let cases = [
            ("http://svc.a.run.app", "must use `https://`"),
            ("http://10.0.0.1:8080", "must use `https://`"),
            ("http://[::2]:8080", "must use `https://`"),
            ("http://128.0.0.1", "must use `https://`"),
            ("ftp://svc.a.run.app", "must start with `https://`"),
            ("svc.a.run.app", "needs a scheme"),
            ("https://svc.a.run.app/v1", "takes no path"),
            ("https://svc.a.run.app?x=1", "takes no path"),
            ("https://user@svc.a.run.app", "no user name"),
            ("https://svc.a.run.app:0", "invalid port `0`"),
            ("https://svc.a.run.app:99999", "invalid port `99999`"),
            ("https://svc.a.run.app:", "invalid port ``"),
            ("https://[::1", "invalid IPv6"),
            ("https://svc_x.a.run.app", "invalid host"),
        ];
        for (url, expected) in cases {
            let message = validate_url(url).expect_err(url);
            assert!(message.contains(expected), "{url:?}: {message}");
        }
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
    fn env_and_header_values() {
        assert_eq!(
            validate_env("BOOKSTORE_URL"),
            Ok("BOOKSTORE_URL".to_owned())
        );
        assert_eq!(validate_env("_x1"), Ok("_x1".to_owned()));
        for bad in ["", "1X", "A-B", "A B", "A=B"] {
            assert!(validate_env(bad).is_err(), "{bad:?}");
        }
        assert_eq!(validate_header("authorization"), Ok("authorization"));
        assert_eq!(
            validate_header("x-serverless-authorization"),
            Ok("x-serverless-authorization")
        );
        assert!(validate_header("Authorization").is_err());
        assert!(validate_audience("").is_err());
        assert!(validate_audience("a b").is_err());
        assert_eq!(validate_audience("custom-aud"), Ok("custom-aud".to_owned()));
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
            config.target,
            target("svc.a.run.app", "https://svc.a.run.app:8443")
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
            assert_eq!(config.target, Target::placeholder(), "{args}");
            assert_eq!(config.target.url, "https://invalid.invalid", "{args}");
        }
        // A misspelt option does not cost the options around it.
        let config = fallback(quote!(host = "h", timeot = "1s", service = W), item);
        assert_eq!(config.target, target("h", "https://h"));
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
        assert_eq!(config.target, target("h", "https://h"));
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
