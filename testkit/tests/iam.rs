//! The IAM Credentials emulator, fed access tokens by the other emulators.

mod common;

use std::time::SystemTime;

use cloud_run_grpc_testkit::{
    AccessTokens, Fault, IamEmulator, MetadataEmulator, OAuthEmulator, Verifier,
    authorized_user_json, impersonated_service_account_json,
};
use common::{Answer, json, metadata_get, request};

const AUD: &str = "https://bookstore.test.run.app";
const TARGET: &str = "target@my-project.iam.gserviceaccount.com";

async fn generate(iam: &IamEmulator, token: Option<&str>, body: &str) -> Answer {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(bearer) = &bearer {
        headers.push(("Authorization", bearer));
    }
    let path = iam
        .generate_id_token_url(TARGET)
        .trim_start_matches(&iam.base_url())
        .to_owned();
    request(iam.addr(), "POST", &path, &headers, body)
        .await
        .unwrap()
}

/// The status `generateIdToken` answers a valid request authorised with `token`.
async fn id_token_status(iam: &IamEmulator, token: &str) -> u16 {
    generate(iam, Some(token), &id_body(true)).await.status
}

/// The `access_token` of an emulator's token answer.
fn access_token(answer: &Answer) -> String {
    json(answer)["access_token"].as_str().unwrap().to_owned()
}

fn id_body(include_email: bool) -> String {
    serde_json::json!({
        "audience": AUD, "includeEmail": include_email,
        "delegates": ["projects/-/serviceAccounts/middle@p.iam.gserviceaccount.com"],
    })
    .to_string()
}

async fn iam_with_token() -> (IamEmulator, String) {
    let registry = AccessTokens::new();
    let token = registry.issue(
        "source@p.iam.gserviceaccount.com",
        std::time::Duration::from_secs(600),
    );
    let iam = IamEmulator::builder()
        .access_tokens(registry)
        .start()
        .await
        .unwrap();
    (iam, token)
}

#[tokio::test]
async fn generate_id_token_for_a_known_caller() {
    let (iam, token) = iam_with_token().await;
    let answer = generate(&iam, Some(&token), &id_body(true)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let id_token = json(&answer)["token"].as_str().unwrap().to_owned();
    let claims = iam
        .verifier()
        .verify(&id_token, &[AUD], SystemTime::now())
        .unwrap();
    assert_eq!(claims.email.as_deref(), Some(TARGET));
    let request = iam.last_request().unwrap();
    assert_eq!(request.service_account, TARGET);
    assert_eq!(request.caller, "source@p.iam.gserviceaccount.com");
    assert_eq!(request.audience, AUD);
    assert!(request.include_email);
    assert_eq!(
        request.delegates,
        ["projects/-/serviceAccounts/middle@p.iam.gserviceaccount.com"]
    );

    let answer = generate(&iam, Some(&token), &id_body(false)).await;
    let id_token = json(&answer)["token"].as_str().unwrap().to_owned();
    let claims = Verifier::new()
        .verify(&id_token, &[AUD], SystemTime::now())
        .unwrap();
    assert_eq!(claims.email, None);
    assert_eq!(iam.requests(), 2);
}

#[tokio::test]
async fn access_tokens_from_the_oauth_and_metadata_emulators_are_accepted() {
    let registry = AccessTokens::new();
    let oauth = OAuthEmulator::builder()
        .access_tokens(registry.clone())
        .start()
        .await
        .unwrap();
    let metadata = MetadataEmulator::builder()
        .access_tokens(registry.clone())
        .start()
        .await
        .unwrap();
    let iam = IamEmulator::builder()
        .access_tokens(registry)
        .start()
        .await
        .unwrap();

    let from_metadata = access_token(
        &metadata_get(metadata.addr(), cloud_run_grpc_testkit::TOKEN_PATH)
            .await
            .unwrap(),
    );
    assert_eq!(id_token_status(&iam, &from_metadata).await, 200);

    let (id, secret, refresh) = cloud_run_grpc_testkit::DEFAULT_AUTHORIZED_USER;
    let form = format!(
        "grant_type=refresh_token&client_id={id}&client_secret={secret}&refresh_token={refresh}"
    );
    let from_oauth = access_token(
        &common::post_form(oauth.addr(), "/token", &form)
            .await
            .unwrap(),
    );
    assert_eq!(id_token_status(&iam, &from_oauth).await, 200);
}

#[tokio::test]
async fn a_missing_or_unknown_access_token_is_a_401() {
    let (iam, _) = iam_with_token().await;
    for token in [None, Some("ya29.made-up")] {
        let answer = generate(&iam, token, &id_body(true)).await;
        assert_eq!(answer.status, 401);
        let error = &json(&answer)["error"];
        assert_eq!(error["code"], 401);
        assert_eq!(error["status"], "UNAUTHENTICATED");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("invalid authentication credentials")
        );
    }
    assert_eq!(iam.rejected(), 2);
}

#[tokio::test]
async fn a_revoked_token_is_refused() {
    let (iam, token) = iam_with_token().await;
    iam.access_tokens().revoke_all();
    assert_eq!(id_token_status(&iam, &token).await, 401);
}

#[tokio::test]
async fn bad_requests_are_400() {
    let (iam, token) = iam_with_token().await;
    let no_audience = generate(&iam, Some(&token), r#"{"includeEmail": true}"#).await;
    assert_eq!(no_audience.status, 400);
    assert_eq!(json(&no_audience)["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(generate(&iam, Some(&token), "not json").await.status, 400);
    let unknown = request(iam.addr(), "POST", "/v1/elsewhere", &[], "")
        .await
        .unwrap();
    assert_eq!(unknown.status, 404);
}

#[tokio::test]
async fn permission_denied_is_injected_in_googles_shape() {
    let (iam, token) = iam_with_token().await;
    iam.fail_with(Fault::permission_denied());
    let answer = generate(&iam, Some(&token), &id_body(true)).await;
    assert_eq!(answer.status, 403);
    let error = &json(&answer)["error"];
    assert_eq!(
        (error["code"].as_u64(), error["status"].as_str()),
        (Some(403), Some("PERMISSION_DENIED"))
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("iam.serviceAccounts.getOpenIdToken")
    );

    iam.fail_with(Fault::MissingToken);
    let answer = generate(&iam, Some(&token), &id_body(true)).await;
    assert_eq!((answer.status, json(&answer)), (200, serde_json::json!({})));

    iam.heal();
    assert_eq!(id_token_status(&iam, &token).await, 200);
}

#[tokio::test]
async fn generate_access_token_then_id_token() {
    let (iam, token) = iam_with_token().await;
    let path = iam
        .impersonation_url(TARGET)
        .trim_start_matches(&iam.base_url())
        .to_owned();
    let bearer = format!("Bearer {token}");
    let body =
        r#"{"scope": ["https://www.googleapis.com/auth/cloud-platform"], "lifetime": "3600s"}"#;
    let answer = request(
        iam.addr(),
        "POST",
        &path,
        &[("Authorization", &bearer)],
        body,
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = json(&answer);
    let expire = body["expireTime"].as_str().unwrap();
    assert!(
        expire.len() == 20 && expire.ends_with('Z') && expire.as_bytes()[10] == b'T',
        "{expire}"
    );
    let impersonated = body["accessToken"].as_str().unwrap();
    assert_eq!(
        iam.access_tokens().email_for(impersonated).as_deref(),
        Some(TARGET)
    );
    assert_eq!(id_token_status(&iam, impersonated).await, 200);
}

#[tokio::test]
async fn adc_files_for_impersonation_and_users() {
    let oauth = OAuthEmulator::start().await.unwrap();
    let iam = IamEmulator::builder()
        .access_tokens(oauth.access_tokens().clone())
        .start()
        .await
        .unwrap();
    let json_text = impersonated_service_account_json(
        &oauth.key_json(),
        &iam.impersonation_url(TARGET),
        &["middle@p.iam.gserviceaccount.com"],
    );
    let adc: serde_json::Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(adc["type"], "impersonated_service_account");
    assert_eq!(
        adc["service_account_impersonation_url"],
        iam.impersonation_url(TARGET)
    );
    assert_eq!(adc["source_credentials"]["type"], "service_account");
    assert_eq!(adc["source_credentials"]["token_uri"], oauth.token_uri());
    assert_eq!(adc["delegates"][0], "middle@p.iam.gserviceaccount.com");

    let user: serde_json::Value = serde_json::from_str(&oauth.authorized_user_json()).unwrap();
    assert_eq!(user["type"], "authorized_user");
    assert_eq!(
        user["refresh_token"],
        cloud_run_grpc_testkit::DEFAULT_AUTHORIZED_USER.2
    );
    let custom: serde_json::Value =
        serde_json::from_str(&authorized_user_json("id", "secret", "refresh")).unwrap();
    assert_eq!(
        (
            custom["client_id"].as_str(),
            custom["client_secret"].as_str()
        ),
        (Some("id"), Some("secret"))
    );

    let nested: serde_json::Value = serde_json::from_str(&impersonated_service_account_json(
        &oauth.authorized_user_json(),
        &iam.impersonation_url(TARGET),
        &[],
    ))
    .unwrap();
    assert_eq!(nested["source_credentials"]["type"], "authorized_user");
    assert_eq!(nested["delegates"], serde_json::json!([]));
}
