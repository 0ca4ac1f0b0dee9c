//! Asking a token endpoint (OAuth, IAM Credentials) and reading what it answered: the token, or
//! an error that says why there is none and what to do. Nothing here ever quotes a token.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::Full;
use serde_json::Value;

use super::credentials_file::short;
use super::{IdToken, TokenError};
use crate::excerpt::excerpt;
use crate::fetch::{self as client, Failure, Response};

/// The error for a request to `source_name` that got no answer.
pub(crate) fn no_answer(source_name: &str, failure: Failure) -> TokenError {
    match failure {
        Failure::Unreachable { cause, source } => TokenError::Unreachable {
            source_name: source_name.to_owned(),
            cause,
            source,
        },
        Failure::Timeout(after) => TokenError::Timeout {
            source_name: source_name.to_owned(),
            after,
        },
    }
}

/// A token an endpoint answered with, and the endpoint's clock when it did (its `Date`).
pub(crate) struct Answer {
    pub(crate) token: String,
    pub(crate) date: Option<SystemTime>,
}

/// What kind of endpoint answered, for the errors.
pub(crate) struct Endpoint<'a> {
    /// The source, as errors name it.
    pub(crate) source_name: &'a str,
    /// The JSON field the token is in: `id_token`, `token`, `access_token`.
    pub(crate) field: &'a str,
    /// What to check when the answer is not what such an endpoint sends (a wrong URL, a proxy).
    pub(crate) wrong_endpoint: &'a str,
    /// Advice for an error answer, from its HTTP status and error code (`invalid_grant`,
    /// `PERMISSION_DENIED`).
    pub(crate) advice: &'a (dyn Fn(u16, &str) -> Option<String> + Sync),
}

impl Endpoint<'_> {
    /// Posts the form `fields` to the OAuth token endpoint at `uri` and reads the token from the
    /// answer, all within `timeout`.
    pub(crate) async fn post_form(
        &self,
        uri: &str,
        fields: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Answer, TokenError> {
        let body = client::form(fields);
        let request = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| TokenError::Unsupported {
                source_name: self.source_name.to_owned(),
                reason: format!("the token URI cannot be requested ({e})"),
                source: Some(Arc::new(e)),
            })?;
        self.send(request, timeout).await
    }

    /// Sends `request` and reads the token from the answer, all within `timeout`.
    pub(crate) async fn send(
        &self,
        request: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Answer, TokenError> {
        let response = client::send(request, timeout)
            .await
            .map_err(|failure| self.failed(failure))?;
        Ok(Answer {
            token: self.token(&response)?,
            date: response.date(),
        })
    }

    /// The ID token this endpoint has just minted, or why it is not one. Its clock is the
    /// answer's `Date`, else the token's `iat`: it minted the token for this request.
    pub(crate) fn minted_id_token(&self, answer: Answer) -> Result<IdToken, TokenError> {
        let token = IdToken::from_jwt(answer.token).map_err(|reason| TokenError::BadToken {
            source_name: self.source_name.to_owned(),
            reason,
        })?;
        Ok(match answer.date.or(token.issued_at()) {
            Some(time) => token.with_server_time(time),
            None => token,
        })
    }

    /// The token in `response`, or why there is none.
    pub(crate) fn token(&self, response: &Response) -> Result<String, TokenError> {
        let status = response.status.as_u16();
        if let Some(page) = html_page(response) {
            return Err(self.bad(format!(
                "{page} came back instead of JSON; {}",
                self.wrong_endpoint
            )));
        }
        if status != 200 {
            let body = match error_summary(&response.body) {
                Some((code, message)) => {
                    let mut text = if message.is_empty() {
                        code.clone()
                    } else {
                        format!("{code}: {message}")
                    };
                    if let Some(advice) = (self.advice)(status, &code) {
                        text.push_str(" — ");
                        text.push_str(&advice);
                    }
                    text
                }
                None => match (self.advice)(status, "") {
                    Some(advice) => format!("{} — {advice}", excerpt(&response.body)),
                    None => excerpt(&response.body),
                },
            };
            return Err(TokenError::Status {
                source_name: self.source_name.to_owned(),
                status,
                body,
            });
        }
        self.field_of(&response.body)
    }

    /// The token field of a 200 answer's JSON body.
    pub(crate) fn field_of(&self, body: &[u8]) -> Result<String, TokenError> {
        let field = self.field;
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            return Err(self.bad(format!(
                "the answer is not JSON ({} bytes); {}",
                body.len(),
                self.wrong_endpoint
            )));
        };
        let Value::Object(fields) = value else {
            return Err(self.bad(format!(
                "the answer is JSON but not an object; {}",
                self.wrong_endpoint
            )));
        };
        match fields.get(field) {
            Some(Value::String(token)) if !token.trim().is_empty() => Ok(token.trim().to_owned()),
            Some(Value::String(_)) => Err(self.bad(format!("`{field}` is empty"))),
            Some(_) => Err(self.bad(format!("`{field}` is not a string"))),
            None => {
                let has = what_it_has(&fields);
                Err(self.bad(format!(
                    "the answer has no `{field}` ({has}); {}",
                    self.wrong_endpoint
                )))
            }
        }
    }

    /// The error for a request that got no answer.
    pub(crate) fn failed(&self, failure: Failure) -> TokenError {
        no_answer(self.source_name, failure)
    }

    fn bad(&self, reason: String) -> TokenError {
        TokenError::BadResponse {
            source_name: self.source_name.to_owned(),
            reason,
        }
    }
}

/// Whether the answer is an HTML page (a proxy's, a captive portal's, a wrong URL's).
/// What a JSON object holds, for an error about the field it lacks: its first field names,
/// never their values (which may be secrets).
pub(crate) fn what_it_has(fields: &serde_json::Map<String, Value>) -> String {
    let names: Vec<String> = fields
        .keys()
        .take(12)
        .map(|k| format!("`{}`", short(k, 40)))
        .collect();
    if names.is_empty() {
        "it is an empty object".to_owned()
    } else {
        format!("it has {}", names.join(", "))
    }
}

fn is_html(response: &Response) -> bool {
    if response
        .content_type()
        .is_some_and(|t| t == "text/html" || t == "application/xhtml+xml")
    {
        return true;
    }
    let start = response
        .body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(response.body.len());
    let head = &response.body[start..response.body.len().min(start + 15)];
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    head.starts_with("<!doctype html") || head.starts_with("<html")
}

/// The `<title>` of an HTML page, short and on one line.
/// `an HTML page (HTTP 404, titled "…")` when `response` is one: what a proxy or a wrong
/// URL answers in an endpoint's place.
pub(crate) fn html_page(response: &Response) -> Option<String> {
    if !is_html(response) {
        return None;
    }
    let title = html_title(&response.body)
        .map(|t| format!(", titled \"{t}\""))
        .unwrap_or_default();
    Some(format!(
        "an HTML page (HTTP {}{title})",
        response.status.as_u16()
    ))
}

fn html_title(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&body[..body.len().min(8 * 1024)]);
    let lower = text.to_ascii_lowercase();
    let start = lower.find("<title>")? + "<title>".len();
    let end = start + lower[start..].find("</title>")?;
    let title = text.get(start..end)?.split_whitespace().collect::<Vec<_>>();
    let title = title.join(" ");
    (!title.is_empty()).then(|| short(&title, 80))
}

/// The error code and message of an OAuth error (`{"error": "invalid_grant",
/// "error_description": ".."}`) or a Google API error (`{"error": {"status": "PERMISSION_DENIED",
/// "message": ".."}}`).
pub(crate) fn error_summary(body: &[u8]) -> Option<(String, String)> {
    let Value::Object(fields) = serde_json::from_slice::<Value>(body).ok()? else {
        return None;
    };
    match fields.get("error")? {
        Value::String(code) => {
            let message = match fields.get("error_description") {
                Some(Value::String(d)) => short(d, 300),
                _ => String::new(),
            };
            Some((short(code, 60), message))
        }
        Value::Object(error) => {
            let code = match (error.get("status"), error.get("code")) {
                (Some(Value::String(status)), _) => short(status, 60),
                (_, Some(Value::Number(code))) => code.to_string(),
                _ => "error".to_owned(),
            };
            let message = match error.get("message") {
                Some(Value::String(m)) => short(m, 300),
                _ => String::new(),
            };
            Some((code, message))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue, StatusCode};
    use proptest::prelude::*;

    fn endpoint<'a>(advice: &'a (dyn Fn(u16, &str) -> Option<String> + Sync)) -> Endpoint<'a> {
        Endpoint {
            source_name: "token endpoint",
            field: "id_token",
            wrong_endpoint: "check token_uri",
            advice,
        }
    }

    fn answer(status: u16, content_type: &str, body: &str) -> Response {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).unwrap(),
        );
        Response {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn takes_the_token_field() {
        let none = |_: u16, _: &str| None;
        let got = endpoint(&none)
            .token(&answer(
                200,
                "application/json",
                r#"{"id_token":" a.b.c\n"}"#,
            ))
            .unwrap();
        assert_eq!(got, "a.b.c");
    }

    #[test]
    fn oauth_errors_get_their_advice() {
        let advice = |status: u16, code: &str| {
            (status == 400 && code == "invalid_grant").then(|| "make a new key".to_owned())
        };
        let body = r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#;
        let err = endpoint(&advice)
            .token(&answer(400, "application/json", body))
            .unwrap_err();
        let TokenError::Status {
            source_name,
            status,
            body,
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!(source_name, "token endpoint");
        assert_eq!(*status, 400);
        assert_eq!(
            body,
            "invalid_grant: Invalid JWT Signature. — make a new key"
        );
    }

    #[test]
    fn google_api_errors_are_summarised() {
        let body = r#"{"error":{"code":403,"message":"denied","status":"PERMISSION_DENIED"}}"#;
        assert_eq!(
            error_summary(body.as_bytes()),
            Some(("PERMISSION_DENIED".into(), "denied".into()))
        );
    }

    #[test]
    fn html_pages_are_named_as_such() {
        let none = |_: u16, _: &str| None;
        let page = "<!DOCTYPE html><html><title>Error 404 (Not Found)!!1</title></html>";
        for content_type in ["text/html; charset=UTF-8", "text/plain"] {
            let err = endpoint(&none)
                .token(&answer(404, content_type, page))
                .unwrap_err();
            let TokenError::BadResponse { reason, .. } = &err else {
                panic!("{err:?}");
            };
            assert!(reason.contains("HTML page (HTTP 404"), "{reason}");
            assert!(reason.contains("Error 404 (Not Found)!!1"), "{reason}");
            assert!(reason.ends_with("check token_uri"), "{reason}");
        }
    }

    #[test]
    fn a_missing_field_lists_what_is_there_without_values() {
        let none = |_: u16, _: &str| None;
        let err = endpoint(&none)
            .token(&answer(
                200,
                "application/json",
                r#"{"access_token":"ya29.secret","expires_in":3599}"#,
            ))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no `id_token`"), "{err}");
        assert!(err.contains("`access_token`, `expires_in`"), "{err}");
        assert!(!err.contains("ya29"), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn token_answers_never_panic(
            status in 100u16..600,
            html in any::<bool>(),
            body in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let none = |_: u16, _: &str| Some("advice".to_owned());
            let mut response = answer(status, if html { "text/html" } else { "application/json" }, "");
            response.body = Bytes::from(body.clone());
            let _ = endpoint(&none).token(&response);
            let _ = error_summary(&body);
            let _ = html_title(&body);
        }

        #[test]
        fn json_token_answers_never_panic(field in "[a-z_]{0,10}", value in ".{0,64}", extra in ".{0,64}") {
            let none = |_: u16, _: &str| None;
            let mut object = serde_json::Map::new();
            object.insert(field, value.into());
            object.insert("error".into(), extra.clone().into());
            object.insert("error_description".into(), extra.into());
            let body = Value::Object(object).to_string();
            let _ = endpoint(&none).field_of(body.as_bytes());
            let _ = error_summary(body.as_bytes());
        }
    }
}
