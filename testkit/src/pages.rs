//! The pages Google's front end answers with when it refuses or cannot serve a request.
//!
//! Copied from what clients of Cloud Run report receiving (the sources are cited per page);
//! where a body is not documented anywhere, the page says so.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

/// What Cloud Run's front end sends as `server`.
const SERVER: &str = "Google Frontend";

/// The `www-authenticate` of a refused token. Reported verbatim by users of Cloud Run who
/// inspected the 401 (e.g. with an access token where an ID token belongs).
const INVALID_TOKEN: &str =
    r#"Bearer error="invalid_token" error_description="The access token could not be verified""#;

/// The answer for `status` to a request for `path` (path and query, as sent): an HTML page in
/// the front end's own template, `content-type: text/html; charset=UTF-8`, no gRPC trailers.
pub(crate) fn page(status: StatusCode, path: &str) -> Response<Bytes> {
    let path = escape(path);
    let (content_type, body) = match status.as_u16() {
        // Both as quoted in google/adk-python#3814 and many curl transcripts.
        401 => (
            HTML,
            gfe(
                status,
                "Unauthorized",
                &format!(
                    "Your client does not have permission to the requested URL <code>{path}</code>."
                ),
            ),
        ),
        403 => (
            HTML,
            gfe(
                status,
                "Forbidden",
                &format!(
                    "Your client does not have permission to get URL <code>{path}</code> from this server."
                ),
            ),
        ),
        // The front end's own 404, for a host or path it does not serve.
        404 => (HTML, not_found(&path)),
        // Only the log line is documented ("The request was aborted because there was no
        // available instance"); the page is the front end's template around it.
        429 => (
            HTML,
            gfe(
                status,
                "Too Many Requests",
                "The request was aborted because there was no available instance.",
            ),
        ),
        // As quoted by users of services scaling from zero or failing to start.
        503 => (
            HTML,
            gfe(
                status,
                "Server Error",
                "The service you requested is not available yet.<p>Please try again in 30 seconds.",
            ),
        ),
        // Users report the body of a request timeout as this one line (fastapi#2812 and
        // others); not an HTML page.
        504 => ("text/plain", "upstream request timeout".to_owned()),
        code if code >= 500 => (
            HTML,
            gfe(
                status,
                "Server Error",
                "The server encountered a temporary error and could not complete your request.<p>Please try again in 30 seconds.",
            ),
        ),
        _ => (
            HTML,
            gfe(
                status,
                status.canonical_reason().unwrap_or("Error"),
                "Your client has issued a malformed or illegal request.",
            ),
        ),
    };
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::SERVER, HeaderValue::from_static(SERVER));
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(INVALID_TOKEN),
        );
    }
    response
}

const HTML: &str = "text/html; charset=UTF-8";

/// The front end's plain error template (401, 403, 5xx).
fn gfe(status: StatusCode, title: &str, message: &str) -> String {
    let code = status.as_u16();
    format!(
        "\n<html><head>\n<meta http-equiv=\"content-type\" content=\"text/html;charset=utf-8\">\n\
         <title>{code} {title}</title>\n</head>\n<body text=#000000 bgcolor=#ffffff>\n\
         <h1>Error: {title}</h1>\n<h2>{message}</h2>\n<h2></h2>\n</body></html>\n"
    )
}

/// Google's 404 page (its style sheet and logo left out).
fn not_found(path: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  \
         <meta name=viewport content=\"initial-scale=1, minimum-scale=1, width=device-width\">\n  \
         <title>Error 404 (Not Found)!!1</title>\n  \
         <p><b>404.</b> <ins>That’s an error.</ins>\n  \
         <p>The requested URL <code>{path}</code> was not found on this server.  \
         <ins>That’s all we know.</ins>\n"
    )
}

/// `path` made safe to put in HTML.
fn escape(path: &str) -> String {
    let mut escaped = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_token_gets_the_401_page_and_its_challenge() {
        let page = page(StatusCode::UNAUTHORIZED, "/acme.Books/Get");
        let body = std::str::from_utf8(page.body()).unwrap();
        assert!(body.contains("<title>401 Unauthorized</title>"), "{body}");
        assert!(
            body.contains("requested URL <code>/acme.Books/Get</code>."),
            "{body}"
        );
        assert_eq!(page.headers()["www-authenticate"], INVALID_TOKEN);
        assert_eq!(page.headers()["content-type"], "text/html; charset=UTF-8");
    }

    #[test]
    fn paths_are_escaped() {
        let page = page(StatusCode::FORBIDDEN, "/a?b=<script>&c='\"");
        let body = std::str::from_utf8(page.body()).unwrap();
        assert!(
            body.contains("<code>/a?b=&lt;script&gt;&amp;c=&#39;&quot;</code>"),
            "{body}"
        );
        assert!(page.headers().get("www-authenticate").is_none());
    }
}
