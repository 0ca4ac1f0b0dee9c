//! The STS emulator and the subject-token server, spoken to with a raw HTTP client: what they
//! accept, how they refuse (Google's shapes), their faults and counters.

mod common;

use std::time::{Duration, Instant};

use cloud_run_grpc_testkit::{
    ACCESS_TOKEN_TYPE, DEFAULT_POOL_AUDIENCE, DEFAULT_SUBJECT, Fault, JWT_TOKEN_TYPE,
    STS_TOKEN_PATH, StsEmulator, SubjectTokenServer, TOKEN_EXCHANGE_GRANT,
};
use common::{Answer, encode, get, json, post_form, request};

const TARGET: &str = "invoker@my-project.iam.gserviceaccount.com";
const AUD: &str = "https://bookstore.test.run.app";

/// A change to an exchange form's fields.
type Edit = Box<dyn FnOnce(&mut Vec<(&str, String)>)>;

/// A complete, valid exchange form for `subject_token`, with `edit` applied to its fields.
fn form(
    sts: &StsEmulator,
    subject_token: &str,
    edit: impl FnOnce(&mut Vec<(&str, String)>),
) -> String {
    let mut fields = vec![
        ("grant_type", TOKEN_EXCHANGE_GRANT.to_owned()),
        ("audience", sts.audience().to_owned()),
        (
            "scope",
            "https://www.googleapis.com/auth/cloud-platform".to_owned(),
        ),
        ("requested_token_type", ACCESS_TOKEN_TYPE.to_owned()),
        ("subject_token_type", JWT_TOKEN_TYPE.to_owned()),
        ("subject_token", subject_token.to_owned()),
    ];
    edit(&mut fields);
    fields
        .iter()
        .map(|(name, value)| format!("{name}={}", encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

async fn exchange(sts: &StsEmulator, form: &str) -> Answer {
    post_form(sts.addr(), STS_TOKEN_PATH, form).await.unwrap()
}

fn refusal(answer: &Answer) -> (String, String) {
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(
        answer
            .header("content-type")
            .unwrap()
            .starts_with("application/json"),
        "{answer:?}"
    );
    let body = json(answer);
    (
        body["error"].as_str().unwrap().to_owned(),
        body["error_description"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn a_valid_exchange_answers_like_google_and_iam_takes_the_token() {
    let sts = StsEmulator::start().await.unwrap();
    let iam = sts.iam_builder().start().await.unwrap();
    let answer = exchange(&sts, &form(&sts, &sts.subject_token(), |_| {})).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = json(&answer);
    assert_eq!(body["issued_token_type"], ACCESS_TOKEN_TYPE);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let access_token = body["access_token"].as_str().unwrap();

    let request_of = sts.last_request().unwrap();
    assert_eq!(request_of.grant_type, TOKEN_EXCHANGE_GRANT);
    assert_eq!(request_of.audience, DEFAULT_POOL_AUDIENCE);
    assert_eq!(request_of.subject.as_deref(), Some(DEFAULT_SUBJECT));
    assert_eq!((sts.requests(), sts.rejected()), (1, 0));

    // The federated token authorises IAM's generateIdToken, as the federated principal.
    let path = iam
        .generate_id_token_url(TARGET)
        .trim_start_matches(&iam.base_url())
        .to_owned();
    let bearer = format!("Bearer {access_token}");
    let minted = request(
        iam.addr(),
        "POST",
        &path,
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        &serde_json::json!({"audience": AUD, "includeEmail": true}).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(minted.status, 200, "{}", minted.body);
    let caller = iam.last_request().unwrap().caller;
    assert_eq!(caller, sts.principal(DEFAULT_SUBJECT));
    assert!(caller.starts_with("principal://iam.googleapis.com/projects/123456789012/"));
}

#[tokio::test]
async fn each_wrong_field_gets_its_own_refusal() {
    let sts = StsEmulator::start().await.unwrap();
    let token = sts.subject_token();
    let cases: Vec<(&str, Edit, &str, &str)> = vec![
        (
            "grant type",
            Box::new(|f| f[0].1 = "client_credentials".into()),
            "unsupported_grant_type",
            "client_credentials",
        ),
        (
            "requested token type",
            Box::new(|f| f[3].1 = "urn:ietf:params:oauth:token-type:id_token".into()),
            "invalid_request",
            "requested_token_type",
        ),
        (
            "audience not a resource name",
            Box::new(|f| f[1].1 = "https://iam.googleapis.com/projects/1/x".into()),
            "invalid_request",
            "full resource name of the Identity Provider",
        ),
        (
            "audience of another provider",
            Box::new(|f| {
                f[1].1 = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/other".into()
            }),
            "invalid_target",
            "pool or provider is disabled or deleted",
        ),
        (
            "subject token type",
            Box::new(|f| f[4].1 = "urn:ietf:params:oauth:token-type:saml2".into()),
            "invalid_request",
            "subject_token_type",
        ),
        (
            "no subject token",
            Box::new(|f| f[5].1 = String::new()),
            "invalid_request",
            "subject_token",
        ),
    ];
    for (case, edit, error, says) in cases {
        let (got, description) = refusal(&exchange(&sts, &form(&sts, &token, edit)).await);
        assert_eq!(got, error, "{case}: {description}");
        assert!(description.contains(says), "{case}: {description}");
    }
    assert_eq!(sts.rejected(), 6);
}

#[tokio::test]
async fn subject_tokens_are_verified_as_an_oidc_provider_would() {
    let sts = StsEmulator::start().await.unwrap();
    let google_token = cloud_run_grpc_testkit::Issuer::new().mint(
        sts.subject_token_audience(),
        "a@b",
        Duration::from_secs(600),
    );
    for (token, says) in [
        ("not.a.jwt".to_owned(), "Unable to parse the ID Token."),
        (google_token, "Invalid ID Token signature."),
        (
            sts.subject_token_with(&serde_json::json!({"aud": "https://elsewhere"})),
            "The audience in ID Token [https://elsewhere] does not match the expected audience https://iam.googleapis.com/projects/123456789012/",
        ),
        (
            sts.subject_token_with(&serde_json::json!({"exp": 1})),
            "ID Token expired at 1",
        ),
        (
            sts.subject_token_with(&serde_json::json!({"iss": "https://other-idp"})),
            "The issuer in ID Token https://other-idp",
        ),
        (
            sts.subject_token_with(&serde_json::json!({"exp": null})),
            "no expiry",
        ),
    ] {
        let (error, description) = refusal(&exchange(&sts, &form(&sts, &token, |_| {})).await);
        assert_eq!(error, "invalid_grant", "{description}");
        assert!(description.contains(says), "{description}");
    }
    let other = sts.subject_token_with(&serde_json::json!({"sub": "system:serviceaccount:ns:app"}));
    let answer = exchange(&sts, &form(&sts, &other, |_| {})).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let token = json(&answer)["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        sts.access_tokens().email_for(&token),
        Some(sts.principal("system:serviceaccount:ns:app"))
    );
}

#[tokio::test]
async fn workforce_options_and_client_credentials_are_recorded() {
    let sts = StsEmulator::start().await.unwrap();
    let with_options = form(&sts, &sts.subject_token(), |f| {
        f.push(("options", r#"{"userProject":"my-project"}"#.to_owned()));
    });
    let answer = request(
        sts.addr(),
        "POST",
        STS_TOKEN_PATH,
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            // base64("client-1:secret")
            ("Authorization", "Basic Y2xpZW50LTE6c2VjcmV0"),
        ],
        &with_options,
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let seen = sts.last_request().unwrap();
    assert_eq!(
        seen.options,
        Some(serde_json::json!({"userProject": "my-project"}))
    );
    assert_eq!(seen.client_id.as_deref(), Some("client-1"));
}

#[tokio::test]
async fn lifetime_faults_and_paths() {
    let sts = StsEmulator::builder()
        .access_token_lifetime(Duration::from_secs(5))
        .start()
        .await
        .unwrap();
    let valid = form(&sts, &sts.subject_token(), |_| {});
    assert_eq!(json(&exchange(&sts, &valid).await)["expires_in"], 5);
    sts.set_access_token_lifetime(Duration::from_secs(120));
    assert_eq!(json(&exchange(&sts, &valid).await)["expires_in"], 120);

    sts.fail_times(Fault::oauth_error("invalid_grant", "injected"), 1);
    assert_eq!(
        refusal(&exchange(&sts, &valid).await),
        ("invalid_grant".to_owned(), "injected".to_owned())
    );
    sts.fail_times(Fault::Garbage, 1);
    let garbage = exchange(&sts, &valid).await;
    assert_eq!(garbage.status, 200);
    assert!(serde_json::from_str::<serde_json::Value>(&garbage.body).is_err());
    sts.fail_times(Fault::MissingToken, 1);
    assert!(
        json(&exchange(&sts, &valid).await)
            .get("access_token")
            .is_none()
    );
    sts.fail_times(Fault::NoExp, 1);
    let no_exp = json(&exchange(&sts, &valid).await);
    assert!(no_exp.get("access_token").is_some() && no_exp.get("expires_in").is_none());
    sts.fail_times(Fault::Html(503), 1);
    let html = exchange(&sts, &valid).await;
    assert_eq!(html.status, 503);
    assert!(
        html.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(exchange(&sts, &valid).await.status, 200, "healed by itself");
    assert_eq!(sts.rejected(), 0, "injected faults are not refusals");
    assert_eq!(sts.requests(), 8);

    let wrong_path = post_form(sts.addr(), "/v1/oauthtoken", &valid)
        .await
        .unwrap();
    assert_eq!(wrong_path.status, 404);
    assert!(wrong_path.body.contains("Error 404 (Not Found)"));
}

#[tokio::test]
async fn the_subject_token_server_mints_tokens_sts_accepts() {
    let sts = StsEmulator::start().await.unwrap();
    let text = SubjectTokenServer::builder(&sts).start().await.unwrap();
    let path = "/token";
    let answer = get(text.addr(), path, &[]).await.unwrap();
    assert_eq!(answer.status, 200);
    let token = answer.body.clone();
    assert!(token.starts_with("eyJ"), "{token}");
    assert_eq!(
        exchange(&sts, &form(&sts, &token, |_| {})).await.status,
        200
    );
    // Each request mints a new token.
    assert_ne!(get(text.addr(), path, &[]).await.unwrap().body, token);
    assert_eq!(text.requests(), 2);
    assert_eq!(
        text.credential_source(),
        serde_json::json!({"url": text.url()})
    );

    let json_server = SubjectTokenServer::builder(&sts)
        .json_field("value")
        .require_header("Authorization", "Bearer request-token")
        .start()
        .await
        .unwrap();
    let refused = get(json_server.addr(), path, &[]).await.unwrap();
    assert_eq!(refused.status, 401);
    assert_eq!(json_server.rejected(), 1);
    let answer = get(
        json_server.addr(),
        path,
        &[("Authorization", "Bearer request-token")],
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let token = json(&answer)["value"].as_str().unwrap().to_owned();
    assert_eq!(
        exchange(&sts, &form(&sts, &token, |_| {})).await.status,
        200
    );
    assert_eq!(
        json_server.credential_source(),
        serde_json::json!({
            "url": json_server.url(),
            "headers": {"authorization": "Bearer request-token"},
            "format": {"type": "json", "subject_token_field_name": "value"},
        })
    );

    json_server.set_claims(serde_json::json!({"sub": "someone-else"}));
    let answer = get(
        json_server.addr(),
        path,
        &[("Authorization", "Bearer request-token")],
    )
    .await
    .unwrap();
    let token = json(&answer)["value"].as_str().unwrap().to_owned();
    exchange(&sts, &form(&sts, &token, |_| {})).await;
    assert_eq!(
        sts.last_request().unwrap().subject.as_deref(),
        Some("someone-else")
    );
}

#[tokio::test]
async fn the_subject_token_server_fails_on_demand() {
    let sts = StsEmulator::start().await.unwrap();
    let server = SubjectTokenServer::builder(&sts).start().await.unwrap();
    server.fail_times(Fault::Status(500, "boom".into()), 1);
    assert_eq!(get(server.addr(), "/token", &[]).await.unwrap().status, 500);
    server.fail_times(Fault::MissingToken, 1);
    assert_eq!(get(server.addr(), "/token", &[]).await.unwrap().body, "");
    server.fail_times(Fault::NoExp, 1);
    let no_exp = get(server.addr(), "/token", &[]).await.unwrap().body;
    let (error, description) = refusal(&exchange(&sts, &form(&sts, &no_exp, |_| {})).await);
    assert_eq!(error, "invalid_grant");
    assert!(description.contains("no expiry"), "{description}");
    server.set_latency(Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(get(server.addr(), "/token", &[]).await.unwrap().status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}
