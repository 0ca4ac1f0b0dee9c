//! The OAuth token endpoint emulator and service-account key files.

mod common;

use std::time::{Duration, SystemTime};

use cloud_run_grpc_testkit::{
    CredentialsFile, DEFAULT_AUTHORIZED_USER, Fault, JWT_BEARER_GRANT, OAuthEmulator,
    ServiceAccount, Verifier, VerifyError,
};
use common::{encode, json, now, post_form, sign_assertion};

const AUD: &str = "https://bookstore.test.run.app";
const EMAIL: &str = "ci@my-project.iam.gserviceaccount.com";

async fn server() -> OAuthEmulator {
    OAuthEmulator::builder()
        .service_account(ServiceAccount::new(EMAIL))
        .start()
        .await
        .unwrap()
}

fn claims(oauth: &OAuthEmulator) -> serde_json::Value {
    let now = now();
    serde_json::json!({
        "iss": EMAIL, "sub": EMAIL, "aud": oauth.token_uri(),
        "iat": now, "exp": now + 3600, "target_audience": AUD,
    })
}

/// POSTs an assertion signed with `account`'s key.
async fn exchange(
    oauth: &OAuthEmulator,
    account: &ServiceAccount,
    claims: &serde_json::Value,
) -> common::Answer {
    let assertion = sign_assertion(
        account.private_key_pem(),
        Some(account.key_id()),
        claims,
        false,
    );
    let form = format!(
        "grant_type={}&assertion={assertion}",
        encode(JWT_BEARER_GRANT)
    );
    post_form(oauth.addr(), "/token", &form).await.unwrap()
}

fn oauth_error(answer: &common::Answer) -> (String, String) {
    assert_eq!(answer.status, 400, "{}", answer.body);
    let body = json(answer);
    (
        body["error"].as_str().unwrap().to_owned(),
        body["error_description"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn an_assertion_with_target_audience_gets_an_id_token() {
    let oauth = server().await;
    let answer = exchange(&oauth, &ServiceAccount::new(EMAIL), &claims(&oauth)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let id_token = json(&answer)["id_token"].as_str().unwrap().to_owned();
    let verified = oauth
        .verifier()
        .verify(&id_token, &[AUD], SystemTime::now())
        .unwrap();
    assert_eq!(verified.email.as_deref(), Some(EMAIL));
    assert_eq!(verified.exp - verified.iat.unwrap(), 3600);
    assert_eq!(oauth.id_token_requests(AUD), 1);
    assert_eq!((oauth.requests(), oauth.rejected()), (1, 0));
    assert_eq!(oauth.last_assertion().unwrap()["target_audience"], AUD);
}

#[tokio::test]
async fn a_gcp_auth_style_assertion_padded_and_without_kid_is_accepted() {
    let oauth = server().await;
    let account = ServiceAccount::new(EMAIL);
    let mut claims = claims(&oauth);
    claims["target_audience"] = serde_json::Value::Null;
    claims["scope"] = "https://www.googleapis.com/auth/cloud-platform".into();
    let assertion = sign_assertion(account.private_key_pem(), None, &claims, true);
    let form = format!(
        "grant_type={}&assertion={}",
        encode(JWT_BEARER_GRANT),
        encode(&assertion)
    );
    let answer = post_form(oauth.addr(), "/token", &form).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = json(&answer);
    assert_eq!(body["token_type"], "Bearer");
    assert!(body.get("id_token").is_none());
    let access_token = body["access_token"].as_str().unwrap();
    assert_eq!(
        oauth.access_tokens().email_for(access_token).as_deref(),
        Some(EMAIL)
    );
}

#[tokio::test]
async fn the_id_token_lifetime_is_configurable() {
    let oauth = server().await;
    oauth.set_token_lifetime(Duration::from_secs(120));
    let answer = exchange(&oauth, &ServiceAccount::new(EMAIL), &claims(&oauth)).await;
    let id_token = json(&answer)["id_token"].as_str().unwrap().to_owned();
    let verified = Verifier::new()
        .verify(&id_token, &[AUD], SystemTime::now())
        .unwrap();
    assert_eq!(verified.exp - verified.iat.unwrap(), 120);
}

#[tokio::test]
async fn another_key_is_an_invalid_signature() {
    let oauth = server().await;
    let answer = exchange(
        &oauth,
        &ServiceAccount::new(EMAIL).with_other_key(),
        &claims(&oauth),
    )
    .await;
    assert_eq!(
        oauth_error(&answer),
        ("invalid_grant".into(), "Invalid JWT Signature.".into())
    );
    assert_eq!(oauth.rejected(), 1);
}

#[tokio::test]
async fn a_tampered_assertion_is_an_invalid_signature() {
    let oauth = server().await;
    let account = ServiceAccount::new(EMAIL);
    let assertion = sign_assertion(account.private_key_pem(), None, &claims(&oauth), false);
    let mut parts: Vec<String> = assertion.split('.').map(str::to_owned).collect();
    let mut other = claims(&oauth);
    other["target_audience"] = "https://admin.run.app".into();
    use base64::Engine as _;
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(other.to_string());
    let form = format!(
        "grant_type={}&assertion={}",
        encode(JWT_BEARER_GRANT),
        parts.join(".")
    );
    let answer = post_form(oauth.addr(), "/token", &form).await.unwrap();
    assert_eq!(oauth_error(&answer).1, "Invalid JWT Signature.");
}

#[tokio::test]
async fn an_unknown_account_is_not_found() {
    let oauth = server().await;
    let stranger = ServiceAccount::new("stranger@p.iam.gserviceaccount.com");
    let mut claims = claims(&oauth);
    claims["iss"] = stranger.email().into();
    let (error, description) = oauth_error(&exchange(&oauth, &stranger, &claims).await);
    assert_eq!(error, "invalid_grant");
    assert!(description.contains("account not found"), "{description}");
}

#[tokio::test]
async fn the_audience_must_be_the_token_uri() {
    let oauth = server().await;
    let mut claims = claims(&oauth);
    claims["aud"] = "https://oauth2.googleapis.com/token".into();
    let (error, description) =
        oauth_error(&exchange(&oauth, &ServiceAccount::new(EMAIL), &claims).await);
    assert_eq!(error, "invalid_grant");
    assert!(description.contains(&oauth.token_uri()), "{description}");
}

#[tokio::test]
async fn iat_and_exp_must_be_a_short_span_around_now() {
    let oauth = server().await;
    let now = now();
    let spans = [
        (Some(now - 7200), Some(now - 3600)), // expired
        (Some(now), Some(now + 7200)),        // too long
        (Some(now + 3600), Some(now + 7000)), // in the future
        (Some(now), None),                    // no exp
        (None, Some(now + 3600)),             // no iat
        (Some(now), Some(now)),               // empty
    ];
    for (iat, exp) in spans {
        let mut claims = claims(&oauth);
        claims["iat"] = iat.into();
        claims["exp"] = exp.into();
        let (error, description) =
            oauth_error(&exchange(&oauth, &ServiceAccount::new(EMAIL), &claims).await);
        assert_eq!(error, "invalid_grant", "{iat:?} {exp:?}");
        assert!(description.contains("iat and exp"), "{description}");
    }
}

#[tokio::test]
async fn neither_scope_nor_target_audience_is_an_invalid_scope() {
    let oauth = server().await;
    let mut claims = claims(&oauth);
    claims.as_object_mut().unwrap().remove("target_audience");
    let (error, _) = oauth_error(&exchange(&oauth, &ServiceAccount::new(EMAIL), &claims).await);
    assert_eq!(error, "invalid_scope");
}

#[tokio::test]
async fn malformed_requests_get_oauth_errors() {
    let oauth = server().await;
    let addr = oauth.addr();
    let cases = [
        ("", "invalid_request"),
        ("grant_type=password", "unsupported_grant_type"),
        (
            &format!("grant_type={}", encode(JWT_BEARER_GRANT)) as &str,
            "invalid_request",
        ),
        (
            &format!("grant_type={}&assertion=abc", encode(JWT_BEARER_GRANT)),
            "invalid_grant",
        ),
        (
            &format!(
                "grant_type={}&assertion=e30.e30.AA",
                encode(JWT_BEARER_GRANT)
            ),
            "invalid_grant",
        ),
    ];
    for (form, expected) in cases {
        let answer = post_form(addr, "/token", form).await.unwrap();
        assert_eq!(oauth_error(&answer).0, expected, "{form}");
    }
    let get = common::get(addr, "/token", &[]).await.unwrap();
    assert_eq!(get.status, 405);
    let elsewhere = post_form(addr, "/elsewhere", "").await.unwrap();
    assert_eq!(elsewhere.status, 404);
    assert_eq!(oauth.rejected(), cases.len());
}

#[tokio::test]
async fn a_known_refresh_token_gets_an_access_token() {
    let oauth = server().await;
    let (id, secret, refresh) = DEFAULT_AUTHORIZED_USER;
    let form = format!(
        "grant_type=refresh_token&client_id={id}&client_secret={secret}&refresh_token={refresh}"
    );
    let answer = post_form(oauth.addr(), "/token", &form).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        json(&answer)["access_token"]
            .as_str()
            .unwrap()
            .starts_with("ya29.")
    );
    let wrong = format!(
        "grant_type=refresh_token&client_id={id}&client_secret=nope&refresh_token={refresh}"
    );
    let answer = post_form(oauth.addr(), "/token", &wrong).await.unwrap();
    assert_eq!(oauth_error(&answer).0, "invalid_grant");
}

#[tokio::test]
async fn injected_faults_come_first() {
    let oauth = server().await;
    let account = ServiceAccount::new(EMAIL);

    oauth.fail_with(Fault::oauth_error("invalid_grant", "Account disabled"));
    let answer = exchange(&oauth, &account, &claims(&oauth)).await;
    assert_eq!(
        oauth_error(&answer),
        ("invalid_grant".into(), "Account disabled".into())
    );

    oauth.fail_with(Fault::Html(500));
    let answer = exchange(&oauth, &account, &claims(&oauth)).await;
    assert_eq!(answer.status, 500);
    assert!(answer.body.contains("<html"));

    oauth.fail_with(Fault::MissingToken);
    let answer = exchange(&oauth, &account, &claims(&oauth)).await;
    assert_eq!(answer.status, 200);
    let body = json(&answer);
    assert!(body.get("id_token").is_none() && body.get("access_token").is_some());

    oauth.fail_with(Fault::Garbage);
    let answer = exchange(&oauth, &account, &claims(&oauth)).await;
    let id_token = json(&answer)["id_token"].as_str().unwrap().to_owned();
    assert!(matches!(
        Verifier::new().verify(&id_token, &[AUD], SystemTime::now()),
        Err(VerifyError::Malformed(_))
    ));

    oauth.fail_with(Fault::NoExp);
    let answer = exchange(&oauth, &account, &claims(&oauth)).await;
    let id_token = json(&answer)["id_token"].as_str().unwrap().to_owned();
    assert_eq!(
        Verifier::new().verify(&id_token, &[AUD], SystemTime::now()),
        Err(VerifyError::MissingExpiry)
    );

    oauth.fail_times(Fault::Status(503, "overloaded".into()), 1);
    assert_eq!(
        exchange(&oauth, &account, &claims(&oauth)).await.status,
        503
    );
    assert_eq!(
        exchange(&oauth, &account, &claims(&oauth)).await.status,
        200
    );
    assert_eq!(oauth.rejected(), 0);
}

#[tokio::test]
async fn the_key_file_points_at_the_emulator_and_holds_a_usable_key() {
    let oauth = server().await;
    let file = CredentialsFile::write(&oauth.key_json()).unwrap();
    assert!(
        file.path()
            .ends_with("application_default_credentials.json")
    );
    assert_eq!(file.path().parent(), Some(file.dir()));
    let key: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file.path()).unwrap()).unwrap();
    assert_eq!(key["type"], "service_account");
    assert_eq!(key["client_email"], EMAIL);
    assert_eq!(key["project_id"], "my-project");
    assert_eq!(key["token_uri"], oauth.token_uri());
    assert_eq!(key["private_key_id"], oauth.service_account().key_id());
    assert!(
        key["client_id"]
            .as_str()
            .unwrap()
            .chars()
            .all(|c| c.is_ascii_digit())
    );
    // The key in the file is the one the emulator checks assertions against.
    let assertion = sign_assertion(
        key["private_key"].as_str().unwrap(),
        None,
        &claims(&oauth),
        false,
    );
    let form = format!(
        "grant_type={}&assertion={assertion}",
        encode(JWT_BEARER_GRANT)
    );
    assert_eq!(
        post_form(oauth.addr(), "/token", &form)
            .await
            .unwrap()
            .status,
        200
    );

    let dir = file.dir().to_owned();
    drop(file);
    assert!(!dir.exists());
}

#[tokio::test]
async fn debug_shows_no_private_key() {
    let oauth = server().await;
    let debug = format!("{oauth:?} {:?}", oauth.service_account());
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    let file = CredentialsFile::write(&oauth.key_json()).unwrap();
    assert!(!format!("{file:?}").contains("PRIVATE KEY"));
}

#[tokio::test]
async fn tls_mode_serves_https_with_the_given_ca() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_rustls::rustls;

    let ca = cloud_run_grpc_testkit::TestCa::new().unwrap();
    let oauth = OAuthEmulator::builder()
        .service_account(ServiceAccount::new(EMAIL))
        .tls(ca.clone())
        .start()
        .await
        .unwrap();
    assert!(oauth.token_uri().starts_with("https://127.0.0.1:"));

    let mut roots = rustls::RootCertStore::empty();
    let pem = ca.certificate_pem();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    roots.add(der.into()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(oauth.addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();

    let account = ServiceAccount::new(EMAIL);
    let assertion = sign_assertion(account.private_key_pem(), None, &claims(&oauth), false);
    let form = format!(
        "grant_type={}&assertion={assertion}",
        encode(JWT_BEARER_GRANT)
    );
    let request = format!(
        "POST /token HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("id_token"));
}
