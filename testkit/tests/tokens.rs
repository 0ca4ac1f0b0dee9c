//! Minting and verifying ID tokens.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloud_run_grpc_testkit::{Issuer, Verifier, VerifyError};

const AUD: &str = "https://bookstore.test.run.app";
const EMAIL: &str = "caller@project.iam.gserviceaccount.com";
const HOUR: Duration = Duration::from_secs(3600);

fn payload(token: &str) -> serde_json::Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[test]
fn mint_then_verify_round_trips_every_claim() {
    let issuer = Issuer::new();
    let before = SystemTime::now();
    let token = issuer.mint(AUD, EMAIL, HOUR);
    let claims = Verifier::new()
        .verify(&token, &[AUD], SystemTime::now())
        .unwrap();
    assert_eq!(claims.iss, "https://accounts.google.com");
    assert_eq!(claims.aud, AUD);
    assert_eq!(claims.email.as_deref(), Some(EMAIL));
    assert_eq!(claims.email_verified, Some(true));
    assert!(claims.sub.is_some());
    assert_eq!(claims.azp, claims.sub);
    let iat = claims.iat.unwrap();
    assert_eq!(claims.exp, iat + 3600);
    let before = before
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(iat >= before && iat <= before + 5);

    let header: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], issuer.key_id());
}

#[test]
fn two_tokens_minted_together_differ() {
    let issuer = Issuer::new();
    assert_ne!(issuer.mint(AUD, EMAIL, HOUR), issuer.mint(AUD, EMAIL, HOUR));
}

#[test]
fn wrong_audience_names_both_and_not_the_token() {
    let token = Issuer::new().mint("https://other.run.app", EMAIL, HOUR);
    let error = Verifier::new()
        .verify(&token, &[AUD, "custom-aud"], SystemTime::now())
        .unwrap_err();
    assert_eq!(
        error,
        VerifyError::WrongAudience {
            expected: vec![AUD.into(), "custom-aud".into()],
            got: "https://other.run.app".into()
        }
    );
    let message = error.to_string();
    assert!(message.contains(AUD) && message.contains("https://other.run.app"));
    assert!(!message.contains(&token));
}

#[test]
fn expired_at_exp_and_valid_just_before() {
    let issued = SystemTime::now() - Duration::from_secs(100);
    let token = Issuer::new()
        .token(AUD)
        .email(EMAIL)
        .issued_at(issued)
        .lifetime(Duration::from_secs(60))
        .mint();
    let exp = payload(&token)["exp"].as_u64().unwrap();
    let at = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    let verifier = Verifier::new();
    assert!(verifier.verify(&token, &[AUD], at(exp - 1)).is_ok());
    assert!(matches!(
        verifier.verify(&token, &[AUD], at(exp)),
        Err(VerifyError::Expired { .. })
    ));
    assert!(matches!(
        verifier.verify(&token, &[AUD], SystemTime::now()),
        Err(VerifyError::Expired { .. })
    ));
}

#[test]
fn tampered_payload_or_signature_is_a_bad_signature() {
    let token = Issuer::new().mint(AUD, EMAIL, HOUR);
    let verifier = Verifier::new();
    let parts: Vec<&str> = token.split('.').collect();

    let mut claims = payload(&token);
    claims["email"] = "admin@project.iam.gserviceaccount.com".into();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    assert_eq!(
        verifier.verify(&forged, &[AUD], SystemTime::now()),
        Err(VerifyError::BadSignature)
    );

    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    signature[10] ^= 1;
    let flipped = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode(signature)
    );
    assert_eq!(
        verifier.verify(&flipped, &[AUD], SystemTime::now()),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn a_key_the_verifier_does_not_trust_is_unknown() {
    let token = Issuer::rotated().mint(AUD, EMAIL, HOUR);
    assert!(
        Verifier::new()
            .verify(&token, &[AUD], SystemTime::now())
            .is_ok()
    );
    assert!(matches!(
        Issuer::new().verifier().verify(&token, &[AUD], SystemTime::now()),
        Err(VerifyError::UnknownKey(Some(kid))) if kid == "testkit-google-2"
    ));
    assert!(matches!(
        Verifier::empty().verify(&token, &[AUD], SystemTime::now()),
        Err(VerifyError::UnknownKey(_))
    ));
}

#[test]
fn another_keys_signature_under_a_trusted_kid_is_bad() {
    // Sign with key 2 but claim key 1's kid.
    let token = Issuer::rotated().mint(AUD, EMAIL, HOUR);
    let parts: Vec<&str> = token.split('.').collect();
    let header = serde_json::json!({"alg": "RS256", "kid": "testkit-google-1", "typ": "JWT"});
    let relabelled = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        parts[1],
        parts[2]
    );
    assert_eq!(
        Verifier::new().verify(&relabelled, &[AUD], SystemTime::now()),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn alg_none_and_hs256_are_refused() {
    let token = Issuer::new().mint(AUD, EMAIL, HOUR);
    let parts: Vec<&str> = token.split('.').collect();
    for alg in ["none", "HS256"] {
        let header = serde_json::json!({"alg": alg, "kid": "testkit-google-1"});
        let forged = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            parts[1]
        );
        assert_eq!(
            Verifier::new().verify(&forged, &[AUD], SystemTime::now()),
            Err(VerifyError::UnsupportedAlgorithm(Some(alg.into())))
        );
    }
}

#[test]
fn no_exp_and_wrong_issuer_are_refused() {
    let issuer = Issuer::new();
    let no_exp = issuer.token(AUD).email(EMAIL).without_expiry().mint();
    assert!(payload(&no_exp).get("exp").is_none());
    assert_eq!(
        Verifier::new().verify(&no_exp, &[AUD], SystemTime::now()),
        Err(VerifyError::MissingExpiry)
    );
    let elsewhere = issuer
        .token(AUD)
        .claim("iss", "https://evil.example")
        .mint();
    assert_eq!(
        Verifier::new().verify(&elsewhere, &[AUD], SystemTime::now()),
        Err(VerifyError::WrongIssuer("https://evil.example".into()))
    );
}

#[test]
fn malformed_tokens_are_refused_without_panicking() {
    let verifier = Verifier::new();
    for token in [
        "",
        "a",
        "a.b",
        "a.b.c.d",
        "!!.!!.!!",
        "e30.e30.",
        "W10.e30.AA",
    ] {
        assert!(
            matches!(
                verifier.verify(token, &[AUD], SystemTime::now()),
                Err(VerifyError::Malformed(_) | VerifyError::UnsupportedAlgorithm(None))
            ),
            "{token:?}"
        );
    }
}

#[test]
fn jwks_lists_the_keys_and_builds_an_equivalent_verifier() {
    let issuer = Issuer::new();
    let jwks: serde_json::Value = serde_json::from_str(&issuer.jwks()).unwrap();
    assert_eq!(jwks["keys"][0]["kid"], "testkit-google-1");
    assert_eq!(jwks["keys"][0]["kty"], "RSA");
    assert_eq!(jwks["keys"][0]["e"], "AQAB");
    let verifier = Verifier::from_jwks(&issuer.jwks()).unwrap();
    assert!(
        verifier
            .verify(&issuer.mint(AUD, EMAIL, HOUR), &[AUD], SystemTime::now())
            .is_ok()
    );
    assert!(Verifier::from_jwks("{}").is_err());
    assert!(Verifier::from_jwks("not json").is_err());
}
