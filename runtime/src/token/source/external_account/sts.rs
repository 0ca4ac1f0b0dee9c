//! The token exchange at Google's Security Token Service (RFC 8693): a subject token in, a
//! federated access token out, kept while it is valid.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderValue, Request, header};
use http_body_util::Full;
use serde_json::Value;
use tokio::time::Instant;

use crate::fetch as client;
use crate::token::TokenError;
use crate::token::endpoint::Endpoint;

pub(super) const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub(super) const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The scope IAM Credentials wants from the token that calls it.
const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// A federated token is reused until this long before it expires (less for short-lived ones):
/// it is sent once, at once, to IAM, so a minute is ample and saves an exchange per refresh.
const REUSE_MARGIN: Duration = Duration::from_secs(60);

/// What the exchange sends besides the subject token.
pub(super) struct Exchange {
    /// STS's `token_url`.
    pub(super) token_url: String,
    /// The workload identity pool provider (`//iam.googleapis.com/projects/…/providers/…`).
    pub(super) audience: String,
    /// `urn:ietf:params:oauth:token-type:jwt`, `…:id_token`, `…:saml2`.
    pub(super) subject_token_type: String,
    /// Workforce pools bill a user project, sent in `options` when there is no client.
    pub(super) user_project: Option<String>,
    /// A workforce pool's OAuth client, sent as HTTP Basic authentication.
    pub(super) client: Option<Client>,
}

/// An OAuth client id and secret.
pub(super) struct Client {
    pub(super) id: String,
    pub(super) secret: String,
}

/// A federated access token and until when it is reused. `Debug` never shows the token.
#[derive(Clone)]
pub(super) struct FederatedToken {
    pub(super) secret: String,
    reuse_until: Instant,
}

impl FederatedToken {
    /// Whether it can still be sent.
    pub(super) fn fresh(&self) -> bool {
        Instant::now() < self.reuse_until
    }

    /// How much longer it will be reused.
    pub(super) fn reused_for(&self) -> Duration {
        self.reuse_until.saturating_duration_since(Instant::now())
    }
}

impl fmt::Debug for FederatedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FederatedToken")
            .field("reuse_until", &self.reuse_until)
            .finish_non_exhaustive()
    }
}

impl Exchange {
    /// The step, as errors name it.
    pub(super) fn source_name(&self) -> String {
        format!("STS token exchange at {}", self.token_url)
    }

    /// Exchanges `subject_token` for a federated access token, within `timeout`.
    pub(super) async fn exchange(
        &self,
        subject_token: &str,
        timeout: Duration,
        advice: &(dyn Fn(u16, &str) -> Option<String> + Sync),
    ) -> Result<FederatedToken, TokenError> {
        let source_name = self.source_name();
        let wrong_endpoint = format!(
            "check that the file's `token_url` ({}) is Google's STS \
             (https://sts.googleapis.com/v1/token) and that no proxy answers in its place",
            self.token_url
        );
        let endpoint = Endpoint {
            source_name: &source_name,
            field: "access_token",
            wrong_endpoint: &wrong_endpoint,
            advice,
        };
        let mut form = vec![
            ("audience", self.audience.as_str()),
            ("grant_type", TOKEN_EXCHANGE_GRANT),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
            ("subject_token_type", self.subject_token_type.as_str()),
            ("subject_token", subject_token),
            ("scope", CLOUD_PLATFORM),
        ];
        let options = match (&self.user_project, &self.client) {
            (Some(project), None) => {
                Some(serde_json::json!({ "userProject": project }).to_string())
            }
            _ => None,
        };
        if let Some(options) = &options {
            form.push(("options", options));
        }

        let mut request = Request::post(self.token_url.as_str())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json");
        if let Some(client) = &self.client {
            let credentials = STANDARD.encode(format!("{}:{}", client.id, client.secret));
            let mut basic =
                HeaderValue::from_str(&format!("Basic {credentials}")).map_err(|_| {
                    TokenError::BadResponse {
                        source_name: source_name.clone(),
                        reason: "the client credentials are not a valid header value".into(),
                    }
                })?;
            basic.set_sensitive(true);
            request = request.header(header::AUTHORIZATION, basic);
        }
        let request = request
            .body(Full::new(Bytes::from(client::form(&form))))
            .map_err(|e| TokenError::Unsupported {
                source_name: source_name.clone(),
                reason: format!("the token URL cannot be requested ({e})"),
                source: Some(Arc::new(e)),
            })?;
        let response = client::send(request, timeout)
            .await
            .map_err(|failure| endpoint.failed(failure))?;
        let received = Instant::now();
        let secret = endpoint.token(&response)?;
        let lifetime = expires_in(&response.body).map_err(|reason| TokenError::BadResponse {
            source_name: source_name.clone(),
            reason,
        })?;
        let margin = REUSE_MARGIN.min(lifetime / 2);
        Ok(FederatedToken {
            secret,
            reuse_until: received + (lifetime - margin),
        })
    }
}

/// The `expires_in` of a 200 answer: Google's libraries refuse an answer without a positive
/// one, since nobody could tell when the token stops working. Capped at 12 hours, the longest
/// a Google access token lives, so no answer can keep a token in use past its life.
fn expires_in(body: &[u8]) -> Result<Duration, String> {
    let value: Value = serde_json::from_slice(body).map_err(|_| "the answer is not JSON")?;
    match value.get("expires_in") {
        Some(Value::Number(n)) => match n.as_u64() {
            Some(secs) if secs > 0 => Ok(Duration::from_secs(secs.min(MAX_LIFETIME_SECS))),
            _ => Err(format!(
                "its `expires_in` ({n}) is not a positive number of seconds"
            )),
        },
        Some(_) => Err("its `expires_in` is not a number".into()),
        None => Err("it has no `expires_in`, so the token's lifetime is unknown".into()),
    }
}

/// 12 hours.
const MAX_LIFETIME_SECS: u64 = 12 * 3600;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_must_be_a_positive_number_of_seconds() {
        assert_eq!(
            expires_in(br#"{"expires_in": 3599}"#),
            Ok(Duration::from_secs(3599))
        );
        assert_eq!(
            expires_in(format!(r#"{{"expires_in": {}}}"#, u64::MAX).as_bytes()),
            Ok(Duration::from_secs(12 * 3600))
        );
        for bad in [
            r#"{"expires_in": 0}"#,
            r#"{"expires_in": -5}"#,
            r#"{"expires_in": "3600"}"#,
            r#"{"access_token": "ya29.x"}"#,
        ] {
            let why = expires_in(bad.as_bytes()).unwrap_err();
            assert!(why.contains("expires_in"), "{why}");
            assert!(!why.contains("ya29"), "{why}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_is_reused_until_its_margin() {
        let token = |lifetime: Duration| {
            let margin = REUSE_MARGIN.min(lifetime / 2);
            FederatedToken {
                secret: "ya29.federated".into(),
                reuse_until: Instant::now() + (lifetime - margin),
            }
        };
        let hour = token(Duration::from_secs(3600));
        tokio::time::advance(Duration::from_secs(3539)).await;
        assert!(hour.fresh());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!hour.fresh(), "60 s before expiry it is no longer sent");

        let short = token(Duration::from_secs(4));
        tokio::time::advance(Duration::from_millis(1999)).await;
        assert!(short.fresh());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(
            !short.fresh(),
            "a short-lived token keeps half its life as margin"
        );
        assert!(!format!("{short:?}").contains("ya29"));
    }
}
