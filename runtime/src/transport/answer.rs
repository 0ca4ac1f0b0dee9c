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

/// How much of a refusal page is read: enough for its title and message.
const READ_AT_MOST: usize = 4 * 1024;
/// How long reading it may take: the page comes with the headers, or not at all.
const READ_FOR_AT_MOST: Duration = Duration::from_secs(1);
/// How much of the page's text a message quotes.
const QUOTE_AT_MOST: usize = 200;

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

/// The readable text of a page (or of any body), short and on one line: HTML tags, scripts and
/// styles dropped, entities for `<>&"'` decoded, anything that looks like a JWT replaced, so a
/// page that echoes a token never carries it into an error message.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut visible = String::with_capacity(text.len().min(READ_AT_MOST));
    let mut rest: &str = &text;
    while !rest.is_empty() {
        let Some(open) = rest.find('<') else {
            visible.push_str(rest);
            break;
        };
        visible.push_str(&rest[..open]);
        visible.push(' ');
        let tag = &rest[open..];
        let lower = tag.get(..8).unwrap_or(tag).to_ascii_lowercase();
        let skip_to = if lower.starts_with("<script") {
            find_ignore_case(tag, "</script>").map(|end| end + "</script>".len())
        } else if lower.starts_with("<style") {
            find_ignore_case(tag, "</style>").map(|end| end + "</style>".len())
        } else {
            tag.find('>').map(|end| end + 1)
        };
        match skip_to {
            Some(end) => rest = &tag[end..],
            None => break,
        }
    }
    let decoded = visible
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    let words: Vec<&str> = decoded
        .split_whitespace()
        .map(|word| {
            if looks_like_a_token(word) {
                "[token]"
            } else {
                word
            }
        })
        .collect();
    let mut line = words.join(" ");
    if line.chars().count() > QUOTE_AT_MOST {
        line = line.chars().take(QUOTE_AT_MOST).collect();
        line.push('…');
    }
    line
}

fn find_ignore_case(haystack: &str, needle: &str) -> Option<usize> {
    haystack.to_ascii_lowercase().find(needle)
}

/// A JWT (three base64url parts, the first a JSON header: `eyJ…`) or a bearer credential
/// (an OAuth access token, `ya29.…`), wherever it sits in a word.
fn looks_like_a_token(word: &str) -> bool {
    word.contains("eyJ") && word.matches('.').count() >= 2 || word.contains("ya29.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_google_error_page_becomes_its_text() {
        let page = br#"<html><head>
<meta http-equiv="content-type" content="text/html;charset=utf-8">
<title>401 Unauthorized</title>
<style>body { color: red }</style><script>var x = "<b>";</script>
</head>
<body text=#000000 bgcolor=#ffffff>
<h1>Error: Unauthorized</h1>
<h2>Your client does not have permission to the requested URL <code>/acme.Bookstore/GetBook</code>.</h2>
<h2></h2>
</body></html>
"#;
        assert_eq!(
            excerpt(page),
            "401 Unauthorized Error: Unauthorized Your client does not have permission to the \
             requested URL /acme.Bookstore/GetBook ."
        );
    }

    #[test]
    fn tokens_never_make_it_into_an_excerpt() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjF9.c2lnbmF0dXJl";
        let page = format!("<p>bad token:{jwt}</p> and Bearer ya29.a0AfH6SMB secret");
        let text = excerpt(page.as_bytes());
        assert!(!text.contains("eyJ") && !text.contains("ya29"), "{text}");
        assert!(text.contains("[token]"), "{text}");
    }

    #[test]
    fn excerpts_are_short_and_on_one_line() {
        let long = "word\n".repeat(500);
        let text = excerpt(long.as_bytes());
        assert!(text.chars().count() <= QUOTE_AT_MOST + 1);
        assert!(!text.contains('\n'));
        assert_eq!(excerpt(b"unclosed <tag"), "unclosed");
    }

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
