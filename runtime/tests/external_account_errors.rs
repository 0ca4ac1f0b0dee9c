//! Every bad input of workload identity federation gets its own error: the step and the
//! endpoint named, what to do, whether a retry can help, the cause kept as `source()`, and no
//! subject token, access token or secret in the message or `Debug`.

mod common;

use std::error::Error as _;
use std::time::Duration;

use cloud_run_grpc::token::{ExternalAccount, IdTokenSource, TokenError};
use cloud_run_grpc_testkit::{
    CredentialsFile, Fault, IamEmulator, StsEmulator, SubjectTokenServer,
};
use common::{AUDIENCE, TARGET, assert_no_secret};

/// A change to an `external_account` file's fields.
type Edit = Box<dyn FnOnce(&mut serde_json::Map<String, serde_json::Value>)>;

/// STS and IAM emulators, and what the tests write for them.
struct Federation {
    sts: StsEmulator,
    iam: IamEmulator,
}

impl Federation {
    async fn start() -> Federation {
        let sts = StsEmulator::start().await.unwrap();
        let iam = sts.iam_builder().start().await.unwrap();
        Federation { sts, iam }
    }

    fn json(&self, credential_source: serde_json::Value) -> String {
        self.sts.external_account_json(
            &credential_source,
            Some(&self.iam.impersonation_url(TARGET)),
        )
    }

    /// The file's JSON with `edit` applied.
    fn json_with(
        &self,
        credential_source: serde_json::Value,
        edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
    ) -> String {
        let mut json: serde_json::Value =
            serde_json::from_str(&self.json(credential_source)).unwrap();
        edit(json.as_object_mut().unwrap());
        json.to_string()
    }

    /// A source reading its subject token from a file holding `contents`.
    fn reading_subject_file(&self, contents: &str) -> (ExternalAccount, CredentialsFile) {
        let file = CredentialsFile::write_named("token", contents.as_bytes()).unwrap();
        let source =
            ExternalAccount::from_json(&self.json(serde_json::json!({ "file": file.path() })))
                .unwrap();
        (source, file)
    }
}

/// Asserts the error's message says each of `says`, that a retry helps exactly when
/// `transient`, and that neither the message nor `Debug` shows any of `secrets`, a JWT or an
/// access token (the testkit's are `ya29.…`, as Google's).
fn check(err: &TokenError, transient: bool, says: &[&str], secrets: &[&str]) {
    let shown = err.to_string();
    for part in says {
        assert!(shown.contains(part), "`{shown}`\n  does not say `{part}`");
    }
    assert_eq!(err.is_transient(), transient, "{shown}");
    for text in [&shown, &format!("{err:?}")] {
        assert_no_secret(text, secrets);
        assert!(!text.contains("eyJ"), "{text}\n  shows a JWT");
        assert!(!text.contains("ya29."), "{text}\n  shows an access token");
    }
}

#[test]
fn a_malformed_file() {
    let file = CredentialsFile::write(r#"{"type": "external_account", "audience": [}"#).unwrap();
    let err = ExternalAccount::from_file(file.path()).unwrap_err();
    assert!(matches!(err, TokenError::Credentials { .. }), "{err:?}");
    check(
        &err,
        false,
        &[
            &file.path().display().to_string(),
            "is not JSON",
            "line 1 column",
        ],
        &[],
    );
    assert!(err.source().is_some(), "the JSON error is kept");
}

#[tokio::test]
async fn a_truncated_file() {
    let federation = Federation::start().await;
    let whole = federation.json(serde_json::json!({ "file": "/var/run/token" }));
    let file = CredentialsFile::write(&whole[..whole.len() / 2]).unwrap();
    let err = ExternalAccount::from_file(file.path()).unwrap_err();
    check(&err, false, &["is not JSON", "EOF while parsing"], &[]);

    // Cut between fields, the JSON is whole but the source is missing.
    let cut = federation.json_with(serde_json::json!({}), |f| {
        f.remove("credential_source");
    });
    let err = ExternalAccount::from_json(&cut).unwrap_err();
    check(
        &err,
        false,
        &["lacks `credential_source`", "create-cred-config"],
        &[],
    );
}

#[tokio::test]
async fn a_missing_subject_token_file() {
    let federation = Federation::start().await;
    let dir = common::temp_dir("no-token");
    let path = dir.path().join("token");
    let source =
        ExternalAccount::from_json(&federation.json(serde_json::json!({ "file": path }))).unwrap();
    let err = source.fetch(AUDIENCE).await.unwrap_err();
    assert!(matches!(err, TokenError::Credentials { .. }), "{err:?}");
    check(
        &err,
        false,
        &[
            &path.display().to_string(),
            "the subject-token file, `credential_source.file` of <JSON string>",
            "does not exist",
            "ran first",
        ],
        &[],
    );
    let expected = std::fs::read(&path).unwrap_err().to_string();
    assert_eq!(
        err.source().map(|cause| cause.to_string()),
        Some(expected),
        "the I/O error is kept"
    );
    assert_eq!(federation.sts.requests(), 0, "nothing was exchanged");
}

#[tokio::test]
async fn an_empty_subject_token_file() {
    let federation = Federation::start().await;
    let (source, file) = federation.reading_subject_file(" \n");
    let err = source.fetch(AUDIENCE).await.unwrap_err();
    check(
        &err,
        false,
        &[
            &file.path().display().to_string(),
            "it is empty",
            "replace it with a fresh one",
        ],
        &[],
    );
    assert_eq!(federation.sts.requests(), 0);
}

#[tokio::test]
async fn a_subject_token_file_too_long_is_refused_not_cut() {
    let federation = Federation::start().await;
    let (source, file) = federation.reading_subject_file(&"x".repeat(1 << 20 | 1));
    let err = source.fetch(AUDIENCE).await.unwrap_err();
    check(
        &err,
        false,
        &[
            &file.path().display().to_string(),
            "longer than 1024 KiB",
            "check the path",
        ],
        &[],
    );
    assert_eq!(
        federation.sts.requests(),
        0,
        "no cut-off token was exchanged"
    );
}

#[tokio::test]
async fn a_subject_token_url_answering_500() {
    let federation = Federation::start().await;
    let idp = SubjectTokenServer::builder(&federation.sts)
        .start()
        .await
        .unwrap();
    idp.fail_with(Fault::Status(
        500,
        "upstream identity provider unavailable".into(),
    ));
    let source = ExternalAccount::from_json(&federation.json(idp.credential_source())).unwrap();
    let err = source.fetch(AUDIENCE).await.unwrap_err();
    assert!(
        matches!(err, TokenError::Status { status: 500, .. }),
        "{err:?}"
    );
    check(
        &err,
        true,
        &[
            &format!("subject-token URL {}", idp.url()),
            "answered HTTP 500",
            "upstream identity provider unavailable",
        ],
        &[],
    );
}

#[tokio::test]
async fn a_subject_token_url_refusing_its_headers() {
    let federation = Federation::start().await;
    let idp = SubjectTokenServer::builder(&federation.sts)
        .require_header("authorization", "Bearer the-right-one")
        .start()
        .await
        .unwrap();
    let mut credential_source = idp.credential_source();
    credential_source["headers"]["authorization"] = "Bearer hush-wrong-request-token".into();
    let source = ExternalAccount::from_json(&federation.json(credential_source)).unwrap();
    let err = source.fetch(AUDIENCE).await.unwrap_err();
    check(
        &err,
        false,
        &["answered HTTP 401", "check the `headers`"],
        &["hush-wrong-request-token"],
    );
}

#[tokio::test]
async fn a_subject_token_url_answering_garbage() {
    let federation = Federation::start().await;
    let text = SubjectTokenServer::builder(&federation.sts)
        .start()
        .await
        .unwrap();
    text.fail_with(Fault::Garbage);
    let source = ExternalAccount::from_json(&federation.json(text.credential_source())).unwrap();
    let err = source.fetch(AUDIENCE).await.unwrap_err();
    assert!(matches!(err, TokenError::BadResponse { .. }), "{err:?}");
    check(&err, true, &["subject-token URL", "not UTF-8 text"], &[]);

    let json = SubjectTokenServer::builder(&federation.sts)
        .json_field("value")
        .start()
        .await
        .unwrap();
    json.fail_with(Fault::Garbage);
    let source = ExternalAccount::from_json(&federation.json(json.credential_source())).unwrap();
    let err = source.fetch(AUDIENCE).await.unwrap_err();
    check(&err, true, &["is not JSON", "`json`"], &[]);
    json.fail_with(Fault::MissingToken);
    let err = source.fetch(AUDIENCE).await.unwrap_err();
    check(&err, true, &["no `value`", "it is an empty object"], &[]);
    json.fail_with(Fault::Html(200));
    let err = source.fetch(AUDIENCE).await.unwrap_err();
    check(
        &err,
        true,
        &["an HTML page (HTTP 200", "no proxy answers"],
        &[],
    );
    assert_eq!(federation.sts.requests(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_subject_token_url_that_never_answers_is_given_up_on() {
    let federation = Federation::start().await;
    let idp = SubjectTokenServer::builder(&federation.sts)
        .start()
        .await
        .unwrap();
    idp.fail_with(Fault::Hang);
    let source = ExternalAccount::from_json(&federation.json(idp.credential_source()))
        .unwrap()
        .timeout(Duration::from_secs(3));
    let started = tokio::time::Instant::now();
    let err = source.fetch(AUDIENCE).await.unwrap_err();
    assert!(
        matches!(err, TokenError::Timeout { after, .. } if after == Duration::from_secs(3)),
        "{err:?}"
    );
    assert!(started.elapsed() >= Duration::from_secs(3));
    check(
        &err,
        true,
        &["subject-token URL", "did not answer within 3s"],
        &[],
    );
}

#[tokio::test]
async fn sts_refusing_the_subject_token() {
    let federation = Federation::start().await;
    let expired = federation
        .sts
        .subject_token_with(&serde_json::json!({ "exp": 1 }));
    let (source, file) = federation.reading_subject_file(&expired);
    let err = source.fetch(AUDIENCE).await.unwrap_err();
    assert!(
        matches!(err, TokenError::Status { status: 400, .. }),
        "{err:?}"
    );
    check(
        &err,
        false,
        &[
            &format!("STS token exchange at {}", federation.sts.token_url()),
            "invalid_grant: ID Token expired at 1",
            &format!(
                "STS refused the subject token from the file {}",
                file.path().display()
            ),
            "renew it before it expires",
        ],
        &[&expired],
    );
    assert_eq!(federation.iam.requests(), 0);
}

#[tokio::test]
async fn sts_refusing_the_audience() {
    let federation = Federation::start().await;
    let (_, file) = federation.reading_subject_file(&federation.sts.subject_token());
    let json = federation.json_with(serde_json::json!({ "file": file.path() }), |f| {
        f.insert(
            "audience".into(),
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/gone/providers/gone".into(),
        );
    });
    let err = ExternalAccount::from_json(&json)
        .unwrap()
        .fetch(AUDIENCE)
        .await
        .unwrap_err();
    check(
        &err,
        false,
        &[
            "invalid_target",
            "does not exist or is disabled",
            "gcloud iam workload-identity-pools create-cred-config projects/1/locations/global/workloadIdentityPools/gone/providers/gone --service-account=invoker@target-project.iam.gserviceaccount.com",
        ],
        &[],
    );
}

#[tokio::test]
async fn sts_failing_or_answering_garbage() {
    let federation = Federation::start().await;
    let subject = federation.sts.subject_token();
    let (source, _file) = federation.reading_subject_file(&subject);
    for (fault, transient, says) in [
        (Fault::Html(503), true, "an HTML page (HTTP 503"),
        (Fault::Status(500, "{}".into()), true, "answered HTTP 500"),
        (Fault::Garbage, true, "the answer is not JSON"),
        (Fault::MissingToken, true, "no `access_token`"),
        (Fault::NoExp, true, "no `expires_in`"),
    ] {
        federation.sts.fail_times(fault, 1);
        let err = source.fetch(AUDIENCE).await.unwrap_err();
        check(
            &err,
            transient,
            &["STS token exchange at", says],
            &[&subject],
        );
    }
    assert_eq!(federation.iam.requests(), 0);
    source.fetch(AUDIENCE).await.unwrap();
}

#[tokio::test]
async fn sts_unreachable() {
    let federation = Federation::start().await;
    let (source, _file) = federation.reading_subject_file(&federation.sts.subject_token());
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let source = source
        .with_token_url(format!("http://{closed}/v1/token"))
        .unwrap();
    let err = source.fetch(AUDIENCE).await.unwrap_err();
    assert!(matches!(err, TokenError::Unreachable { .. }), "{err:?}");
    check(&err, true, &["cannot reach the STS token exchange at"], &[]);
    assert!(err.source().is_some(), "the connection error is kept");
}

#[tokio::test]
async fn iam_refusing_to_mint_for_the_service_account() {
    let federation = Federation::start().await;
    let (source, _file) = federation.reading_subject_file(&federation.sts.subject_token());
    federation.iam.fail_with(Fault::permission_denied());
    let err = source.fetch(AUDIENCE).await.unwrap_err();
    assert!(
        matches!(err, TokenError::Status { status: 403, .. }),
        "{err:?}"
    );
    check(
        &err,
        false,
        &[
            &format!("IAM Credentials at {}", federation.iam.base_url()),
            &format!("generateIdToken for {TARGET}"),
            "PERMISSION_DENIED: Permission 'iam.serviceAccounts.getOpenIdToken' denied",
            &format!(
                "gcloud iam service-accounts add-iam-policy-binding {TARGET} \
                 --role=roles/iam.serviceAccountOpenIdTokenCreator \
                 --member='principalSet://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/testkit-pool/*'"
            ),
        ],
        &[],
    );
    assert_eq!(federation.sts.requests(), 1);
}

#[tokio::test]
async fn endpoints_off_google_or_in_plaintext() {
    let federation = Federation::start().await;
    let source = serde_json::json!({ "file": "/var/run/token" });
    let refused = |edit: Edit| {
        ExternalAccount::from_json(&federation.json_with(source.clone(), edit)).unwrap_err()
    };
    let err = refused(Box::new(|f| {
        f.insert(
            "token_url".into(),
            "https://sts.evil.example/v1/token".into(),
        );
    }));
    check(
        &err,
        false,
        &[
            "its `token_url` `https://sts.evil.example/v1/token` is refused",
            "only to Google's endpoints",
        ],
        &[],
    );
    let err = refused(Box::new(|f| {
        f.insert(
            "token_url".into(),
            "http://sts.googleapis.com/v1/token".into(),
        );
    }));
    check(&err, false, &["plaintext", "loopback"], &[]);
    let err = refused(Box::new(|f| {
        f.insert(
            "service_account_impersonation_url".into(),
            format!("https://iam.evil.example/v1/projects/-/serviceAccounts/{TARGET}:generateAccessToken").into(),
        );
    }));
    check(
        &err,
        false,
        &["`service_account_impersonation_url`", "iam.evil.example"],
        &[],
    );
    let err = refused(Box::new(|f| {
        f.insert(
            "credential_source".into(),
            serde_json::json!({ "url": "http://10.0.0.7/token" }),
        );
    }));
    check(
        &err,
        false,
        &["its `url` `http://10.0.0.7/token` is refused", "plaintext"],
        &[],
    );

    // In code, any https endpoint may be chosen, never plaintext off loopback.
    let (source, _file) = federation.reading_subject_file("unused");
    let err = source
        .with_token_url("http://sts.example.com/v1/token")
        .unwrap_err();
    check(&err, false, &["plaintext"], &[]);
}

#[test]
fn a_file_without_impersonation_gets_the_command_that_fixes_it() {
    let json = serde_json::json!({
        "type": "external_account",
        "audience": "//iam.googleapis.com/projects/42/locations/global/workloadIdentityPools/ci/providers/gh",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": "https://sts.googleapis.com/v1/token",
        "credential_source": { "file": "/var/run/secrets/token" },
    });
    let file = CredentialsFile::write(&json.to_string()).unwrap();
    let err = ExternalAccount::from_file(file.path()).unwrap_err();
    check(
        &err,
        false,
        &[
            "it has no `service_account_impersonation_url`",
            "Google mints only for a service account",
            &format!(
                "gcloud iam workload-identity-pools create-cred-config \
                 projects/42/locations/global/workloadIdentityPools/ci/providers/gh \
                 --service-account=SA_EMAIL --credential-source-file=/var/run/secrets/token \
                 --output-file={}",
                file.path().display()
            ),
            "--role=roles/iam.serviceAccountOpenIdTokenCreator",
        ],
        &[],
    );
}

#[tokio::test]
async fn aws_credentials_are_named_and_refused() {
    let federation = Federation::start().await;
    let json = federation.json(serde_json::json!({
        "environment_id": "aws1",
        "region_url": "http://169.254.169.254/latest/meta-data/placement/availability-zone",
        "url": "http://169.254.169.254/latest/meta-data/iam/security-credentials",
        "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
    }));
    let err = ExternalAccount::from_json(&json).unwrap_err();
    check(
        &err,
        false,
        &[
            "`environment_id` is `aws1`",
            "AWS credentials",
            "not supported",
            "OIDC provider",
        ],
        &[],
    );
}

#[tokio::test]
async fn a_file_of_the_other_kind_names_the_source_that_reads_it() {
    let federation = Federation::start().await;
    let external = federation.json(serde_json::json!({ "file": "/var/run/token" }));
    let err = cloud_run_grpc::token::ServiceAccountKey::from_json(&external).unwrap_err();
    check(
        &err,
        false,
        &[
            "holds `external_account` credentials, but a service-account key",
            "read it with `ExternalAccount`",
        ],
        &[],
    );
    let key = cloud_run_grpc_testkit::ServiceAccount::new("ci@p.iam.gserviceaccount.com");
    let err = ExternalAccount::from_json(&key.key_json("https://oauth2.googleapis.com/token"))
        .unwrap_err();
    check(
        &err,
        false,
        &["holds `service_account` credentials, but an `external_account` file"],
        &[key.private_key_pem()],
    );
}
