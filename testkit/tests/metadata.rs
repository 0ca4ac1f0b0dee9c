//! The metadata-server emulator over real sockets.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use cloud_run_grpc::token::{Clock as _, ManualClock};

use cloud_run_grpc_testkit::{Fault, MetadataEmulator, Verifier, VerifyError};
use common::{get, identity_path, metadata_get, wait_until};

const AUD: &str = "https://bookstore.test.run.app";

/// An identity request for [`AUD`] that owns everything, to be spawned.
async fn fetch(addr: std::net::SocketAddr) -> std::io::Result<common::Answer> {
    metadata_get(addr, &identity_path(AUD)).await
}

#[tokio::test]
async fn identity_returns_a_verifiable_full_token() {
    let metadata = MetadataEmulator::builder()
        .email("svc@p.iam.gserviceaccount.com")
        .token_lifetime(Duration::from_secs(600))
        .start()
        .await
        .unwrap();
    let answer = metadata_get(metadata.addr(), &identity_path(AUD))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("metadata-flavor"), Some("Google"));
    assert!(
        answer
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let claims = metadata
        .verifier()
        .verify(&answer.body, &[AUD], SystemTime::now())
        .unwrap();
    assert_eq!(
        claims.email.as_deref(),
        Some("svc@p.iam.gserviceaccount.com")
    );
    assert_eq!(claims.exp - claims.iat.unwrap(), 600);
    assert_eq!(metadata.requests(AUD), 1);
    assert_eq!(metadata.requests("https://other"), 0);
    assert_eq!(metadata.total_requests(), 1);
}

#[tokio::test]
async fn identity_without_full_format_has_no_email() {
    let metadata = MetadataEmulator::start().await.unwrap();
    let path = format!(
        "{}?audience=https%3A%2F%2Fa.run.app",
        cloud_run_grpc_testkit::IDENTITY_PATH
    );
    let answer = metadata_get(metadata.addr(), &path).await.unwrap();
    let claims = Verifier::new()
        .verify(&answer.body, &["https://a.run.app"], SystemTime::now())
        .unwrap();
    assert_eq!(claims.email, None);
}

#[tokio::test]
async fn metadata_flavor_is_required() {
    let metadata = MetadataEmulator::start().await.unwrap();
    for headers in [&[][..], &[("Metadata-Flavor", "google")][..]] {
        let answer = get(metadata.addr(), &identity_path(AUD), headers)
            .await
            .unwrap();
        assert_eq!(answer.status, 403, "{headers:?}");
        assert!(answer.body.contains("Metadata-Flavor"));
    }
    assert_eq!(metadata.total_requests(), 0);
    assert_eq!(metadata.http_requests(), 2);
}

#[tokio::test]
async fn a_missing_audience_is_a_400() {
    let metadata = MetadataEmulator::start().await.unwrap();
    let answer = metadata_get(metadata.addr(), cloud_run_grpc_testkit::IDENTITY_PATH)
        .await
        .unwrap();
    assert_eq!(answer.status, 400);
    assert!(answer.body.contains("audience"));
}

#[tokio::test]
async fn probe_project_email_jwks_and_unknown_paths() {
    let metadata = MetadataEmulator::builder()
        .project_id("my-project")
        .start()
        .await
        .unwrap();
    let addr = metadata.addr();
    let probe = metadata_get(addr, "/computeMetadata/v1/").await.unwrap();
    assert_eq!(
        (probe.status, probe.header("metadata-flavor")),
        (200, Some("Google"))
    );
    let root = get(addr, "/", &[]).await.unwrap();
    assert_eq!(
        (root.status, root.header("metadata-flavor")),
        (200, Some("Google"))
    );
    let project = metadata_get(addr, "/computeMetadata/v1/project/project-id")
        .await
        .unwrap();
    assert_eq!((project.status, project.body.as_str()), (200, "my-project"));
    let email = metadata_get(
        addr,
        "/computeMetadata/v1/instance/service-accounts/default/email",
    )
    .await
    .unwrap();
    assert_eq!(email.body, metadata.email());
    let missing = metadata_get(addr, "/computeMetadata/v1/nothing")
        .await
        .unwrap();
    assert_eq!(missing.status, 404);
    let post = common::request(
        addr,
        "POST",
        "/computeMetadata/v1/",
        &[("Metadata-Flavor", "Google")],
        "",
    )
    .await
    .unwrap();
    assert_eq!(post.status, 405);

    let jwks = get(addr, cloud_run_grpc_testkit::JWKS_PATH, &[])
        .await
        .unwrap();
    assert_eq!(jwks.status, 200);
    let verifier = Verifier::from_jwks(&jwks.body).unwrap();
    let token = metadata_get(addr, &identity_path(AUD)).await.unwrap().body;
    assert!(verifier.verify(&token, &[AUD], SystemTime::now()).is_ok());
}

#[tokio::test]
async fn access_token_endpoint_records_its_tokens() {
    let metadata = MetadataEmulator::start().await.unwrap();
    let answer = metadata_get(metadata.addr(), cloud_run_grpc_testkit::TOKEN_PATH)
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().unwrap() > 3000);
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(
        metadata.access_tokens().email_for(token).as_deref(),
        Some(metadata.email())
    );
    assert_eq!(metadata.access_tokens().email_for("ya29.made-up"), None);
    assert_eq!(metadata.access_token_requests(), 1);
    assert_eq!(metadata.total_requests(), 0);
}

#[tokio::test]
async fn the_same_token_is_reused_per_audience() {
    let metadata = MetadataEmulator::start().await.unwrap();
    let addr = metadata.addr();
    let first = metadata_get(addr, &identity_path(AUD)).await.unwrap().body;
    let second = metadata_get(addr, &identity_path(AUD)).await.unwrap().body;
    let other = metadata_get(addr, &identity_path("https://other.run.app"))
        .await
        .unwrap()
        .body;
    assert_eq!(first, second);
    assert_ne!(first, other);
    assert_eq!(metadata.requests(AUD), 2);
    assert_eq!(metadata.tokens_minted(), 2);

    metadata.clear_token_cache();
    let third = metadata_get(addr, &identity_path(AUD)).await.unwrap().body;
    assert_ne!(first, third);
}

#[tokio::test]
async fn a_token_near_expiry_is_replaced() {
    let clock = Arc::new(ManualClock::new());
    let metadata = MetadataEmulator::builder()
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let addr = metadata.addr();
    let first = metadata_get(addr, &identity_path(AUD)).await.unwrap().body;
    // Handed out again while more than five minutes of its hour remain...
    clock.advance(Duration::from_secs(3600 - 301));
    let again = metadata_get(addr, &identity_path(AUD)).await.unwrap().body;
    assert_eq!(first, again);
    // ...and replaced after.
    clock.advance(Duration::from_secs(2));
    let second = metadata_get(addr, &identity_path(AUD)).await.unwrap().body;
    assert_ne!(first, second);
    assert_eq!(metadata.tokens_minted(), 2);
    let claims = metadata
        .verifier()
        .verify(&second, &[AUD], clock.now())
        .unwrap();
    assert_eq!(claims.iat, Some(common::unix(clock.now())));
}

#[tokio::test]
async fn short_lived_tokens_are_reused_for_half_their_life() {
    // Two-second tokens: the reuse margin is clamped to one second. Tokens count whole seconds,
    // so the clock starts on one.
    let clock = Arc::new(ManualClock::at(
        SystemTime::UNIX_EPOCH + Duration::from_secs(common::now()),
    ));
    let metadata = MetadataEmulator::builder()
        .clock(clock.clone())
        .token_lifetime(Duration::from_secs(2))
        .start()
        .await
        .unwrap();
    let addr = metadata.addr();
    let first = metadata_get(addr, &identity_path(AUD)).await.unwrap().body;
    clock.advance(Duration::from_millis(900));
    assert_eq!(
        metadata_get(addr, &identity_path(AUD)).await.unwrap().body,
        first
    );
    clock.advance(Duration::from_millis(1100));
    assert_ne!(
        metadata_get(addr, &identity_path(AUD)).await.unwrap().body,
        first
    );
    assert_eq!(metadata.tokens_minted(), 2);
}

#[tokio::test]
async fn caching_can_be_turned_off() {
    let metadata = MetadataEmulator::builder()
        .cache_tokens(false)
        .start()
        .await
        .unwrap();
    let addr = metadata.addr();
    let first = metadata_get(addr, &identity_path(AUD)).await.unwrap().body;
    let second = metadata_get(addr, &identity_path(AUD)).await.unwrap().body;
    assert_ne!(first, second);
}

#[tokio::test]
async fn lifetime_can_change_while_running() {
    let metadata = MetadataEmulator::start().await.unwrap();
    metadata.set_token_lifetime(Duration::from_secs(90));
    let token = metadata_get(metadata.addr(), &identity_path(AUD))
        .await
        .unwrap()
        .body;
    let claims = Verifier::new()
        .verify(&token, &[AUD], SystemTime::now())
        .unwrap();
    assert_eq!(claims.exp - claims.iat.unwrap(), 90);
}

#[tokio::test]
async fn latency_delays_token_answers() {
    let metadata = MetadataEmulator::builder()
        .latency(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let started = Instant::now();
    metadata_get(metadata.addr(), &identity_path(AUD))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    metadata.set_latency(Duration::ZERO);
    let started = Instant::now();
    metadata_get(metadata.addr(), &identity_path(AUD))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn status_garbage_missing_and_no_exp_faults() {
    let metadata = MetadataEmulator::start().await.unwrap();
    let addr = metadata.addr();

    metadata.fail_with(Fault::Status(503, "backend unavailable".into()));
    let answer = metadata_get(addr, &identity_path(AUD)).await.unwrap();
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (503, "backend unavailable")
    );

    metadata.fail_with(Fault::Garbage);
    let answer = metadata_get(addr, &identity_path(AUD)).await.unwrap();
    assert_eq!(answer.status, 200);
    assert!(matches!(
        Verifier::new().verify(&answer.body, &[AUD], SystemTime::now()),
        Err(VerifyError::Malformed(_))
    ));

    metadata.fail_with(Fault::MissingToken);
    let answer = metadata_get(addr, &identity_path(AUD)).await.unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));

    metadata.fail_with(Fault::NoExp);
    let answer = metadata_get(addr, &identity_path(AUD)).await.unwrap();
    assert_eq!(
        Verifier::new().verify(&answer.body, &[AUD], SystemTime::now()),
        Err(VerifyError::MissingExpiry)
    );

    metadata.fail_with(Fault::Html(502));
    let answer = metadata_get(addr, &identity_path(AUD)).await.unwrap();
    assert_eq!(answer.status, 502);
    assert!(
        answer
            .header("content-type")
            .unwrap()
            .starts_with("text/html")
    );

    metadata.heal();
    let answer = metadata_get(addr, &identity_path(AUD)).await.unwrap();
    assert!(
        Verifier::new()
            .verify(&answer.body, &[AUD], SystemTime::now())
            .is_ok()
    );
    assert_eq!(metadata.requests(AUD), 6);
}

#[tokio::test]
async fn fail_times_heals_by_itself() {
    let metadata = MetadataEmulator::start().await.unwrap();
    metadata.fail_times(Fault::Status(500, "boom".into()), 2);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            metadata_get(metadata.addr(), &identity_path(AUD))
                .await
                .unwrap()
                .status,
        );
    }
    assert_eq!(statuses, [500, 500, 200]);
}

#[tokio::test]
async fn disconnect_closes_without_an_answer() {
    let metadata = MetadataEmulator::start().await.unwrap();
    metadata.fail_with(Fault::Disconnect);
    assert!(
        metadata_get(metadata.addr(), &identity_path(AUD))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn hang_lasts_until_healed() {
    let metadata = MetadataEmulator::start().await.unwrap();
    metadata.fail_with(Fault::Hang);
    let mut hung = tokio::spawn(fetch(metadata.addr()));
    wait_until("the request arrives", || metadata.total_requests() == 1).await;
    let unanswered = tokio::time::timeout(Duration::from_millis(100), &mut hung).await;
    assert!(unanswered.is_err(), "answered while hanging");
    metadata.heal();
    let answer = tokio::time::timeout(Duration::from_secs(5), hung)
        .await
        .unwrap()
        .unwrap();
    assert!(answer.is_err(), "a hung request is closed unanswered");
    let answer = metadata_get(metadata.addr(), &identity_path(AUD))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn hang_and_latency_end_at_shutdown() {
    let metadata = MetadataEmulator::builder()
        .latency(Duration::from_secs(3600))
        .start()
        .await
        .unwrap();
    let slow = tokio::spawn(fetch(metadata.addr()));
    wait_until("the request arrives", || metadata.total_requests() == 1).await;
    metadata.shutdown().await;
    let answer = tokio::time::timeout(Duration::from_secs(5), slow)
        .await
        .unwrap()
        .unwrap();
    assert!(answer.is_err());
    assert!(
        tokio::net::TcpStream::connect(metadata.addr())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn restart_serves_again_on_the_same_port() {
    let metadata = MetadataEmulator::start().await.unwrap();
    let addr = metadata.addr();
    let before = metadata_get(addr, &identity_path(AUD)).await.unwrap().body;
    metadata.shutdown().await;
    assert!(metadata_get(addr, &identity_path(AUD)).await.is_err());
    metadata.restart().await.unwrap();
    assert_eq!(metadata.addr(), addr);
    let after = metadata_get(addr, &identity_path(AUD)).await.unwrap().body;
    assert_eq!(before, after, "the cache survives a restart");
    assert_eq!(metadata.requests(AUD), 2);
}

#[tokio::test]
async fn dropping_the_server_closes_the_port() {
    let metadata = MetadataEmulator::start().await.unwrap();
    let addr = metadata.addr();
    drop(metadata);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "port still open after drop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn many_concurrent_requests_are_all_counted() {
    let metadata = MetadataEmulator::start().await.unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| tokio::spawn(fetch(metadata.addr())))
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().status, 200);
    }
    assert_eq!(metadata.requests(AUD), 50);
}

#[tokio::test]
async fn debug_shows_no_token() {
    let metadata = MetadataEmulator::start().await.unwrap();
    let token = metadata_get(metadata.addr(), &identity_path(AUD))
        .await
        .unwrap()
        .body;
    let access = metadata_get(metadata.addr(), cloud_run_grpc_testkit::TOKEN_PATH)
        .await
        .unwrap()
        .body;
    let debug = format!(
        "{metadata:?} {:?} {:?}",
        metadata.access_tokens(),
        metadata.issuer()
    );
    assert!(!debug.contains(&token));
    assert!(!debug.contains("ya29"), "{access}");
}
