//! Arbitrary input to every parser of credentials and tokens never panics, and a private key,
//! whatever it looks like, never shows in the error. (The token-answer parser, which is not
//! public, has the same property test in `src/token/response.rs`.)

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloud_run_grpc::token::{
    ExternalAccount, IdToken, ImpersonatedServiceAccount, ServiceAccountKey,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// JSON values of any shape, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Credentials-file-like objects: a known or odd `type` and the usual fields with values of
/// any shape.
fn credentials_json() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        Just(json!("service_account")),
        Just(json!("impersonated_service_account")),
        Just(json!("authorized_user")),
        Just(json!("external_account")),
        any_json(),
    ];
    let field = prop_oneof![".{0,80}".prop_map(Value::from), any_json()];
    let url = prop_oneof![
        Just(json!(
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/a@b:generateAccessToken"
        )),
        ".{0,80}".prop_map(|s| json!(format!(
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{s}"
        ))),
        field.clone(),
    ];
    (
        kind,
        field.clone(),
        field.clone(),
        field.clone(),
        url,
        any_json(),
        prop::option::of(any_json()),
    )
        .prop_map(|(kind, email, key, token_uri, url, delegates, source)| {
            let mut object = Map::new();
            object.insert("type".into(), kind);
            object.insert("client_email".into(), email);
            object.insert("private_key".into(), key);
            object.insert("token_uri".into(), token_uri);
            object.insert("service_account_impersonation_url".into(), url);
            object.insert("delegates".into(), delegates);
            if let Some(source) = source {
                object.insert("source_credentials".into(), source);
            }
            Value::Object(object)
        })
}

/// `external_account`-file-like objects: the usual fields, a `credential_source` of any shape
/// or of a known one with odd values, and secrets (a client secret, a header value) that must
/// never show.
fn external_account_json() -> impl Strategy<Value = Value> {
    let field = prop_oneof![".{0,60}".prop_map(Value::from), any_json()];
    let format = prop_oneof![
        any_json(),
        (field.clone(), field.clone())
            .prop_map(|(kind, name)| json!({"type": kind, "subject_token_field_name": name})),
    ];
    let source = prop_oneof![
        any_json(),
        (field.clone(), format.clone()).prop_map(|(file, format)| json!({"file": file, "format": format})),
        (
            field.clone(),
            prop_oneof![any_json(), Just(json!({"Authorization": "Bearer SECRETHEADER"}))],
            format
        )
            .prop_map(|(url, headers, format)| json!({"url": url, "headers": headers, "format": format})),
        (field.clone(), any_json(), field.clone()).prop_map(|(command, timeout, output)| {
            json!({"executable": {"command": command, "timeout_millis": timeout, "output_file": output}})
        }),
        field.clone().prop_map(|id| json!({"environment_id": id})),
    ];
    let url = prop_oneof![
        Just(json!(
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/a@b:generateAccessToken"
        )),
        field.clone(),
    ];
    (
        field.clone(),
        field.clone(),
        field.clone(),
        url,
        source,
        prop::option::of(field),
    )
        .prop_map(|(audience, token_type, token_url, url, source, project)| {
            let mut object = Map::new();
            object.insert("type".into(), json!("external_account"));
            object.insert("audience".into(), audience);
            object.insert("subject_token_type".into(), token_type);
            object.insert("token_url".into(), token_url);
            object.insert("service_account_impersonation_url".into(), url);
            object.insert("credential_source".into(), source);
            object.insert("client_id".into(), json!("client"));
            object.insert("client_secret".into(), json!("SECRETCLIENT"));
            if let Some(project) = project {
                object.insert("workforce_pool_user_project".into(), project);
            }
            Value::Object(object)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn external_account_files_of_arbitrary_json(json in external_account_json()) {
        let shown = match ExternalAccount::from_json(&json.to_string()) {
            Ok(source) => format!("{source:?}"),
            Err(err) => format!("{err} {err:?}"),
        };
        prop_assert!(!shown.contains("SECRET"), "{}", shown);
    }

    #[test]
    fn external_account_files_of_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = ExternalAccount::from_json(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn key_files_of_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = ServiceAccountKey::from_json(&text);
        let _ = ImpersonatedServiceAccount::from_json(&text);
    }

    #[test]
    fn key_files_of_arbitrary_json(json in credentials_json()) {
        let text = json.to_string();
        let _ = ServiceAccountKey::from_json(&text);
        let _ = ImpersonatedServiceAccount::from_json(&text);
    }

    #[test]
    fn a_private_key_never_shows_in_an_error(
        body in "[A-Za-z0-9+/=\n-]{0,200}",
        kind in prop_oneof![Just("service_account"), Just("authorized_user"), Just("odd")],
    ) {
        let secret = format!("SECRETKEY{body}");
        let json = json!({
            "type": kind,
            "client_email": "a@b.iam.gserviceaccount.com",
            "private_key": secret,
            "token_uri": "https://oauth2.googleapis.com/token",
        });
        if let Err(err) = ServiceAccountKey::from_json(&json.to_string()) {
            prop_assert!(!err.to_string().contains("SECRETKEY"), "{}", err);
            prop_assert!(!format!("{err:?}").contains("SECRETKEY"), "{:?}", err);
        }
    }

    #[test]
    fn jwts_of_arbitrary_text(text in ".{0,300}") {
        let _ = IdToken::from_jwt(text);
    }

    #[test]
    fn jwt_payloads_of_arbitrary_bytes(
        header in prop::collection::vec(any::<u8>(), 0..64),
        payload in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let jwt = format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let _ = IdToken::from_jwt(jwt);
    }

    #[test]
    fn jwt_payloads_of_arbitrary_json(
        claims in any_json(),
        exp in prop_oneof![any::<f64>().prop_map(|f| json!(f)), any::<i64>().prop_map(Value::from), any::<u64>().prop_map(Value::from), any_json()],
        aud in any_json(),
    ) {
        let mut payload = match claims {
            Value::Object(map) => map,
            other => {
                let mut map = Map::new();
                map.insert("other".into(), other);
                map
            }
        };
        payload.insert("exp".into(), exp);
        payload.insert("aud".into(), aud);
        let jwt = format!(
            "eyJhbGciOiJSUzI1NiJ9.{}.c2ln",
            URL_SAFE_NO_PAD.encode(Value::Object(payload).to_string())
        );
        if let Ok(token) = IdToken::from_jwt(jwt) {
            let _ = (token.expires_at(), token.audience(), token.email());
        }
    }
}
