//! Answers that are not gRPC. Cloud Run's front end refuses a call at the HTTP layer, before
//! the container sees it: 401 for a token it refuses, 403 for a missing token or a caller
//! without `roles/run.invoker`, 429 or 503 when no instance can take the call — each with an
//! HTML page and no `grpc-status`. Read as gRPC, that page is garbage (`<` is no compression
//! flag); read here, it becomes the status gRPC's HTTP mapping gives it, with what the page said.

use std::fmt;
use std::time::Duration;

use http::{HeaderMap, Response, StatusCode, header};
use http_body::Body as _;
use hyper::body::Incoming;
use tokio::time::Instant;
use tonic::Code;

use crate::excerpt::excerpt;

/// How much of a refusal page is read: enough for its title and message.
const READ_AT_MOST: usize = 4 * 1024;
/// How long reading it may take: the page comes with the headers, or not at all.
const READ_FOR_AT_MOST: Duration = Duration::from_secs(1);

/// Whether `response` is a gRPC response: HTTP 200 with an `application/grpc*` content type.
pub(crate) fn is_grpc<B>(response: &Response<B>) -> bool {
    response.status() == StatusCode::OK
        && response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|value| {
                let value = value.as_bytes();
                value.len() >= 16 && value[..16].eq_ignore_ascii_case(b"application/grpc")
            })
}

/// An answer that was not gRPC, such as Cloud Run's front end refusing a call with an HTML
/// page. The [`Status`](tonic::Status) of such a call has it as its `source()`, so a caller can
/// tell the front end's HTTP 401 from the service's own `UNAUTHENTICATED`:
///
/// ```
/// # fn check(status: tonic::Status) {
/// use cloud_run_grpc::NonGrpcAnswer;
///
/// let answer = std::error::Error::source(&status)
///     .and_then(|source| source.downcast_ref::<NonGrpcAnswer>());
/// if let Some(answer) = answer {
///     println!("the front end answered HTTP {}", answer.http_status());
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct NonGrpcAnswer {
    pub(crate) status: StatusCode,
    content_type: Option<String>,
    excerpt: String,
}

impl NonGrpcAnswer {
    /// The HTTP status.
    pub fn http_status(&self) -> StatusCode {
        self.status
    }

    /// The media type, lower-case, without parameters (`text/html`).
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// The start of the page's text, on one line: tags and scripts removed, and anything
    /// token-shaped replaced by `[token]`.
    pub fn excerpt(&self) -> &str {
        &self.excerpt
    }
}

impl std::error::Error for NonGrpcAnswer {}

impl NonGrpcAnswer {
    /// Reads the start of the body (a few KiB, for at most a second and never past `by`).
    pub(crate) async fn read(response: Response<Incoming>, by: Option<Instant>) -> Self {
        let (parts, mut body) = response.into_parts();
        let mut until = Instant::now() + READ_FOR_AT_MOST;
        if let Some(by) = by {
            until = until.min(by);
        }
        let mut bytes = Vec::new();
        let read = async {
            while bytes.len() < READ_AT_MOST {
                match std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
                {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            bytes.extend_from_slice(&data[..data.len().min(READ_AT_MOST)]);
                        }
                    }
                    _ => break,
                }
            }
        };
        // A page that does not come in time is simply not quoted.
        let _ = tokio::time::timeout_at(until, read).await;
        NonGrpcAnswer {
            status: parts.status,
            content_type: media_type(&parts.headers),
            excerpt: excerpt(&bytes),
        }
    }

    /// The gRPC code of this answer, by gRPC's HTTP-to-status mapping (PROTOCOL-HTTP2.md,
    /// http-grpc-status-mapping.md).
    pub(crate) fn code(&self) -> Code {
        match self.status.as_u16() {
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502 | 503 | 504 => Code::Unavailable,
            _ => Code::Unknown,
        }
    }

    /// Whether this is the front end refusing the token that was sent.
    pub(crate) fn is_token_refusal(&self) -> bool {
        self.status == StatusCode::UNAUTHORIZED
    }
}

impl fmt::Display for NonGrpcAnswer {
    /// `HTTP 401 Unauthorized (text/html): "…the page's text…"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if let Some(content_type) = &self.content_type {
            write!(f, " ({content_type})")?;
        }
        if !self.excerpt.is_empty() {
            write!(f, ": \"{}\"", self.excerpt)?;
        }
        Ok(())
    }
}

fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let media = value.split(';').next().unwrap_or_default().trim();
    (!media.is_empty()).then(|| media.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_map_as_grpc_says() {
        let answer = |status: u16| NonGrpcAnswer {
            status: StatusCode::from_u16(status).unwrap(),
            content_type: Some("text/html".into()),
            excerpt: String::new(),
        };
        for (status, code) in [
            (400, Code::Internal),
            (401, Code::Unauthenticated),
            (403, Code::PermissionDenied),
            (404, Code::Unimplemented),
            (429, Code::Unavailable),
            (502, Code::Unavailable),
            (503, Code::Unavailable),
            (504, Code::Unavailable),
            (500, Code::Unknown),
            (200, Code::Unknown),
        ] {
            assert_eq!(answer(status).code(), code, "HTTP {status}");
        }
        assert_eq!(answer(403).to_string(), "HTTP 403 Forbidden (text/html)");
    }

    #[test]
    fn only_http_200_with_a_grpc_content_type_is_grpc() {
        let response = |status: u16, content_type: &str| {
            Response::builder()
                .status(status)
                .header(header::CONTENT_TYPE, content_type)
                .body(())
                .unwrap()
        };
        assert!(is_grpc(&response(200, "application/grpc")));
        assert!(is_grpc(&response(200, "application/grpc+proto")));
        assert!(is_grpc(&response(200, "Application/GRPC; charset=x")));
        assert!(!is_grpc(&response(200, "text/html; charset=UTF-8")));
        assert!(!is_grpc(&response(401, "application/grpc")));
        assert!(!is_grpc(&response(200, "application/json")));
    }
}
