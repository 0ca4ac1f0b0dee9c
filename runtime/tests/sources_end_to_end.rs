//! Each credential source obtains an ID token that the Cloud-Run-like front end accepts, end to
//! end over TLS, with the testkit's emulators standing in for Google.

mod common;

use std::time::Duration;

use cloud_run_grpc::token::{
    IdToken, ImpersonatedServiceAccount, MetadataServer, ServiceAccountKey, StaticToken,
};
use cloud_run_grpc_testkit::{
    CredentialsFile, Issuer, MetadataEmulator, OAuthEmulator, impersonated_service_account_json,
};
use common::{AUDIENCE, TARGET, echo, front_end, impersonation_with_key_of, oauth_and_iam};

#[tokio::test]
async fn a_service_account_key_file() {
    let oauth = OAuthEmulator::start().await.unwrap();
    let front = front_end(oauth.verifier(), None).await;
    let file = CredentialsFile::write(&oauth.key_json()).unwrap();

    let key = ServiceAccountKey::from_file(file.path()).unwrap();
    assert_eq!(key.client_email(), oauth.service_account().email());
    assert_eq!(key.token_uri(), oauth.token_uri());
    assert_eq!(echo(&front, key, "key").await.unwrap(), "echo: key");

    assert_eq!(front.front().accepted(), 1);
    assert_eq!(oauth.id_token_requests(AUDIENCE), 1);
    let assertion = oauth.last_assertion().unwrap();
    let email = oauth.service_account().email();
    assert_eq!(assertion["iss"], email);
    assert_eq!(assertion["sub"], email);
    assert_eq!(assertion["aud"], oauth.token_uri().as_str());
    assert_eq!(assertion["target_audience"], AUDIENCE);
    let (iat, exp) = (
        assertion["iat"].as_u64().unwrap(),
        assertion["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, 3600);
}

#[tokio::test]
async fn a_service_account_key_string_with_another_token_uri() {
    let oauth = OAuthEmulator::start().await.unwrap();
    let front = front_end(oauth.verifier(), None).await;
    let json = oauth
        .service_account()
        .key_json("https://oauth2.googleapis.com/token");

    let key = ServiceAccountKey::from_json(&json)
        .unwrap()
        .with_token_uri(oauth.token_uri())
        .unwrap();
    assert_eq!(echo(&front, key, "json").await.unwrap(), "echo: json");
    assert_eq!(oauth.id_token_requests(AUDIENCE), 1);
}

#[tokio::test]
async fn impersonation_with_a_gcp_auth_source() {
    let (oauth, iam) = oauth_and_iam().await;
    let front = front_end(iam.verifier(), None).await;

    let source =
        impersonation_with_key_of(&oauth, &iam).delegates(["middle@p.iam.gserviceaccount.com"]);
    assert_eq!(echo(&front, source, "as").await.unwrap(), "echo: as");

    let request = iam.last_request().expect("IAM was called");
    assert_eq!(request.service_account, TARGET);
    assert_eq!(request.caller, oauth.service_account().email());
    assert_eq!(request.audience, AUDIENCE);
    assert!(request.include_email);
    assert_eq!(
        request.delegates,
        ["projects/-/serviceAccounts/middle@p.iam.gserviceaccount.com"]
    );
    assert_eq!(front.front().accepted(), 1);
}

#[tokio::test]
async fn an_impersonation_file_with_user_credentials() {
    let (oauth, iam) = oauth_and_iam().await;
    let front = front_end(iam.verifier(), None).await;
    let file = CredentialsFile::write(&impersonated_service_account_json(
        &oauth.authorized_user_json(),
        &iam.impersonation_url(TARGET),
        &[],
    ))
    .unwrap();

    // A user's refresh token is exchanged at Google's token endpoint unless told otherwise.
    let source = ImpersonatedServiceAccount::from_file(file.path())
        .unwrap()
        .with_token_uri(oauth.token_uri())
        .unwrap();
    assert_eq!(source.target(), TARGET);
    assert_eq!(source.iam_base_url(), iam.base_url());
    assert_eq!(echo(&front, source, "user").await.unwrap(), "echo: user");

    let request = iam.last_request().expect("IAM was called");
    assert_eq!(
        request.caller,
        cloud_run_grpc_testkit::DEFAULT_AUTHORIZED_USER.0
    );
    assert_eq!(request.service_account, TARGET);
}

#[tokio::test]
async fn an_impersonation_file_with_a_service_account_key() {
    let (oauth, iam) = oauth_and_iam().await;
    let front = front_end(iam.verifier(), None).await;
    let json = impersonated_service_account_json(
        &oauth.key_json(),
        &iam.impersonation_url(TARGET),
        &["middle@p.iam.gserviceaccount.com"],
    );

    let source = ImpersonatedServiceAccount::from_json(&json).unwrap();
    assert_eq!(echo(&front, source, "key").await.unwrap(), "echo: key");

    let request = iam.last_request().expect("IAM was called");
    assert_eq!(request.caller, oauth.service_account().email());
    assert_eq!(
        request.delegates,
        ["projects/-/serviceAccounts/middle@p.iam.gserviceaccount.com"]
    );
}

#[cfg(unix)]
#[tokio::test]
async fn the_gcloud_cli_as_a_service_account_asks_for_the_audience() {
    let issuer = Issuer::new();
    let front = front_end(issuer.verifier(), None).await;
    let account = "ci@p.iam.gserviceaccount.com";
    let token = issuer.mint(AUDIENCE, account, Duration::from_secs(3600));
    let dir = common::temp_dir("gcloud");
    let gcloud = common::fake_gcloud(dir.path(), account, &token);

    let source = cloud_run_grpc::token::GcloudCli::new().program(&gcloud);
    assert_eq!(echo(&front, source, "cli").await.unwrap(), "echo: cli");

    let log = std::fs::read_to_string(dir.path().join("args.log")).unwrap();
    assert!(
        log.contains(&format!("auth print-identity-token --audiences={AUDIENCE}")),
        "{log}"
    );
    assert_eq!(front.front().accepted(), 1);
}

#[cfg(unix)]
#[tokio::test]
async fn the_gcloud_cli_as_a_user_does_not_ask_for_an_audience() {
    // gcloud's own OAuth client id: the audience of user accounts' ID tokens.
    const GCLOUD_CLIENT: &str = "32555940559.apps.googleusercontent.com";
    let issuer = Issuer::new();
    let front = front_end(issuer.verifier(), Some(GCLOUD_CLIENT)).await;
    let token = issuer.mint(GCLOUD_CLIENT, "ada@example.com", Duration::from_secs(3600));
    let dir = common::temp_dir("gcloud");
    let gcloud = common::fake_gcloud(dir.path(), "ada@example.com", &token);

    let source = cloud_run_grpc::token::GcloudCli::new().program(&gcloud);
    assert_eq!(echo(&front, source, "user").await.unwrap(), "echo: user");

    let log = std::fs::read_to_string(dir.path().join("args.log")).unwrap();
    assert!(
        log.lines().any(|l| l.trim() == "auth print-identity-token"),
        "{log}"
    );
    assert!(!log.contains("--audiences"), "{log}");
}

#[tokio::test]
async fn the_metadata_server() {
    let metadata = MetadataEmulator::start().await.unwrap();
    let front = front_end(metadata.verifier(), None).await;

    let source = MetadataServer::with_host(metadata.host());
    assert_eq!(echo(&front, source, "md").await.unwrap(), "echo: md");
    assert_eq!(metadata.requests(AUDIENCE), 1);
}

#[tokio::test]
async fn a_static_token() {
    let issuer = Issuer::new();
    let front = front_end(issuer.verifier(), None).await;
    let token = issuer.mint(AUDIENCE, "minted@elsewhere", Duration::from_secs(600));

    let source = StaticToken::new(IdToken::from_jwt(token).unwrap());
    assert_eq!(echo(&front, source, "fixed").await.unwrap(), "echo: fixed");
}
