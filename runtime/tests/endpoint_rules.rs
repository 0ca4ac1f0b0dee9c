//! Where credentials and tokens may come from: an answer at the metadata server's address must
//! come from a metadata server, and endpoints named in credential files must be Google's (or a
//! loopback emulator). Each rule is checked against real servers on loopback.

mod common;

use std::time::Duration;

use cloud_run_grpc::token::{
    IdTokenSource, ImpersonatedServiceAccount, MetadataServer, ServiceAccountKey, TokenError,
};
use cloud_run_grpc_testkit::{
    IamEmulator, Issuer, OAuthEmulator, impersonated_service_account_json,
};
use common::CannedServer;

use common::AUDIENCE;

fn token() -> String {
    Issuer::new().mint(
        AUDIENCE,
        "sa@p.iam.gserviceaccount.com",
        Duration::from_secs(3600),
    )
}

#[tokio::test]
async fn an_identity_answer_without_metadata_flavor_is_refused() {
    let jwt = token();
    let impostor = CannedServer::start(
        "200 OK",
        &[("content-type", "text/plain"), ("server", "nginx/1.25")],
        &jwt,
    )
    .await;
    let source = MetadataServer::with_host(impostor.addr.to_string());

    let err = source.fetch(AUDIENCE).await.unwrap_err();
    let TokenError::Unsupported {
        source_name,
        reason,
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(
        source_name,
        &format!("metadata server at {}", impostor.addr)
    );
    assert!(
        reason.starts_with(
            "something answered (HTTP 200, text/plain, server `nginx/1.25`) without \
             `Metadata-Flavor: Google`, so it is not a metadata server"
        ),
        "{reason}"
    );
    assert!(reason.contains("GCE_METADATA_HOST"), "{reason}");
    assert!(!err.is_transient());
    assert!(!err.to_string().contains(&jwt), "{err}");

    // The same answer with the header is a metadata server's: the header alone made the
    // difference.
    let genuine = CannedServer::start(
        "200 OK",
        &[
            ("content-type", "text/plain"),
            ("metadata-flavor", "Google"),
        ],
        &jwt,
    )
    .await;
    let token = MetadataServer::with_host(genuine.addr.to_string())
        .fetch(AUDIENCE)
        .await
        .unwrap();
    assert_eq!(token.secret(), jwt);
}

#[tokio::test]
async fn an_error_answer_without_metadata_flavor_is_named_as_such() {
    let impostor = CannedServer::start(
        "404 Not Found",
        &[("content-type", "text/html; charset=UTF-8")],
        "<html>not here</html>",
    )
    .await;
    let err = MetadataServer::with_host(impostor.addr.to_string())
        .fetch(AUDIENCE)
        .await
        .unwrap_err();
    let shown = err.to_string();
    assert!(
        shown
            .contains("something answered (HTTP 404, text/html) without `Metadata-Flavor: Google`"),
        "{shown}"
    );
}

/// The reason of a `TokenError::Credentials`, or a panic naming what came instead.
fn credentials_reason(err: TokenError) -> String {
    match err {
        TokenError::Credentials { reason, .. } => reason,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_key_file_sends_its_assertion_only_to_google_or_to_loopback() {
    let oauth = OAuthEmulator::start().await.unwrap();
    let account = oauth.service_account();
    let port = oauth.addr().port();

    // A loopback emulator named in the file: allowed, and the exchange happens.
    let key = ServiceAccountKey::from_json(&account.key_json(&oauth.token_uri())).unwrap();
    key.fetch(AUDIENCE).await.unwrap();
    assert_eq!(oauth.requests(), 1);

    // The same server under a name that is not loopback (`127.1` dials 127.0.0.1), and hosts
    // Google does not run: refused when the file is read, before any request.
    for (uri, says) in [
        (format!("http://127.1:{port}/token"), "plaintext"),
        (
            format!("https://127.1:{port}/token"),
            "only to Google's endpoints",
        ),
        (
            "https://oauth2.example.com/token".to_owned(),
            "not to `oauth2.example.com`",
        ),
        (
            "https://oauth2.googleapis.com.example.net/token".to_owned(),
            "only to Google's endpoints",
        ),
    ] {
        let reason =
            credentials_reason(ServiceAccountKey::from_json(&account.key_json(&uri)).unwrap_err());
        assert!(
            reason.starts_with(&format!("its `token_uri` `{uri}` is refused: ")),
            "{reason}"
        );
        assert!(reason.contains(says), "{reason}");
    }
    assert_eq!(oauth.requests(), 1, "a refused endpoint was sent a request");

    // Google's private endpoints are Google's.
    let private = account.key_json("https://oauth2-abc.p.googleapis.com/token");
    assert!(ServiceAccountKey::from_json(&private).is_ok());

    // In code, any https endpoint is the caller's choice; plaintext only to loopback.
    let key = ServiceAccountKey::from_json(&account.key_json(&oauth.token_uri())).unwrap();
    assert!(
        key.clone()
            .with_token_uri("https://tokens.example.com/token")
            .is_ok()
    );
    let err = key
        .with_token_uri(format!("http://127.1:{port}/token"))
        .unwrap_err();
    assert!(err.to_string().contains("plaintext"), "{err}");
}

#[tokio::test]
async fn an_impersonation_file_names_only_google_or_loopback_endpoints() {
    let oauth = OAuthEmulator::start().await.unwrap();
    let iam = IamEmulator::builder()
        .access_tokens(oauth.access_tokens().clone())
        .start()
        .await
        .unwrap();
    let target = "invoker@p.iam.gserviceaccount.com";
    let port = iam.addr().port();

    // The IAM URL of the file: the loopback emulator works, another host is refused.
    let json =
        impersonated_service_account_json(&oauth.key_json(), &iam.impersonation_url(target), &[]);
    let source = ImpersonatedServiceAccount::from_json(&json).unwrap();
    source.fetch(AUDIENCE).await.unwrap();
    let calls = iam.requests();
    assert_eq!(calls, 1);
    for base in [
        format!("http://127.1:{port}"),
        "https://iamcredentials.example.com".to_owned(),
    ] {
        let url = format!("{base}/v1/projects/-/serviceAccounts/{target}:generateAccessToken");
        let json = impersonated_service_account_json(&oauth.key_json(), &url, &[]);
        let reason = credentials_reason(ImpersonatedServiceAccount::from_json(&json).unwrap_err());
        assert!(
            reason.starts_with(&format!(
                "its `service_account_impersonation_url` at `{base}` is refused: "
            )),
            "{reason}"
        );
    }

    // The user credentials' `token_uri`, where the refresh token goes.
    let user = serde_json::json!({
        "type": "authorized_user",
        "client_id": "id",
        "client_secret": "client-s3cr3t",
        "refresh_token": "r3fresh-t0ken",
        "token_uri": "https://oauth2.example.com/token",
    });
    let json =
        impersonated_service_account_json(&user.to_string(), &iam.impersonation_url(target), &[]);
    let reason = credentials_reason(ImpersonatedServiceAccount::from_json(&json).unwrap_err());
    assert!(
        reason.starts_with("its `token_uri` `https://oauth2.example.com/token` is refused"),
        "{reason}"
    );
    assert!(
        !reason.contains("s3cr3t") && !reason.contains("t0ken"),
        "{reason}"
    );

    // In code, an IAM base URL anywhere over https is the caller's choice.
    let source = ImpersonatedServiceAccount::from_json(&impersonated_service_account_json(
        &oauth.key_json(),
        &iam.impersonation_url(target),
        &[],
    ))
    .unwrap();
    assert!(source.with_iam_base_url("https://iam.example.com").is_ok());
    assert_eq!(
        iam.requests(),
        calls,
        "a refused endpoint was sent a request"
    );
}
