//! Every bad input gets its own error: the right variant, a message that says what to do, no
//! panic, and no secret (private key, assertion, token) in the message or `Debug`.

mod common;

use std::collections::HashSet;

use cloud_run_grpc::token::{
    GcloudCli, IdTokenSource, ImpersonatedServiceAccount, JwtError, ServiceAccountKey, TokenError,
};
use cloud_run_grpc_testkit::{
    CredentialsFile, Fault, IamEmulator, OAuthEmulator, ServiceAccount,
    impersonated_service_account_json,
};
use common::{AUDIENCE, TARGET, assert_no_secret, impersonation_with_key_of, oauth_and_iam};

const EMAIL: &str = "ci@my-project.iam.gserviceaccount.com";

fn account() -> ServiceAccount {
    ServiceAccount::new(EMAIL)
}

/// The key file's JSON with `edit` applied.
fn key_json_with(edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) -> String {
    let mut json: serde_json::Value =
        serde_json::from_str(&account().key_json("https://oauth2.googleapis.com/token")).unwrap();
    edit(json.as_object_mut().unwrap());
    json.to_string()
}

/// Asserts that the error is `Credentials` for `path`, that its reason contains each of
/// `says`, and that neither its message nor its `Debug` shows the private key.
fn assert_credentials_error(err: &TokenError, path: &str, says: &[&str]) -> String {
    let TokenError::Credentials {
        path: shown,
        reason,
        ..
    } = err
    else {
        panic!("expected TokenError::Credentials, got {err:?}");
    };
    assert_eq!(shown, path);
    for part in says {
        assert!(reason.contains(part), "`{reason}` does not say `{part}`");
    }
    assert_no_secret(&err.to_string(), &[account().private_key_pem()]);
    assert_no_secret(&format!("{err:?}"), &[account().private_key_pem()]);
    reason.clone()
}

/// Asserts that no assertion or token (base64url JSON starting `{"`, i.e. `eyJ`) shows.
fn assert_no_jwt(err: &TokenError) {
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains("eyJ"), "{shown}\n  shows a JWT");
        assert!(!shown.contains("ya29."), "{shown}\n  shows an access token");
    }
}

#[test]
fn a_missing_file() {
    let dir = common::temp_dir("missing");
    let path = dir.path().join("nope.json");
    let err = ServiceAccountKey::from_file(&path).unwrap_err();
    assert_credentials_error(
        &err,
        &path.display().to_string(),
        &[
            "does not exist",
            "check the path",
            "gcloud iam service-accounts keys create",
        ],
    );
}

#[test]
fn an_unreadable_file() {
    // A directory cannot be read as a file, even by root.
    let dir = common::temp_dir("unreadable");
    let err = ServiceAccountKey::from_file(dir.path()).unwrap_err();
    assert_credentials_error(
        &err,
        &dir.path().display().to_string(),
        &["is a directory", "give the path of the JSON file"],
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.path().join("key.json");
        std::fs::write(
            &path,
            account().key_json("https://oauth2.googleapis.com/token"),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
        // Root reads it anyway; the permission case can only be seen as another user.
        if std::fs::read(&path).is_err() {
            let err = ServiceAccountKey::from_file(&path).unwrap_err();
            assert_credentials_error(
                &err,
                &path.display().to_string(),
                &["cannot be read", "make it readable"],
            );
        }
    }
}

#[test]
fn not_json() {
    let file =
        CredentialsFile::write_named("key.json", b"-----BEGIN PRIVATE KEY-----\nMIIE\xff").unwrap();
    let err = ServiceAccountKey::from_file(file.path()).unwrap_err();
    let reason = assert_credentials_error(
        &err,
        &file.path().display().to_string(),
        &[
            "is not JSON",
            "at line 1 column",
            "downloaded from the Cloud console",
        ],
    );
    assert!(!reason.contains("MIIE"), "{reason}");

    let err = ServiceAccountKey::from_json(r#"["a", "list"]"#).unwrap_err();
    assert_credentials_error(&err, "<JSON string>", &["JSON an array, not an object"]);
}

#[test]
fn json_of_the_wrong_type() {
    let user = cloud_run_grpc_testkit::authorized_user_json("id", "client-secret-x", "refresh-x");
    let err = ServiceAccountKey::from_json(&user).unwrap_err();
    assert_credentials_error(
        &err,
        "<JSON string>",
        &[
            "holds `authorized_user` credentials, but a service-account key",
            "\"type\": \"service_account\"",
            "--impersonate-service-account",
            "GcloudCli",
        ],
    );
    assert_no_secret(&err.to_string(), &["client-secret-x", "refresh-x"]);

    let err =
        ImpersonatedServiceAccount::from_json(&account().key_json("https://x/t")).unwrap_err();
    assert_credentials_error(
        &err,
        "<JSON string>",
        &["holds `service_account` credentials, but an impersonation file"],
    );

    let err = ServiceAccountKey::from_json(&key_json_with(|k| {
        k.remove("type");
    }))
    .unwrap_err();
    assert_credentials_error(&err, "<JSON string>", &["has no `type` field"]);

    let err = ServiceAccountKey::from_json(&key_json_with(|k| {
        k.insert("type".into(), "gdch_service_account".into());
    }))
    .unwrap_err();
    assert_credentials_error(
        &err,
        "<JSON string>",
        &["`gdch_service_account`", "does not know"],
    );
}

#[test]
fn missing_fields() {
    let err = ServiceAccountKey::from_json(&key_json_with(|k| {
        k.remove("client_email");
        k.remove("private_key");
    }))
    .unwrap_err();
    assert_credentials_error(
        &err,
        "<JSON string>",
        &[
            "lacks `client_email`, `private_key`",
            "incomplete",
            "keys create",
        ],
    );

    let err = ServiceAccountKey::from_json(&key_json_with(|k| {
        k.insert("client_email".into(), serde_json::json!({"nested": true}));
    }))
    .unwrap_err();
    assert_credentials_error(&err, "<JSON string>", &["`client_email` must be a string"]);

    let impersonation = impersonated_service_account_json(
        "{}",
        "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken",
        &[],
    );
    let err = ImpersonatedServiceAccount::from_json(&impersonation).unwrap_err();
    assert_credentials_error(
        &err,
        "<JSON string> (its `source_credentials`)",
        &["has no `type` field"],
    );
}

#[test]
fn a_malformed_private_key() {
    let pem = account().private_key_pem().to_owned();
    // Not PEM at all.
    let err = ServiceAccountKey::from_json(&key_json_with(|k| {
        k.insert(
            "private_key".into(),
            "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC".into(),
        );
    }))
    .unwrap_err();
    let first = assert_credentials_error(
        &err,
        "<JSON string>",
        &[
            "`private_key` is not an RSA private key in PEM form",
            "keys create",
        ],
    );
    assert!(!first.contains("MIIEvQ"), "{first}");

    // PEM armour around a key cut short: the base64 decodes, the RSA key does not parse.
    let lines: Vec<&str> = pem.lines().collect();
    let truncated = [&lines[..lines.len() / 2], &lines[lines.len() - 1..]]
        .concat()
        .join("\n");
    let err = ServiceAccountKey::from_json(&key_json_with(|k| {
        k.insert("private_key".into(), truncated.into());
    }))
    .unwrap_err();
    assert_credentials_error(&err, "<JSON string>", &["cut short"]);
}

#[test]
fn a_token_uri_that_is_not_https() {
    let json = account().key_json("http://tokens.example.com/token");
    let err = ServiceAccountKey::from_json(&json).unwrap_err();
    assert_credentials_error(
        &err,
        "<JSON string>",
        &[
            "its `token_uri` `http://tokens.example.com/token` is refused: plaintext",
            "loopback address",
        ],
    );
}

#[test]
fn file_errors_are_all_distinct() {
    let dir = common::temp_dir("distinct");
    let errors = [
        ServiceAccountKey::from_file(dir.path().join("missing.json")).unwrap_err(),
        ServiceAccountKey::from_file(dir.path()).unwrap_err(),
        ServiceAccountKey::from_json("not json").unwrap_err(),
        ServiceAccountKey::from_json(r#"{"type":"authorized_user"}"#).unwrap_err(),
        ServiceAccountKey::from_json(r#"{"type":"service_account"}"#).unwrap_err(),
        ServiceAccountKey::from_json(&key_json_with(|k| {
            k.insert("private_key".into(), "garbage".into());
        }))
        .unwrap_err(),
    ];
    let reasons: HashSet<String> = errors
        .iter()
        .map(|e| match e {
            TokenError::Credentials { reason, .. } => reason.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(reasons.len(), errors.len(), "{reasons:#?}");
}

/// The error a key's fetch gets from a token endpoint that answers with `fault`.
async fn key_fetch_error(fault: Fault) -> TokenError {
    let oauth = OAuthEmulator::start().await.unwrap();
    oauth.fail_with(fault);
    let key = ServiceAccountKey::from_json(&oauth.key_json()).unwrap();
    key.fetch(AUDIENCE).await.unwrap_err()
}

#[tokio::test]
async fn the_token_endpoint_refuses_the_assertion() {
    // A key the token endpoint does not know: Google answers `invalid_grant`.
    let oauth = OAuthEmulator::start().await.unwrap();
    let stranger = oauth.service_account().clone().with_other_key();
    let key = ServiceAccountKey::from_json(&stranger.key_json(&oauth.token_uri())).unwrap();

    let err = key.fetch(AUDIENCE).await.unwrap_err();
    let TokenError::Status {
        source_name,
        status,
        body,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(*status, 400);
    assert!(source_name.contains(&oauth.token_uri()), "{source_name}");
    assert!(
        body.starts_with("invalid_grant: Invalid JWT Signature."),
        "{body}"
    );
    assert!(body.contains("deleted or disabled"), "{body}");
    assert!(body.contains("keys create"), "{body}");
    assert!(!err.is_transient());
    assert_no_jwt(&err);
    assert_no_secret(&err.to_string(), &[stranger.private_key_pem()]);
}

#[tokio::test]
async fn the_token_endpoint_answers_an_oauth_error() {
    let err = key_fetch_error(Fault::oauth_error(
        "invalid_client",
        "The OAuth client was disabled.",
    ))
    .await;
    let TokenError::Status { status, body, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*status, 400);
    assert!(
        body.starts_with("invalid_client: The OAuth client was disabled."),
        "{body}"
    );
    assert!(
        body.contains("check that the account exists and is enabled"),
        "{body}"
    );
    assert_no_jwt(&err);
}

#[tokio::test]
async fn the_token_endpoint_answers_an_html_page() {
    let err = key_fetch_error(Fault::Html(404)).await;
    let TokenError::BadResponse {
        source_name,
        reason,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert!(source_name.starts_with("token endpoint"), "{source_name}");
    assert!(
        reason
            .starts_with("an HTML page (HTTP 404, titled \"Error 404\") came back instead of JSON"),
        "{reason}"
    );
    assert!(reason.contains("check that the token URI"), "{reason}");
    assert!(reason.contains("no proxy"), "{reason}");
    assert_no_jwt(&err);
}

#[tokio::test]
async fn the_token_endpoint_answers_200_without_an_id_token() {
    let err = key_fetch_error(Fault::MissingToken).await;
    let TokenError::BadResponse { reason, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(
        reason.starts_with(
            "the answer has no `id_token` (it has `access_token`, `expires_in`, `token_type`)"
        ),
        "{reason}"
    );
    assert!(reason.contains("Google's token endpoint"), "{reason}");
    assert_no_jwt(&err);
}

#[tokio::test]
async fn the_token_endpoint_answers_a_token_that_is_not_a_jwt() {
    let err = key_fetch_error(Fault::Garbage).await;
    let TokenError::BadToken { reason, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(matches!(reason, JwtError::NotAJwt), "{reason:?}");
    let shown = err.to_string();
    assert!(!shown.contains("this-is-not-a-jwt"), "{shown}");
    assert!(shown.contains("expected three base64url parts"), "{shown}");
}

#[tokio::test]
async fn the_token_endpoint_answers_a_token_without_expiry() {
    let err = key_fetch_error(Fault::NoExp).await;
    assert!(
        matches!(
            &err,
            TokenError::BadToken {
                reason: JwtError::MissingExpiry,
                ..
            }
        ),
        "{err:?}"
    );
    assert_no_jwt(&err);
}

#[tokio::test]
async fn iam_answers_403() {
    let (oauth, iam) = oauth_and_iam().await;
    iam.fail_with(Fault::permission_denied());
    let source = impersonation_with_key_of(&oauth, &iam);

    let err = source.fetch(AUDIENCE).await.unwrap_err();
    let TokenError::Status {
        source_name,
        status,
        body,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(*status, 403);
    assert_eq!(
        source_name,
        &format!(
            "IAM Credentials at {} impersonating {TARGET}",
            iam.base_url()
        )
    );
    assert!(
        body.starts_with(
            "PERMISSION_DENIED: Permission 'iam.serviceAccounts.getOpenIdToken' denied"
        ),
        "{body}"
    );
    assert!(
        body.contains("roles/iam.serviceAccountOpenIdTokenCreator"),
        "{body}"
    );
    assert!(
        body.contains(&format!("add-iam-policy-binding {TARGET}")),
        "{body}"
    );
    assert!(!err.is_transient());
    assert_no_jwt(&err);
}

#[tokio::test]
async fn iam_refuses_an_unknown_access_token() {
    // The IAM emulator trusts no one's access tokens: Google's 401.
    let oauth = OAuthEmulator::start().await.unwrap();
    let iam = IamEmulator::builder().start().await.unwrap();
    let source = impersonation_with_key_of(&oauth, &iam);

    let err = source.fetch(AUDIENCE).await.unwrap_err();
    let TokenError::Status { status, body, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*status, 401);
    assert!(body.contains("refresh them"), "{body}");
    assert_no_jwt(&err);
}

#[tokio::test]
async fn a_revoked_refresh_token_in_an_impersonation_file() {
    let (oauth, iam) = oauth_and_iam().await;
    let user = cloud_run_grpc_testkit::authorized_user_json("id", "secret-s3", "revoked-r3fresh");
    let json = impersonated_service_account_json(&user, &iam.impersonation_url(TARGET), &[]);
    let source = ImpersonatedServiceAccount::from_json(&json)
        .unwrap()
        .with_token_uri(oauth.token_uri())
        .unwrap();

    let err = source.fetch(AUDIENCE).await.unwrap_err();
    let TokenError::Status { status, body, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*status, 400);
    assert!(
        body.contains("refresh token was revoked or has expired"),
        "{body}"
    );
    assert!(
        body.contains("gcloud auth application-default login"),
        "{body}"
    );
    assert_no_secret(&err.to_string(), &["secret-s3", "revoked-r3fresh"]);
    assert_no_secret(&format!("{source:?}"), &["secret-s3", "revoked-r3fresh"]);
}

#[test]
fn an_impersonation_url_that_is_not_iam() {
    let json = impersonated_service_account_json(
        &account().key_json("https://oauth2.googleapis.com/token"),
        "https://example.com/impersonate",
        &[],
    );
    let err = ImpersonatedServiceAccount::from_json(&json).unwrap_err();
    assert_credentials_error(
        &err,
        "<JSON string>",
        &[
            "is not an IAM Credentials URL like",
            "--impersonate-service-account",
        ],
    );
}

#[tokio::test]
async fn gcloud_is_missing() {
    let dir = common::temp_dir("no-gcloud");
    let source = GcloudCli::new().program(dir.path().join("gcloud"));
    let err = source.fetch(AUDIENCE).await.unwrap_err();
    let TokenError::Command { reason, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(reason.contains("not installed or not on PATH"), "{reason}");
    assert!(reason.contains("gcloud auth login"), "{reason}");
}

#[cfg(unix)]
#[tokio::test]
async fn gcloud_fails_or_prints_something_else() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = common::temp_dir("bad-gcloud");
    let gcloud = dir.path().join("gcloud");
    let script = "#!/bin/sh\n\
        echo 'ERROR: (gcloud.auth.list) You do not currently have an active account selected.' >&2\n\
        exit 1\n";
    std::fs::write(&gcloud, script).unwrap();
    std::fs::set_permissions(&gcloud, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = GcloudCli::new()
        .program(&gcloud)
        .fetch(AUDIENCE)
        .await
        .unwrap_err();
    let TokenError::Command {
        command, reason, ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert!(command.starts_with("gcloud auth list"), "{command}");
    assert!(reason.contains("exited with exit status: 1"), "{reason}");
    assert!(
        reason.contains("You do not currently have an active account"),
        "{reason}"
    );
    assert!(reason.contains("run `gcloud auth login`"), "{reason}");

    let gcloud = common::fake_gcloud(
        dir.path(),
        "ci@p.iam.gserviceaccount.com",
        "ya29.not-an-id-token",
    );
    let err = GcloudCli::new()
        .program(&gcloud)
        .fetch(AUDIENCE)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            TokenError::BadToken {
                reason: JwtError::NotAJwt,
                ..
            }
        ),
        "{err:?}"
    );
    assert_no_jwt(&err);
}

#[cfg(unix)]
#[test]
fn a_file_that_never_ends_fails_fast() {
    let started = std::time::Instant::now();
    let err = ServiceAccountKey::from_file("/dev/zero").unwrap_err();
    let reason = assert_credentials_error(
        &err,
        "/dev/zero",
        &["longer than 1024 KiB", "check the path"],
    );
    assert!(!reason.contains('\0'), "{reason}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[cfg(unix)]
#[tokio::test]
async fn a_gcloud_that_prints_forever_is_stopped() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = common::temp_dir("chatty-gcloud");
    let gcloud = dir.path().join("gcloud");
    std::fs::write(&gcloud, "#!/bin/sh\nexec yes 'ya29.never-ending-output'\n").unwrap();
    std::fs::set_permissions(&gcloud, std::fs::Permissions::from_mode(0o755)).unwrap();
    let started = std::time::Instant::now();
    let err = GcloudCli::new()
        .program(&gcloud)
        .timeout(std::time::Duration::from_secs(20))
        .fetch(AUDIENCE)
        .await
        .unwrap_err();
    let TokenError::Command { reason, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(
        reason.starts_with("it printed more than 64 KiB on its standard output"),
        "{reason}"
    );
    assert!(reason.contains("is the gcloud CLI"), "{reason}");
    // Stopped as soon as the limit was reached, not at the timeout.
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_no_jwt(&err);
}
