//! The table of inputs every front door runs: the attribute's `host`/`url` options and the
//! runtime's `CloudRunChannel::builder(host)` / `CloudRunChannel::from_url(url)`.

use std::fmt;

/// Which front door an input goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    /// A bare host: `host = "…"`, `CloudRunChannel::builder("…")`.
    Host,
    /// A URL: `url = "…"`, `CloudRunChannel::from_url("…")`.
    Url,
}

/// What every front door must make of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// Accepted, calling `url` with tokens for `audience`.
    Target {
        /// The normalised URL calls go to.
        url: &'static str,
        /// The default audience of the tokens.
        audience: &'static str,
    },
    /// Refused with a message containing `says` (a phrase of the [`crate::Problem`]).
    Refused {
        /// What the message must contain.
        says: &'static str,
    },
}

/// One input and what must come of it.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// The front door.
    pub front: Front,
    /// What the user wrote.
    pub input: &'static str,
    /// What must come of it.
    pub expected: Expected,
}

impl Case {
    /// Compares what a front door made of the input (`Ok((url, audience))` or its error) with
    /// what the table expects; `Err` says how they differ.
    pub fn check<E: fmt::Display>(&self, got: Result<(String, String), E>) -> Result<(), String> {
        match (self.expected, got) {
            (Expected::Target { url, audience }, Ok((got_url, got_audience)))
                if got_url == url && got_audience == audience =>
            {
                Ok(())
            }
            (Expected::Refused { says }, Err(error)) if error.to_string().contains(says) => Ok(()),
            (expected, Ok(got)) => Err(format!(
                "{:?} `{}`: expected {expected:?}, got the target {got:?}",
                self.front, self.input
            )),
            (expected, Err(error)) => Err(format!(
                "{:?} `{}`: expected {expected:?}, got the error `{error}`",
                self.front, self.input
            )),
        }
    }
}

const fn ok(front: Front, input: &'static str, url: &'static str, audience: &'static str) -> Case {
    Case {
        front,
        input,
        expected: Expected::Target { url, audience },
    }
}

const fn no(front: Front, input: &'static str, says: &'static str) -> Case {
    Case {
        front,
        input,
        expected: Expected::Refused { says },
    }
}

use Front::{Host, Url};

/// Every input the front doors must agree on.
pub const CASES: &[Case] = &[
    ok(
        Host,
        "bookstore-abc123-ew.a.run.app",
        "https://bookstore-abc123-ew.a.run.app",
        "https://bookstore-abc123-ew.a.run.app",
    ),
    ok(Host, "a", "https://a", "https://a"),
    ok(
        Host,
        "Svc.A.Run.App",
        "https://svc.a.run.app",
        "https://svc.a.run.app",
    ),
    ok(
        Host,
        "svc.example.com:8443",
        "https://svc.example.com:8443",
        "https://svc.example.com",
    ),
    ok(Host, "127.0.0.1", "https://127.0.0.1", "https://127.0.0.1"),
    ok(Host, "[::1]:50051", "https://[::1]:50051", "https://[::1]"),
    no(Host, "", "it is empty"),
    no(Host, "https://svc.a.run.app", "a host takes no scheme"),
    no(Host, "svc.a.run.app/v1", "path, query or fragment"),
    no(Host, "user@svc.a.run.app", "user name or password"),
    no(Host, "svc.a.run.app:0", "the port `0`"),
    no(Host, "svc.a.run.app:99999", "the port `99999`"),
    no(Host, "svc.a.run.app:", "the port ``"),
    no(Host, "svc_1.a.run.app", "`_` is not allowed"),
    no(Host, "svc a.run.app", "` ` is not allowed"),
    no(Host, "svc..run.app", "empty label"),
    no(Host, ".svc.run.app", "empty label"),
    no(Host, "svc.run.app.", "empty label"),
    no(Host, "-svc.run.app", "starts or ends with `-`"),
    no(Host, "[::1", "not a valid IPv6 address"),
    ok(
        Url,
        "https://svc.a.run.app",
        "https://svc.a.run.app",
        "https://svc.a.run.app",
    ),
    ok(
        Url,
        "https://svc.a.run.app/",
        "https://svc.a.run.app",
        "https://svc.a.run.app",
    ),
    ok(
        Url,
        "HTTPS://Svc.A.Run.App:8443",
        "https://svc.a.run.app:8443",
        "https://svc.a.run.app",
    ),
    ok(
        Url,
        "http://127.0.0.1:8080",
        "http://127.0.0.1:8080",
        "https://127.0.0.1",
    ),
    ok(
        Url,
        "http://127.1.2.3:1",
        "http://127.1.2.3:1",
        "https://127.1.2.3",
    ),
    ok(
        Url,
        "http://localhost:8080",
        "http://localhost:8080",
        "https://localhost",
    ),
    ok(
        Url,
        "http://[::1]:8080",
        "http://[::1]:8080",
        "https://[::1]",
    ),
    ok(
        Url,
        "https://[2001:db8::1]",
        "https://[2001:db8::1]",
        "https://[2001:db8::1]",
    ),
    no(Url, "svc.a.run.app", "a URL needs a scheme"),
    no(Url, "ftp://svc.a.run.app", "the scheme `ftp`"),
    no(Url, "http://svc.a.run.app", "only to a loopback address"),
    no(Url, "http://10.0.0.1:8080", "only to a loopback address"),
    no(Url, "http://[::2]:8080", "only to a loopback address"),
    no(Url, "http://128.0.0.1", "only to a loopback address"),
    no(Url, "https://svc.a.run.app/v1", "path, query or fragment"),
    no(Url, "https://svc.a.run.app?x=1", "path, query or fragment"),
    no(
        Url,
        "https://user:pw@svc.a.run.app",
        "user name or password",
    ),
    no(Url, "https://svc.a.run.app:0", "the port `0`"),
    no(Url, "https://", "it is empty"),
    no(Url, "https://svc_x.a.run.app", "`_` is not allowed"),
];
