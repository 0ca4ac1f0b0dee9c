//! Latency and failure injection shared by the HTTP emulators.

use std::sync::Mutex;
use std::time::Duration;

use http::StatusCode;
use tokio::sync::Notify;

use crate::http::{Dropped, Reply, oauth_error_body, respond};
use crate::sync::lock;

/// A failure an emulator answers its token endpoints with, instead of a token.
///
/// Set with `fail_with` (until `heal`) or `fail_times` (the next `n` requests) on a running
/// emulator. Each endpoint maps a fault to what Google's would do wrong:
///
/// | fault | metadata `identity` | OAuth `/token`, IAM `generateIdToken` |
/// |---|---|---|
/// | `Status(code, body)` | that status and body | same |
/// | `Html(code)` | an HTML error page with that status | same |
/// | `Garbage` | 200 with a body that is not a JWT | 200 JSON whose token is not a JWT |
/// | `MissingToken` | 200 with an empty body | 200 JSON without the token field |
/// | `NoExp` | 200 with a well-signed JWT without `exp` | same, in the JSON |
/// | `Hang` | never answers (until healed or shut down; the connection is then closed) | same |
/// | `Disconnect` | closes the connection without answering | same |
///
/// IAM's `generateAccessToken` answers in its own shape: `Garbage` with an `accessToken` no
/// registry issued, `NoExp` with a valid `accessToken` and no `expireTime`, `MissingToken` with
/// `{}`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer with this HTTP status and body (sent as JSON if it starts with `{`, else text).
    Status(u16, String),
    /// Answer with an HTML page and this status, as a proxy or captive portal would.
    Html(u16),
    /// Answer 200 with something that is not a JWT where the token should be.
    Garbage,
    /// Answer 200 without any token.
    MissingToken,
    /// Answer 200 with a correctly signed JWT that has no `exp`.
    NoExp,
    /// Never answer (until healed or shut down).
    Hang,
    /// Close the connection without answering.
    Disconnect,
}

impl Fault {
    /// An OAuth error answer: 400 with `{"error": error, "error_description": description}`,
    /// as Google's token endpoint sends for a bad assertion.
    pub fn oauth_error(error: &str, description: &str) -> Fault {
        Fault::Status(400, oauth_error_body(error, description).to_string())
    }

    /// A Google API error answer in the shape IAM Credentials uses:
    /// `{"error": {"code", "message", "status"}}` with that HTTP status.
    pub fn google_error(code: u16, status: &str, message: &str) -> Fault {
        let body = serde_json::json!({
            "error": { "code": code, "message": message, "status": status }
        });
        Fault::Status(code, body.to_string())
    }

    /// IAM's answer when the caller may not mint tokens for the account (403
    /// `PERMISSION_DENIED`, naming `iam.serviceAccounts.getOpenIdToken`).
    pub fn permission_denied() -> Fault {
        Fault::google_error(
            403,
            "PERMISSION_DENIED",
            "Permission 'iam.serviceAccounts.getOpenIdToken' denied on resource (or it may not exist).",
        )
    }
}

/// What a test injects into one emulator's token endpoints while it runs: latency before each
/// answer, and a fault instead of it.
pub(crate) struct Injection {
    latency: Mutex<Duration>,
    fault: Mutex<Option<(Fault, Option<usize>)>>,
    changed: Notify,
}

impl Injection {
    /// No fault, and `latency` before each answer.
    pub(crate) fn new(latency: Duration) -> Self {
        Injection {
            latency: Mutex::new(latency),
            fault: Mutex::default(),
            changed: Notify::new(),
        }
    }

    pub(crate) fn latency(&self) -> Duration {
        *lock(&self.latency)
    }

    pub(crate) fn set_latency(&self, latency: Duration) {
        *lock(&self.latency) = latency;
    }

    /// Injects `fault` for the next `times` requests, or until healed when `None`.
    pub(crate) fn fail(&self, fault: Fault, times: Option<usize>) {
        *lock(&self.fault) = (times != Some(0)).then_some((fault, times));
        self.changed.notify_waiters();
    }

    pub(crate) fn heal(&self) {
        *lock(&self.fault) = None;
        self.changed.notify_waiters();
    }

    /// Waits the injected latency, then takes the fault for this request, if any, counting it
    /// against `fail_times`.
    pub(crate) async fn next(&self) -> Option<Fault> {
        tokio::time::sleep(self.latency()).await;
        let mut active = lock(&self.fault);
        let (fault, remaining) = active.as_mut()?;
        let fault = fault.clone();
        if let Some(remaining) = remaining {
            *remaining -= 1;
            if *remaining == 0 {
                *active = None;
            }
        }
        Some(fault)
    }

    /// The answer for the faults every endpoint treats alike; `None` for the endpoint-specific
    /// ones (`Garbage`, `MissingToken`, `NoExp`).
    pub(crate) async fn common(&self, fault: &Fault) -> Option<Reply> {
        Some(match fault {
            Fault::Status(code, body) => {
                let status =
                    StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let content_type = if body.trim_start().starts_with('{') {
                    "application/json; charset=utf-8"
                } else {
                    "text/plain; charset=utf-8"
                };
                Ok(respond(status, content_type, body.clone()))
            }
            Fault::Html(code) => {
                let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::BAD_GATEWAY);
                let page = format!(
                    "<!DOCTYPE html>\n<html lang=en><title>Error {code}</title>\
                     <p><b>{code}.</b> <ins>That's an error.</ins></p></html>\n"
                );
                Ok(respond(status, "text/html; charset=UTF-8", page))
            }
            Fault::Hang => {
                let changed = self.changed.notified();
                // Ends when the fault changes; the server's shutdown drops this future sooner.
                changed.await;
                Err(Dropped)
            }
            Fault::Disconnect => Err(Dropped),
            Fault::Garbage | Fault::MissingToken | Fault::NoExp => return None,
        })
    }
}

/// The fault and latency knobs of an HTTP emulator whose `state.injection` is an [`Injection`]:
/// `set_latency`, `fail_with`, `fail_times` and `heal`, documented for what it answers
/// (`$what`: "token requests", "exchanges", ...).
macro_rules! fault_knobs {
    ($emulator:ident, $what:literal) => {
        #[doc = concat!("Changes the latency added to every one of its ", $what, " from now on.")]
        pub fn set_latency(&self, latency: std::time::Duration) {
            self.state.injection.set_latency(latency);
        }

        #[doc = concat!(
            "Answers every one of its ", $what, " with `fault` until [`heal`](",
            stringify!($emulator), "::heal)."
        )]
        pub fn fail_with(&self, fault: $crate::Fault) {
            self.state.injection.fail(fault, None);
        }

        #[doc = concat!(
            "Answers the next `times` of its ", $what, " with `fault`, then heals by itself. ",
            "One hanging from `Fault::Hang` ends at the next fault change or shutdown."
        )]
        pub fn fail_times(&self, fault: $crate::Fault, times: usize) {
            self.state.injection.fail(fault, Some(times));
        }

        /// Stops injecting faults; requests hanging on [`Fault::Hang`](crate::Fault::Hang) have
        /// their connection closed.
        pub fn heal(&self) {
            self.state.injection.heal();
        }
    };
}

pub(crate) use fault_knobs;
