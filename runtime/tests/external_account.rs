//! Workload identity federation end to end over real sockets: an `external_account` file's
//! subject token (from a file or a URL) is exchanged at the STS emulator, the IAM emulator
//! mints the ID token, and the Cloud-Run-like front end lets the call through.

mod common;

use std::time::Duration;

use cloud_run_grpc::token::{ExternalAccount, IdTokenSource, TokenError};
use cloud_run_grpc_testkit::{
    ACCESS_TOKEN_TYPE, CloudRun, CredentialsFile, DEFAULT_SUBJECT, Fault, IamEmulator,
    JWT_TOKEN_TYPE, StsEmulator, SubjectTokenServer, TOKEN_EXCHANGE_GRANT,
};
use common::{AUDIENCE, TARGET, echo, front_end};

const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// STS, IAM sharing its access tokens, and the emulated Cloud Run trusting IAM's ID tokens.
struct Federation {
    sts: StsEmulator,
    iam: IamEmulator,
    front: CloudRun,
}

impl Federation {
    async fn start() -> Federation {
        Federation::with(StsEmulator::builder()).await
    }

    async fn with(sts: cloud_run_grpc_testkit::StsEmulatorBuilder) -> Federation {
        let sts = sts.start().await.unwrap();
        let iam = sts.iam_builder().start().await.unwrap();
        let front = front_end(iam.verifier(), None).await;
        Federation { sts, iam, front }
    }

    /// The `external_account` file for `credential_source`, impersonating [`TARGET`].
    fn file(&self, credential_source: serde_json::Value) -> CredentialsFile {
        let json = self.sts.external_account_json(
            &credential_source,
            Some(&self.iam.impersonation_url(TARGET)),
        );
        CredentialsFile::write(&json).unwrap()
    }

    /// A subject-token file holding `contents`.
    fn subject_file(&self, contents: &str) -> CredentialsFile {
        CredentialsFile::write_named("token", contents.as_bytes()).unwrap()
    }

    /// Checks what STS and IAM were asked, as Google's services would see it.
    fn assert_exchanged_and_minted(&self) {
        let exchange = self.sts.last_request().expect("STS was asked");
        assert_eq!(exchange.grant_type, TOKEN_EXCHANGE_GRANT);
        assert_eq!(exchange.audience, self.sts.audience());
        assert_eq!(exchange.scope, CLOUD_PLATFORM);
        assert_eq!(exchange.requested_token_type, ACCESS_TOKEN_TYPE);
        assert_eq!(exchange.subject_token_type, JWT_TOKEN_TYPE);
        assert_eq!(exchange.subject.as_deref(), Some(DEFAULT_SUBJECT));
        assert_eq!(exchange.options, None);
        let minted = self.iam.last_request().expect("IAM was asked");
        assert_eq!(minted.service_account, TARGET);
        assert_eq!(minted.caller, self.sts.principal(DEFAULT_SUBJECT));
        assert_eq!(minted.audience, AUDIENCE);
        assert!(minted.include_email);
    }
}

#[tokio::test]
async fn a_subject_token_file_as_text() {
    let federation = Federation::start().await;
    let token = federation.subject_file(&format!("{}\n", federation.sts.subject_token()));
    let adc = federation.file(serde_json::json!({ "file": token.path() }));

    let source = ExternalAccount::from_file(adc.path()).unwrap();
    assert_eq!(source.target(), TARGET);
    assert_eq!(source.token_url(), federation.sts.token_url());
    assert_eq!(source.iam_base_url(), federation.iam.base_url());
    assert_eq!(
        echo(&federation.front, source, "wif").await.unwrap(),
        "echo: wif"
    );

    federation.assert_exchanged_and_minted();
    assert_eq!(federation.front.front().accepted(), 1);
    assert_eq!(
        (federation.sts.requests(), federation.iam.requests()),
        (1, 1)
    );
}

#[tokio::test]
async fn a_subject_token_file_as_json() {
    let federation = Federation::start().await;
    let token = federation.subject_file(
        &serde_json::json!({ "id_token": federation.sts.subject_token(), "other": 1 }).to_string(),
    );
    let adc = federation.file(serde_json::json!({
        "file": token.path(),
        "format": { "type": "json", "subject_token_field_name": "id_token" },
    }));

    let source = ExternalAccount::from_file(adc.path()).unwrap();
    assert_eq!(
        echo(&federation.front, source, "json").await.unwrap(),
        "echo: json"
    );
    federation.assert_exchanged_and_minted();
}

#[tokio::test]
async fn a_subject_token_url_with_headers_answering_json() {
    let federation = Federation::start().await;
    let idp = SubjectTokenServer::builder(&federation.sts)
        .json_field("value")
        .require_header("Authorization", "Bearer request-token")
        .start()
        .await
        .unwrap();
    let adc = federation.file(idp.credential_source());

    let source = ExternalAccount::from_file(adc.path()).unwrap();
    assert!(
        source.name().contains(&format!("URL {}", idp.url())),
        "{}",
        source.name()
    );
    assert_eq!(
        echo(&federation.front, source, "url").await.unwrap(),
        "echo: url"
    );
    federation.assert_exchanged_and_minted();
    assert_eq!((idp.requests(), idp.rejected()), (1, 0));
}

#[tokio::test]
async fn a_subject_token_url_answering_text() {
    let federation = Federation::start().await;
    let idp = SubjectTokenServer::builder(&federation.sts)
        .start()
        .await
        .unwrap();
    let adc = federation.file(idp.credential_source());

    let source = ExternalAccount::from_json(adc.json()).unwrap();
    assert_eq!(
        echo(&federation.front, source, "text").await.unwrap(),
        "echo: text"
    );
    federation.assert_exchanged_and_minted();
    assert_eq!(idp.requests(), 1);
}

#[tokio::test]
async fn the_federated_token_is_reused_until_a_minute_before_it_expires() {
    let federation = Federation::start().await;
    let idp = SubjectTokenServer::builder(&federation.sts)
        .start()
        .await
        .unwrap();
    let source = ExternalAccount::from_json(&federation.sts.external_account_json(
        &idp.credential_source(),
        Some(&federation.iam.impersonation_url(TARGET)),
    ))
    .unwrap();
    let counts = || {
        (
            idp.requests(),
            federation.sts.requests(),
            federation.iam.requests(),
        )
    };

    source.fetch(AUDIENCE).await.unwrap();
    assert_eq!(counts(), (1, 1, 1));
    source
        .fetch("https://another-audience.run.app")
        .await
        .unwrap();
    assert_eq!(counts(), (1, 1, 2), "the federated token is reused");

    // The exchanged token lives an hour: reused at 58m20s, exchanged anew at 59m.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(3500)).await;
    tokio::time::resume();
    source.fetch(AUDIENCE).await.unwrap();
    assert_eq!(counts(), (1, 1, 3));
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(40)).await;
    tokio::time::resume();
    source.fetch(AUDIENCE).await.unwrap();
    assert_eq!(counts(), (2, 2, 4), "a new subject token, a new exchange");
}

#[tokio::test]
async fn a_federated_token_iam_refuses_is_not_sent_again() {
    let federation = Federation::start().await;
    let token = federation.subject_file(&federation.sts.subject_token());
    let adc = federation.file(serde_json::json!({ "file": token.path() }));
    let source = ExternalAccount::from_file(adc.path()).unwrap();

    federation.iam.fail_times(
        Fault::google_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
        ),
        1,
    );
    let err = source.fetch(AUDIENCE).await.unwrap_err();
    assert!(
        matches!(err, TokenError::Status { status: 401, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("the next attempt exchanges a new one"),
        "{err}"
    );
    assert_eq!(federation.sts.requests(), 1);

    source.fetch(AUDIENCE).await.unwrap();
    assert_eq!(
        federation.sts.requests(),
        2,
        "exchanged again instead of resending"
    );
    assert_eq!(federation.iam.requests(), 2);
}

#[tokio::test]
async fn a_workforce_pool_sends_its_user_project_unless_it_has_a_client() {
    let audience = "//iam.googleapis.com/locations/global/workforcePools/staff/providers/okta";
    let federation = Federation::with(StsEmulator::builder().audience(audience)).await;
    let token = federation.subject_file(&federation.sts.subject_token());
    let mut json: serde_json::Value = serde_json::from_str(&federation.sts.external_account_json(
        &serde_json::json!({ "file": token.path() }),
        Some(&federation.iam.impersonation_url(TARGET)),
    ))
    .unwrap();
    json["workforce_pool_user_project"] = "billing-project".into();

    let source = ExternalAccount::from_json(&json.to_string()).unwrap();
    assert_eq!(
        echo(&federation.front, source, "staff").await.unwrap(),
        "echo: staff"
    );
    let exchange = federation.sts.last_request().unwrap();
    assert_eq!(
        exchange.options,
        Some(serde_json::json!({ "userProject": "billing-project" }))
    );
    assert_eq!(exchange.client_id, None);

    json["client_id"] = "workforce-client".into();
    json["client_secret"] = "workforce-secret".into();
    let source = ExternalAccount::from_json(&json.to_string()).unwrap();
    source.fetch(AUDIENCE).await.unwrap();
    let exchange = federation.sts.last_request().unwrap();
    assert_eq!(exchange.client_id.as_deref(), Some("workforce-client"));
    assert_eq!(exchange.options, None, "a client authenticates instead");
}
