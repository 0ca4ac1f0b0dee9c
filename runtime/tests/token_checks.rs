//! What the token cache checks and rides out, against the testkit's emulators over real
//! sockets: a local clock hours off, a token for another audience, token endpoints failing
//! some or all of the time.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use cloud_run_grpc::CloudRunChannel;
use cloud_run_grpc::token::{
    Clock, IdToken, IdTokenSource, ManualClock, MetadataServer, StaticToken, TokenCache,
};
use cloud_run_grpc_testkit::{Fault, Issuer, MetadataEmulator};
use common::{AUDIENCE, CannedServer, echo, front_end};
use tonic::Code;

/// The cache's view of a token after `after` on its (manual) clock: still sent, or not.
fn sent_after(cache: &TokenCache, clock: &ManualClock, after: Duration) -> bool {
    let start = clock.now();
    clock.advance(after);
    let sent = cache.current().is_some();
    clock.set(start);
    sent
}

#[tokio::test]
async fn a_local_clock_two_hours_off_takes_the_metadata_servers_cached_token() {
    let metadata = MetadataEmulator::start().await.unwrap();
    // The metadata server mints a token and caches it; the caches below get that one.
    let cached = MetadataServer::with_host(metadata.host())
        .fetch(AUDIENCE)
        .await
        .unwrap();
    let answered = cached
        .server_time()
        .expect("the metadata server sends `Date`");
    let real_now = SystemTime::now();
    assert!(
        answered <= real_now && real_now.duration_since(answered).unwrap() < Duration::from_secs(5),
        "`Date` is the emulator's clock, the real one"
    );
    let left = cached.expires_at().duration_since(real_now).unwrap();

    for (skew, ahead) in [
        (Duration::from_secs(7200), true),
        (Duration::from_secs(7200), false),
    ] {
        let local = if ahead {
            real_now + skew
        } else {
            real_now - skew
        };
        let clock = Arc::new(ManualClock::at(local));
        let cache = TokenCache::builder(MetadataServer::with_host(metadata.host()), AUDIENCE)
            .clock(clock.clone())
            .build();
        // Not refused as expired (clock ahead) ...
        let token = cache
            .token()
            .await
            .unwrap_or_else(|e| panic!("{ahead}: {e}"));
        assert_eq!(token, cached, "the metadata server's cached token");
        // ... and sent for as long as it lives, not two hours more or less (clock behind).
        assert!(
            sent_after(&cache, &clock, left - Duration::from_secs(60)),
            "{ahead}"
        );
        assert!(
            !sent_after(&cache, &clock, left + Duration::from_secs(60)),
            "{ahead}"
        );
    }
    assert_eq!(metadata.tokens_minted(), 1);
}

#[tokio::test]
async fn the_age_of_a_cached_token_does_not_move_its_expiry() {
    // A metadata server's cached token, minted 50 minutes ago: 10 minutes left. Its `iat` says
    // nothing about the server's clock now; its `Date` does.
    let now = SystemTime::now();
    let jwt = Issuer::new()
        .token(AUDIENCE)
        .issued_at(now - Duration::from_secs(50 * 60))
        .lifetime(Duration::from_secs(3600))
        .mint();
    let date = httpdate::fmt_http_date(now);
    let server = CannedServer::start(
        "200 OK",
        &[
            ("metadata-flavor", "Google"),
            ("content-type", "text/plain"),
            ("date", &date),
        ],
        &jwt,
    )
    .await;
    let clock = Arc::new(ManualClock::at(now + Duration::from_secs(7200)));
    let cache = TokenCache::builder(MetadataServer::with_host(server.addr.to_string()), AUDIENCE)
        .clock(clock.clone())
        .build();
    cache.token().await.unwrap();
    assert!(sent_after(&cache, &clock, Duration::from_secs(8 * 60)));
    assert!(!sent_after(&cache, &clock, Duration::from_secs(11 * 60)));
}

#[tokio::test]
async fn a_token_for_another_audience_is_never_sent() {
    let issuer = Issuer::new();
    let front = front_end(issuer.verifier(), None).await;
    let other = "https://other-abc123-ew.a.run.app";
    let token = issuer.mint(
        other,
        "sa@p.iam.gserviceaccount.com",
        Duration::from_secs(3600),
    );
    let source = StaticToken::new(IdToken::from_jwt(token).unwrap());

    let status = echo(&front, source, "wrong").await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let message = status.message();
    assert!(
        message.contains(&format!("a token for `{other}` instead of `{AUDIENCE}`")),
        "{message}"
    );
    assert_eq!(
        front.front().accepted() + front.front().rejected(),
        0,
        "nothing was sent"
    );
}

/// A channel to `front` with tokens from the metadata emulator, calls bounded by `timeout`.
fn channel(
    front: &cloud_run_grpc_testkit::CloudRun,
    metadata: &MetadataEmulator,
    timeout: Duration,
) -> CloudRunChannel {
    front
        .channel_builder()
        .token_source(MetadataServer::with_host(metadata.host()))
        .timeout(timeout)
        .build()
        .unwrap()
}

async fn call(channel: CloudRunChannel) -> Result<String, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/test.Echo/Echo");
    let codec = tonic_prost::ProstCodec::<String, String>::default();
    grpc.unary(tonic::Request::new("hi".to_owned()), path, codec)
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_cold_call_rides_out_a_failing_token_fetch() {
    let metadata = MetadataEmulator::start().await.unwrap();
    let front = front_end(metadata.verifier(), None).await;
    // Half of the fetches this call makes fail: the first.
    metadata.fail_times(Fault::Status(503, "try later".into()), 1);
    let echoed = call(channel(&front, &metadata, Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(echoed, "echo: hi");
    assert_eq!(metadata.requests(AUDIENCE), 2);
}

#[tokio::test]
async fn token_fetches_failing_until_the_deadline_make_the_call_unavailable() {
    let metadata = MetadataEmulator::start().await.unwrap();
    let front = front_end(metadata.verifier(), None).await;
    metadata.fail_with(Fault::Status(503, "try later".into()));
    let deadline = Duration::from_millis(1500);
    let started = Instant::now();
    let status = call(channel(&front, &metadata, deadline))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("HTTP 503"), "{status:?}");
    assert!(status.message().contains(AUDIENCE), "{status:?}");
    assert!(took <= deadline + Duration::from_millis(500), "{took:?}");
    // Retried with backoff meanwhile: more than once, far fewer than a loop would.
    let tries = metadata.requests(AUDIENCE);
    assert!((3..=12).contains(&tries), "{tries} fetches");
    assert_eq!(
        front.front().accepted() + front.front().rejected(),
        0,
        "nothing was sent"
    );
}

#[tokio::test]
async fn a_permanent_fetch_failure_fails_the_call_at_once() {
    let metadata = MetadataEmulator::start().await.unwrap();
    let front = front_end(metadata.verifier(), None).await;
    metadata.fail_with(Fault::Status(404, "no such service account".into()));
    let started = Instant::now();
    let status = call(channel(&front, &metadata, Duration::from_secs(20)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("HTTP 404"), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(metadata.requests(AUDIENCE), 1);
}

/// An endpoint that echoes a token in its error page: the message quotes the page, not the
/// token.
#[tokio::test]
async fn an_error_body_that_echoes_a_token_is_quoted_without_it() {
    let metadata = MetadataEmulator::start().await.unwrap();
    let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
    metadata.fail_with(Fault::Status(
        400,
        format!("<html><title>Bad request</title><p>token {jwt} and ya29.a0secret</p></html>"),
    ));
    let error = MetadataServer::with_host(metadata.host())
        .fetch(AUDIENCE)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("Bad request token [token]"), "{error}");
    assert!(!error.contains("eyJ") && !error.contains("ya29"), "{error}");
}

#[test]
fn a_manual_clock_moved_by_duration_max_saturates() {
    let clock = ManualClock::at(SystemTime::UNIX_EPOCH);
    clock.advance(Duration::MAX);
    let latest = clock.now();
    assert!(latest > SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 40));
    clock.advance(Duration::from_secs(1));
    assert_eq!(clock.now(), latest);
}
