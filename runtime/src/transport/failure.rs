//! What a transport failure means to a gRPC caller: the status it gets, and whether the server
//! provably never processed the call (so that sending it again cannot run anything twice).

use std::error::Error as StdError;
use std::sync::Arc;

use http::uri::Authority;
use tonic::{Code, Status};

use crate::error::chain;

/// The HTTP/2 error under `error`, if any.
pub(super) fn h2_error<'e>(error: &'e (dyn StdError + 'static)) -> Option<&'e h2::Error> {
    let mut source = Some(error);
    while let Some(cause) = source {
        if let Some(h2) = cause.downcast_ref::<h2::Error>() {
            return Some(h2);
        }
        source = cause.source();
    }
    None
}

/// Whether the server refused the stream before processing it: `REFUSED_STREAM` (RFC 9113
/// §8.7: "no application processing"), or a `GOAWAY` whose last stream is below this one.
///
/// h2 (0.4) gives a stream the peer's `GOAWAY` as its error only when the stream is above the
/// frame's last stream id (`Streams::recv_go_away`); a stream at or below it that is then cut —
/// the peer closing the connection after its `GOAWAY`, as grpc-go does after
/// `too_many_pings` — ends with a broken pipe instead, and is not retried.
pub(crate) fn never_processed(error: &(dyn StdError + 'static)) -> bool {
    h2_error(error).is_some_and(|h2| {
        h2.is_remote() && (h2.is_go_away() || h2.reason() == Some(h2::Reason::REFUSED_STREAM))
    })
}

/// The status of a call whose transport failed, by gRPC's rules: a stream the server reset
/// gets the code of its reason (PROTOCOL-HTTP2.md, "Errors"); a lost connection — reset,
/// closed, or silent past the keep-alive timeout — is `UNAVAILABLE`, which callers may retry.
pub(crate) fn status(error: hyper::Error, authority: &Authority, while_doing: &str) -> Status {
    let code = match h2_error(&error) {
        _ if error.is_timeout() => Code::Unavailable,
        Some(h2) if h2.is_reset() && h2.is_remote() => match h2.reason() {
            Some(h2::Reason::REFUSED_STREAM) => Code::Unavailable,
            Some(h2::Reason::CANCEL) => Code::Cancelled,
            Some(h2::Reason::ENHANCE_YOUR_CALM) => Code::ResourceExhausted,
            Some(h2::Reason::INADEQUATE_SECURITY) => Code::PermissionDenied,
            _ => Code::Internal,
        },
        // We reset it: the peer broke HTTP/2's rules on this stream (flow control, framing).
        Some(h2) if h2.is_reset() => Code::Internal,
        _ => Code::Unavailable,
    };
    let what = if error.is_timeout() {
        format!("{authority} stopped answering (no reply to HTTP/2 keep-alive pings) {while_doing}")
    } else if matches!(h2_error(&error), Some(h2) if h2.is_reset() && !h2.is_remote()) {
        format!("the stream with {authority} was reset for breaking HTTP/2's rules {while_doing}")
    } else if code == Code::Unavailable {
        format!("lost the connection to {authority} {while_doing}")
    } else {
        format!("{authority} reset the stream {while_doing}")
    };
    let mut status = Status::new(code, format!("{what}: {}", chain(&error)));
    status.set_source(Arc::new(error));
    status
}
