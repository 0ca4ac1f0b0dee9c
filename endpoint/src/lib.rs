//! Where cloud-run-grpc may send a call or a credential: the rules for Cloud Run hosts, service
//! URLs, loopback addresses, the token header, and the endpoints named in credential files.
//!
//! The `#[cloud_run_client]` attribute checks its options with these functions at compile time
//! and the runtime checks channels and credential files with them at run time, so the two
//! cannot disagree; [`CASES`] is the table of inputs both run through their own front doors.
//! Each front door words its own advice (the attribute says `write url = "…"`, the runtime
//! names the builder method); what is wrong comes from [`Problem`] here.
//!
//! ```
//! use cloud_run_grpc_endpoint::{Scheme, host, url};
//!
//! let target = host("bookstore-abc123-ew.a.run.app").unwrap();
//! assert_eq!(target.url(), "https://bookstore-abc123-ew.a.run.app");
//! assert_eq!(target.default_audience(), "https://bookstore-abc123-ew.a.run.app");
//!
//! let local = url("http://127.0.0.1:8080").unwrap();
//! assert_eq!((local.scheme, local.port), (Scheme::Http, Some(8080)));
//! assert!(url("http://svc.example.com").is_err()); // a token never travels in plaintext
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod cases;

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

pub use cases::{CASES, Case, Expected, Front};

/// How a service is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// TLS, the default and the only scheme for anything but loopback.
    Https,
    /// Cleartext HTTP/2, only to a loopback address.
    Http,
}

impl Scheme {
    /// `"https"` or `"http"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
        }
    }
}

/// A checked place to call: scheme, host and optional port, nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// `https`, or `http` only when the host is a loopback address.
    pub scheme: Scheme,
    /// A lower-case DNS name, an IPv4 address, or an IPv6 address in brackets (`[::1]`).
    pub host: String,
    /// The port, when one was written.
    pub port: Option<u16>,
}

impl Target {
    /// `host[:port]`, as `:authority` carries it.
    pub fn authority(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        }
    }

    /// `scheme://host[:port]`, normalised: lower case, no trailing slash.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme.as_str(), self.authority())
    }

    /// The audience Cloud Run expects when none is configured: `https://{host}`, no port and
    /// no trailing slash, whatever the scheme.
    pub fn default_audience(&self) -> String {
        format!("https://{}", self.host)
    }

    /// Whether the host names a loopback address (see [`is_loopback`]).
    pub fn is_loopback(&self) -> bool {
        is_loopback(&self.host)
    }
}

/// The header an ID token travels in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Header {
    /// `authorization`, which Cloud Run reads unless the next one is present.
    #[default]
    Authorization,
    /// `x-serverless-authorization`, which Cloud Run reads first and then removes, leaving
    /// `authorization` to the application.
    XServerlessAuthorization,
}

impl Header {
    /// The header's lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Header::Authorization => "authorization",
            Header::XServerlessAuthorization => "x-serverless-authorization",
        }
    }
}

/// What is wrong with an input. `Display` says what is wrong, in a phrase that fits after
/// "`input` is not usable: "; callers add what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// Nothing was given.
    Empty,
    /// A host was given with `scheme://`.
    HostWithScheme,
    /// A URL was given without `scheme://`.
    NoScheme,
    /// A scheme other than `https` and `http`.
    UnsupportedScheme(String),
    /// A path, query or fragment after the host (a `/` alone is fine in a URL).
    Path,
    /// `user:password@` before the host.
    UserInfo,
    /// A port that is not a number from 1 to 65535.
    Port(String),
    /// An IPv6 address that does not parse, or has no closing bracket.
    Ipv6(String),
    /// A character a host name cannot have.
    Character(char),
    /// An empty label: a leading, trailing or doubled `.`.
    EmptyLabel,
    /// A label longer than 63 characters.
    LongLabel(String),
    /// A name longer than 253 characters.
    LongName,
    /// A label starting or ending with `-`.
    HyphenEdge(String),
    /// `http://` to a host that is not a loopback address: a token would travel in plaintext.
    Plaintext(String),
    /// A credential endpoint off `*.googleapis.com` (and not loopback): credentials would be
    /// sent to a host Google does not run.
    NotGoogle(String),
    /// A header Cloud Run does not read tokens from.
    Header(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Empty => f.write_str("it is empty"),
            Problem::HostWithScheme => f.write_str("a host takes no scheme"),
            Problem::NoScheme => f.write_str("a URL needs a scheme"),
            Problem::UnsupportedScheme(scheme) => write!(
                f,
                "the scheme `{scheme}` is not supported: use `https` (or `http` to a loopback address)"
            ),
            Problem::Path => f.write_str(
                "it has a path, query or fragment, and gRPC names the method in the path",
            ),
            Problem::UserInfo => f.write_str("it has a user name or password"),
            Problem::Port(port) => write!(f, "the port `{port}` is not a number from 1 to 65535"),
            Problem::Ipv6(address) => write!(f, "`{address}` is not a valid IPv6 address"),
            Problem::Character(c) => write!(
                f,
                "`{}` is not allowed in a host name; use letters, digits, `-` and `.`",
                c.escape_default()
            ),
            Problem::EmptyLabel => {
                f.write_str("it has an empty label (a leading, trailing or doubled `.`)")
            }
            Problem::LongLabel(label) => {
                write!(f, "the label `{label}` is longer than 63 characters")
            }
            Problem::LongName => f.write_str("the host name is longer than 253 characters"),
            Problem::HyphenEdge(label) => {
                write!(f, "the label `{label}` starts or ends with `-`")
            }
            Problem::Plaintext(authority) => write!(
                f,
                "plaintext `http://` to {authority} would send ID tokens unencrypted; it is \
                 allowed only to a loopback address (127.0.0.0/8, [::1], localhost)"
            ),
            Problem::NotGoogle(host) => write!(
                f,
                "credentials are sent only to Google's endpoints (https on `*.googleapis.com`) \
                 or to a loopback address for emulators, not to `{host}`"
            ),
            Problem::Header(name) => write!(
                f,
                "`{}` is not a header Cloud Run reads tokens from; use `authorization` or \
                 `x-serverless-authorization`",
                name.escape_default()
            ),
        }
    }
}

impl std::error::Error for Problem {}

/// A Cloud Run host with an optional port, called over TLS: `svc-abc123-ew.a.run.app`,
/// `api.example.com:8443`, `127.0.0.1`. No scheme, path or user info.
pub fn host(input: &str) -> Result<Target, Problem> {
    let input = input.trim();
    if input.contains("://") {
        return Err(Problem::HostWithScheme);
    }
    let (host, port) = authority(input)?;
    Ok(Target {
        scheme: Scheme::Https,
        host,
        port,
    })
}

/// A service URL: `https://host[:port]`, or `http://` to a loopback address, with at most a
/// trailing `/`. The scheme and host are normalised to lower case.
pub fn url(input: &str) -> Result<Target, Problem> {
    let input = input.trim();
    let (scheme, rest) = input.split_once("://").ok_or(Problem::NoScheme)?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        _ => return Err(Problem::UnsupportedScheme(scheme.to_owned())),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = authority(rest)?;
    let target = Target { scheme, host, port };
    if scheme == Scheme::Http && !target.is_loopback() {
        return Err(Problem::Plaintext(target.authority()));
    }
    Ok(target)
}

/// A host or a URL, told apart by `://`: what `shared(…)` and environment overrides take.
pub fn target(input: &str) -> Result<Target, Problem> {
    if input.contains("://") {
        url(input)
    } else {
        host(input)
    }
}

/// The token header, by name in any case.
pub fn header(name: &str) -> Result<Header, Problem> {
    let trimmed = name.trim();
    if trimmed.eq_ignore_ascii_case("authorization") {
        Ok(Header::Authorization)
    } else if trimmed.eq_ignore_ascii_case("x-serverless-authorization") {
        Ok(Header::XServerlessAuthorization)
    } else {
        Err(Problem::Header(name.to_owned()))
    }
}

/// `input` with any `user:password@` before its host replaced by `…@`, for messages and logs:
/// a URL is refused when it carries credentials, and the refusal must not print them.
///
/// ```
/// use cloud_run_grpc_endpoint::redacted;
/// assert_eq!(redacted("https://ada:s3cret@svc.example.com/x"), "https://…@svc.example.com/x");
/// assert_eq!(redacted("svc.example.com"), "svc.example.com");
/// ```
pub fn redacted(input: &str) -> String {
    let (scheme, rest) = match input.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, input),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let rest = match rest[..end].rfind('@') {
        Some(at) => format!("…{}", &rest[at..]),
        None => rest.to_owned(),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{rest}"),
        None => rest,
    }
}

/// Whether `host` names this machine: `localhost` (any case), an address in 127.0.0.0/8, or
/// `::1` (with or without brackets). A name is only a name: whoever dials must still check
/// the address it connected to.
pub fn is_loopback(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
        || bare.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// An endpoint given in code that credentials are sent to (`with_token_uri`, an IAM base URL):
/// https anywhere, or http to a loopback address. Returns the URL without a trailing `/`.
pub fn endpoint(input: &str) -> Result<String, Problem> {
    let (scheme, host) = endpoint_parts(input)?;
    if scheme == Scheme::Http && !is_loopback(&host) {
        return Err(Problem::Plaintext(host));
    }
    Ok(trimmed_url(input))
}

/// An endpoint named in a credentials file (`token_uri`, the IAM base URL, STS's `token_url`):
/// https on `googleapis.com` or a subdomain of it (private endpoints such as
/// `oauth2-foo.p.googleapis.com` included), or a loopback address for emulators. A file is
/// data that may come from anywhere; it must not be able to send credentials elsewhere.
pub fn google_endpoint(input: &str) -> Result<String, Problem> {
    let (scheme, host) = endpoint_parts(input)?;
    if is_loopback(&host) {
        return Ok(trimmed_url(input));
    }
    if scheme == Scheme::Http {
        return Err(Problem::Plaintext(host));
    }
    if host != "googleapis.com" && !host.ends_with(".googleapis.com") {
        return Err(Problem::NotGoogle(host));
    }
    Ok(trimmed_url(input))
}

/// The link-local instance-metadata addresses that cloud providers serve over plain http
/// (AWS and Azure hand out workload credentials there; AWS also on IPv6).
const METADATA_ADDRESSES: [&str; 2] = ["169.254.169.254", "[fd00:ec2::254]"];

/// A URL an `external_account` credentials file reads its subject token from: https anywhere,
/// or http to a loopback address or to the link-local instance-metadata address
/// (`169.254.169.254`, AWS's `[fd00:ec2::254]`).
pub fn credential_source_url(input: &str) -> Result<String, Problem> {
    let (scheme, host) = endpoint_parts(input)?;
    if scheme == Scheme::Http && !is_loopback(&host) && !METADATA_ADDRESSES.contains(&&*host) {
        return Err(Problem::Plaintext(host));
    }
    Ok(trimmed_url(input))
}

/// The scheme and lower-case host of an absolute URL with any path.
fn endpoint_parts(input: &str) -> Result<(Scheme, String), Problem> {
    let input = input.trim();
    let (scheme, rest) = input.split_once("://").ok_or(Problem::NoScheme)?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        _ => return Err(Problem::UnsupportedScheme(scheme.to_owned())),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (host, _) = authority(&rest[..end])?;
    Ok((scheme, host))
}

fn trimmed_url(input: &str) -> String {
    input.trim().trim_end_matches('/').to_owned()
}

/// Splits and checks `host[:port]`.
fn authority(input: &str) -> Result<(String, Option<u16>), Problem> {
    if input.is_empty() {
        return Err(Problem::Empty);
    }
    if input.contains(['/', '?', '#']) {
        return Err(Problem::Path);
    }
    if input.contains('@') {
        return Err(Problem::UserInfo);
    }
    let (host, port) = if let Some(inner) = input.strip_prefix('[') {
        let (address, after) = inner
            .split_once(']')
            .ok_or_else(|| Problem::Ipv6(input.to_owned()))?;
        address
            .parse::<Ipv6Addr>()
            .map_err(|_| Problem::Ipv6(format!("[{address}]")))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| Problem::Ipv6(input.to_owned()))?,
            ),
        };
        (format!("[{}]", address.to_ascii_lowercase()), port)
    } else {
        let (name, port) = match input.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (input, None),
        };
        dns_name(name)?;
        (name.to_ascii_lowercase(), port)
    };
    let port = port
        .map(|port| match port.parse::<u16>() {
            Ok(number) if number != 0 && !port.starts_with('+') => Ok(number),
            _ => Err(Problem::Port(port.to_owned())),
        })
        .transpose()?;
    Ok((host, port))
}

/// Letters, digits and `-` in dot-separated labels of 1 to 63 characters (an IPv4 address
/// passes too).
fn dns_name(name: &str) -> Result<(), Problem> {
    if name.is_empty() {
        return Err(Problem::Empty);
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return Err(Problem::Character(bad));
    }
    if name.len() > 253 {
        return Err(Problem::LongName);
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(Problem::EmptyLabel);
        }
        if label.len() > 63 {
            return Err(Problem::LongLabel(label.to_owned()));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(Problem::HyphenEdge(label.to_owned()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_holds_for_the_functions_themselves() {
        for case in CASES {
            let got = match case.front {
                Front::Host => host(case.input),
                Front::Url => url(case.input),
            };
            case.check(got.map(|t| (t.url(), t.default_audience())))
                .unwrap_or_else(|why| panic!("{why}"));
        }
    }

    #[test]
    fn loopback_is_127_slash_8_and_colon_colon_1_and_localhost() {
        for yes in [
            "127.0.0.1",
            "127.9.9.9",
            "[::1]",
            "::1",
            "localhost",
            "LocalHost",
        ] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in [
            "128.0.0.1",
            "10.0.0.1",
            "[::2]",
            "localhost.example.com",
            "0.0.0.0",
            "169.254.169.254",
            "",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
    }

    #[test]
    fn headers_in_any_case() {
        assert_eq!(header("Authorization"), Ok(Header::Authorization));
        assert_eq!(
            header("X-Serverless-Authorization"),
            Ok(Header::XServerlessAuthorization)
        );
        assert_eq!(header("cookie"), Err(Problem::Header("cookie".into())));
    }

    #[test]
    fn credential_file_endpoints_stay_with_google() {
        assert_eq!(
            google_endpoint("https://oauth2.googleapis.com/token/"),
            Ok("https://oauth2.googleapis.com/token".into())
        );
        for ok in [
            "https://sts.googleapis.com/v1/token",
            "https://oauth2-psc.p.googleapis.com/token",
            "https://IAMCREDENTIALS.googleapis.com",
            "http://127.0.0.1:8080/token",
            "https://localhost:8443/token",
            "http://[::1]:1/token",
        ] {
            assert!(google_endpoint(ok).is_ok(), "{ok}");
        }
        for (refused, problem) in [
            (
                "https://evil.example.com/token",
                Problem::NotGoogle("evil.example.com".into()),
            ),
            (
                "https://googleapis.com.evil.example/token",
                Problem::NotGoogle("googleapis.com.evil.example".into()),
            ),
            (
                "https://evilgoogleapis.com/token",
                Problem::NotGoogle("evilgoogleapis.com".into()),
            ),
            (
                "http://oauth2.googleapis.com/token",
                Problem::Plaintext("oauth2.googleapis.com".into()),
            ),
            (
                "https://user@oauth2.googleapis.com/token",
                Problem::UserInfo,
            ),
            ("/token", Problem::NoScheme),
            (
                "ftp://127.0.0.1/x",
                Problem::UnsupportedScheme("ftp".into()),
            ),
        ] {
            assert_eq!(google_endpoint(refused), Err(problem), "{refused}");
        }
    }

    #[test]
    fn endpoints_in_code_are_https_anywhere_or_loopback() {
        assert_eq!(
            endpoint("https://tokens.example.com/token"),
            Ok("https://tokens.example.com/token".into())
        );
        assert!(endpoint("http://localhost:1/token").is_ok());
        assert_eq!(
            endpoint("http://tokens.example.com/token"),
            Err(Problem::Plaintext("tokens.example.com".into()))
        );
    }

    #[test]
    fn credential_sources_may_use_the_metadata_address_in_plaintext() {
        for ok in [
            "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01",
            "http://[fd00:ec2::254]/latest/meta-data/iam/security-credentials",
            "http://127.0.0.1:9/token",
            "https://issuer.example.com/token",
        ] {
            assert!(credential_source_url(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            credential_source_url("http://169.254.169.253/token"),
            Err(Problem::Plaintext("169.254.169.253".into()))
        );
    }

    #[test]
    fn problems_say_what_is_wrong() {
        assert!(
            Problem::Plaintext("svc:80".into())
                .to_string()
                .contains("only to a loopback address")
        );
        assert!(
            Problem::Character(' ')
                .to_string()
                .contains("letters, digits")
        );
    }
}
