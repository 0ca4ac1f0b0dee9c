//! The Cloud-Run-like front end, called by a plain tonic client over TLS.

use std::time::Duration;

mod common;

use cloud_run_grpc_testkit::{FrontEnd, Issuer, MetadataEmulator};
use common::grpc::{
    AUD, EMAIL, HOST, bearer, call, channel, ping, ping_slow, ping_until_reconnected,
    plaintext_channel, routes, token,
};
use common::wait_until;
use tonic::Code;
use tonic::codegen::http;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// What came back over HTTP, as a client that does not speak gRPC sees it.
struct Raw {
    status: http::StatusCode,
    headers: http::HeaderMap,
    body: String,
    trailers: Option<http::HeaderMap>,
}

/// Sends one gRPC request for `path` (an empty message) and reads the whole HTTP answer.
async fn raw(channel: &Channel, path: &str, header: Option<(&'static str, String)>) -> Raw {
    use http_body_util::BodyExt as _;
    use tower_service::Service as _;
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{HOST}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some((name, value)) = header {
        request = request.header(name, value);
    }
    let frame = bytes::Bytes::from_static(&[0, 0, 0, 0, 0]);
    let request = request
        .body(tonic::body::Body::new(http_body_util::Full::new(frame)))
        .unwrap();
    let mut channel = channel.clone();
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .unwrap();
    let response = channel.call(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    Raw {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
        trailers,
    }
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Checks that this is one of the front end's HTML pages, not a gRPC answer.
    fn assert_page(&self, status: u16, says: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("text/html; charset=UTF-8")
        );
        assert_eq!(self.header("server"), Some("Google Frontend"));
        assert!(self.header("date").is_some(), "no date: {:?}", self.headers);
        assert!(self.header("grpc-status").is_none(), "{:?}", self.headers);
        assert!(self.trailers.is_none(), "{:?}", self.trailers);
        assert!(self.body.contains(says), "{says:?} not in {}", self.body);
    }
}

#[tokio::test]
async fn a_valid_token_over_tls_is_accepted() {
    let front = FrontEnd::builder(HOST).serve(routes()).await.unwrap();
    assert_eq!(front.audience(), AUD);
    assert_eq!(front.url(), AUD);
    let channel = channel(&front).await;
    ping(&channel, bearer(&token())).await.unwrap();
    ping(
        &channel,
        Some(("x-serverless-authorization", format!("Bearer {}", token()))),
    )
    .await
    .unwrap();
    assert_eq!((front.accepted(), front.rejected()), (2, 0));
}

#[tokio::test]
async fn a_metadata_token_is_accepted_with_its_verifier() {
    let metadata = MetadataEmulator::start().await.unwrap();
    let front = FrontEnd::builder(HOST)
        .verifier(metadata.verifier())
        .serve(routes())
        .await
        .unwrap();
    let token = metadata
        .issuer()
        .mint(AUD, metadata.email(), Duration::from_secs(60));
    ping(&channel(&front).await, bearer(&token)).await.unwrap();
    // A token from another key is refused by this verifier.
    let rotated = Issuer::rotated().mint(AUD, EMAIL, Duration::from_secs(60));
    let answer = raw(&channel(&front).await, PING, bearer(&rotated)).await;
    answer.assert_page(401, "<title>401 Unauthorized</title>");
    let why = front.last_rejection().unwrap();
    assert!(why.contains("unknown signing key"), "{why}");
}

const PING: &str = "/testkit.Ping/Ping";

#[tokio::test]
async fn a_refused_token_gets_cloud_runs_401_page() {
    let front = FrontEnd::builder(HOST).serve(routes()).await.unwrap();
    let expired = Issuer::new()
        .token(AUD)
        .email(EMAIL)
        .issued_at(std::time::SystemTime::now() - Duration::from_secs(7200))
        .lifetime(Duration::from_secs(3600))
        .mint();
    let answer = raw(&channel(&front).await, PING, bearer(&expired)).await;
    answer.assert_page(
        401,
        "Your client does not have permission to the requested URL <code>/testkit.Ping/Ping</code>.",
    );
    assert_eq!(
        answer.header("www-authenticate"),
        Some(
            r#"Bearer error="invalid_token" error_description="The access token could not be verified""#
        )
    );
    assert!(answer.body.starts_with("\n<html><head>"), "{}", answer.body);
    assert_eq!(
        (front.accepted(), front.rejected(), front.forbidden()),
        (0, 1, 0)
    );
    // Through a plain tonic client, whatever it makes of an HTML answer, the call fails.
    assert!(
        ping(&channel(&front).await, bearer(&expired))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_missing_token_gets_cloud_runs_403_page() {
    let front = FrontEnd::builder(HOST).serve(routes()).await.unwrap();
    let channel = channel(&front).await;
    let answer = raw(&channel, PING, None).await;
    answer.assert_page(
        403,
        "Your client does not have permission to get URL <code>/testkit.Ping/Ping</code> from this server.",
    );
    assert_eq!(answer.header("www-authenticate"), None);
    assert!(front.last_rejection().unwrap().contains("missing"));
    let answer = raw(&channel, PING, Some(("authorization", "Basic abc".into()))).await;
    answer.assert_page(403, "<title>403 Forbidden</title>");
    assert!(front.last_rejection().unwrap().contains("Bearer"));
    assert_eq!(
        (front.accepted(), front.rejected(), front.forbidden()),
        (0, 0, 2)
    );
}

#[tokio::test]
async fn a_wrong_audience_is_named_and_the_token_is_not_echoed() {
    let front = FrontEnd::builder(HOST).serve(routes()).await.unwrap();
    let token = Issuer::new().mint("https://other.run.app", EMAIL, Duration::from_secs(60));
    let answer = raw(&channel(&front).await, PING, bearer(&token)).await;
    answer.assert_page(401, "Error: Unauthorized");
    let why = front.last_rejection().unwrap();
    assert!(why.contains("wrong audience"), "{why}");
    assert!(
        why.contains(AUD) && why.contains("https://other.run.app"),
        "{why}"
    );
    let signature = token.rsplit('.').next().unwrap();
    for shown in [
        why.as_str(),
        answer.body.as_str(),
        &format!("{:?}", answer.headers),
    ] {
        assert!(!shown.contains(signature), "{shown}");
    }
    assert_eq!(front.audiences_seen(), ["https://other.run.app"]);
}

#[tokio::test]
async fn a_tampered_token_is_refused() {
    let front = FrontEnd::builder(HOST).serve(routes()).await.unwrap();
    let mut token = token();
    let last = token.pop().unwrap();
    token.push(if last == 'A' { 'B' } else { 'A' });
    raw(&channel(&front).await, PING, bearer(&token))
        .await
        .assert_page(401, "Error: Unauthorized");
    let why = front.last_rejection().unwrap();
    assert!(
        why.contains("bad signature") || why.contains("malformed"),
        "{why}"
    );
}

#[tokio::test]
async fn custom_audiences_are_accepted() {
    let front = FrontEnd::builder(HOST)
        .audience("my-custom-audience")
        .serve(routes())
        .await
        .unwrap();
    let token = Issuer::new().mint("my-custom-audience", EMAIL, Duration::from_secs(60));
    ping(&channel(&front).await, bearer(&token)).await.unwrap();
    ping(&channel(&front).await, bearer(&self::token()))
        .await
        .unwrap();
}

#[tokio::test]
async fn clock_skew_makes_valid_tokens_expire() {
    let front = FrontEnd::builder(HOST).serve(routes()).await.unwrap();
    let token = Issuer::new().mint(AUD, EMAIL, Duration::from_secs(300));
    let channel = channel(&front).await;
    ping(&channel, bearer(&token)).await.unwrap();
    front.set_clock_skew(Duration::from_secs(301));
    raw(&channel, PING, bearer(&token))
        .await
        .assert_page(401, "Error: Unauthorized");
    let why = front.last_rejection().unwrap();
    assert!(why.contains("expired"), "{why}");
    front.set_clock_skew(Duration::ZERO);
    ping(&channel, bearer(&token)).await.unwrap();
}

#[tokio::test]
async fn reject_next_refuses_only_that_many_valid_tokens() {
    let front = FrontEnd::builder(HOST).serve(routes()).await.unwrap();
    let channel = channel(&front).await;
    front.reject_next(2);
    // Requests without a token do not use up the injected refusals.
    raw(&channel, PING, None)
        .await
        .assert_page(403, "Forbidden");
    for _ in 0..2 {
        raw(&channel, PING, bearer(&token()))
            .await
            .assert_page(401, "Unauthorized");
    }
    ping(&channel, bearer(&token())).await.unwrap();
    assert_eq!(
        (front.accepted(), front.rejected(), front.forbidden()),
        (1, 2, 1)
    );
}

#[tokio::test]
async fn a_service_answering_unauthenticated_is_passed_through_as_its_grpc_status() {
    let front = FrontEnd::builder(HOST).serve(routes()).await.unwrap();
    let channel = channel(&front).await;
    let answer = raw(&channel, "/testkit.Ping/Refuse", bearer(&token())).await;
    assert_eq!(answer.status, 200);
    assert!(
        answer
            .header("content-type")
            .unwrap()
            .starts_with("application/grpc")
    );
    let status = call(&channel, "/testkit.Ping/Refuse", bearer(&token()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "the service refuses this end user");
    assert_eq!((front.accepted(), front.rejected()), (2, 0));
}

#[tokio::test]
async fn only_invokers_get_through() {
    let front = FrontEnd::builder(HOST)
        .invoker("ci@p.iam.gserviceaccount.com")
        .serve(routes())
        .await
        .unwrap();
    let channel = channel(&front).await;
    let invoker = Issuer::new().mint(AUD, "ci@p.iam.gserviceaccount.com", Duration::from_secs(60));
    ping(&channel, bearer(&invoker)).await.unwrap();
    raw(&channel, PING, bearer(&token()))
        .await
        .assert_page(403, "Your client does not have permission to get URL");
    let why = front.last_rejection().unwrap();
    assert!(
        why.contains(EMAIL) && why.contains("roles/run.invoker"),
        "{why}"
    );
    assert_eq!((front.accepted(), front.forbidden()), (1, 1));
    front.set_invokers(None::<Vec<String>>);
    ping(&channel, bearer(&token())).await.unwrap();
}

#[tokio::test]
async fn fail_next_answers_with_the_front_ends_pages_then_serves() {
    let front = FrontEnd::builder(HOST).serve(routes()).await.unwrap();
    let channel = channel(&front).await;
    // A request that fails the token check gets its own answer, not the injected one.
    front.fail_next(1, 503);
    raw(&channel, PING, None)
        .await
        .assert_page(403, "Forbidden");
    raw(&channel, PING, bearer(&token()))
        .await
        .assert_page(503, "The service you requested is not available yet.");
    for (status, says) in [
        (429, "no available instance"),
        (404, "was not found on this server"),
        (502, "<title>502 Server Error</title>"),
    ] {
        front.fail_next(1, status);
        raw(&channel, PING, bearer(&token()))
            .await
            .assert_page(status, says);
    }
    front.fail_next(2, 504);
    for _ in 0..2 {
        let answer = raw(&channel, PING, bearer(&token())).await;
        assert_eq!(answer.status, 504);
        assert_eq!(answer.body, "upstream request timeout");
        assert!(answer.header("grpc-status").is_none());
    }
    ping(&channel, bearer(&token())).await.unwrap();
    assert_eq!(
        (front.failed(), front.accepted(), front.forbidden()),
        (6, 1, 1)
    );
}

#[tokio::test]
async fn plaintext_serves_h2c() {
    let front = FrontEnd::builder(HOST)
        .plaintext()
        .serve(routes())
        .await
        .unwrap();
    assert_eq!(front.url(), "http://bookstore.test.run.app");
    let channel = plaintext_channel(&front).await;
    ping(&channel, bearer(&token())).await.unwrap();
    raw(&channel, PING, None)
        .await
        .assert_page(403, "Forbidden");
}

#[tokio::test]
async fn the_grpc_status_mode_answers_as_a_server_checking_tokens_itself() {
    use cloud_run_grpc_testkit::{CloudRunAuthLayer, RefusalMode, Verifier};
    let auth = CloudRunAuthLayer::new(Verifier::new(), AUD).refusal_mode(RefusalMode::GrpcStatus);
    auth.set_invokers(Some([EMAIL]));
    let incoming =
        tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = incoming.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .layer(auth.clone())
        .add_routes(routes())
        .serve_with_incoming(incoming);
    let server = tokio::spawn(server);
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    ping(&channel, bearer(&token())).await.unwrap();
    let missing = ping(&channel, None).await.unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated, "{missing:?}");
    assert!(
        missing.message().contains("missing ID token"),
        "{missing:?}"
    );
    let refused = ping(&channel, Some(("authorization", "Bearer not.a.jwt".into())))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let stranger = Issuer::new().mint(
        AUD,
        "stranger@p.iam.gserviceaccount.com",
        Duration::from_secs(60),
    );
    let denied = ping(&channel, bearer(&stranger)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let answer = raw(&channel, PING, None).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("grpc-status"), Some("16"));
    assert_eq!(
        (auth.accepted(), auth.rejected(), auth.forbidden()),
        (1, 1, 3)
    );
    server.abort();
}

#[tokio::test]
async fn a_client_not_trusting_the_ca_cannot_connect() {
    let front = FrontEnd::builder(HOST).serve(routes()).await.unwrap();
    let other = FrontEnd::builder(HOST).serve(routes()).await.unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(other.ca_certificate_pem()))
        .domain_name(HOST);
    let channel = Endpoint::from_shared(format!("https://{}", front.addr()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    assert!(ping(&channel, bearer(&token())).await.is_err());
    assert_eq!(front.accepted() + front.rejected(), 0);
}

#[tokio::test]
async fn stop_fails_in_flight_calls() {
    let front = FrontEnd::builder(HOST).serve(routes()).await.unwrap();
    let channel = channel(&front).await;
    ping(&channel, bearer(&token())).await.unwrap();
    let in_flight = tokio::spawn({
        let channel = channel.clone();
        async move { ping_slow(&channel, bearer(&token())).await }
    });
    wait_until("the slow call reaches the service", || {
        front.accepted() == 2
    })
    .await;
    front.stop().await;
    let status = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            status.code(),
            Code::Unavailable | Code::Unknown | Code::Cancelled
        ),
        "{status:?}"
    );
}

#[tokio::test]
async fn stop_fails_calls_and_restart_serves_the_same_port() {
    let front = FrontEnd::builder(HOST).serve(routes()).await.unwrap();
    let addr = front.addr();
    let channel = channel(&front).await;
    ping(&channel, bearer(&token())).await.unwrap();
    front.stop().await;
    // The first call may still pick the dead connection (CANCELLED); then the port refuses.
    let status = ping(&channel, bearer(&token())).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::Unavailable | Code::Cancelled),
        "{status:?}"
    );
    let status = ping(&channel, bearer(&token())).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    front.restart().await.unwrap();
    assert_eq!(front.addr(), addr);
    // The same channel reconnects.
    ping_until_reconnected(&channel).await.unwrap();
    assert_eq!(front.accepted(), 2);
    front.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn goaway_lets_calls_in_flight_finish_and_new_ones_reconnect() {
    let front = FrontEnd::builder(HOST).serve(routes()).await.unwrap();
    let channel = channel(&front).await;
    ping(&channel, bearer(&token())).await.unwrap();
    assert_eq!(front.connections(), 1);
    let in_flight: Vec<_> = (0..5)
        .map(|_| {
            let channel = channel.clone();
            tokio::spawn(
                async move { call(&channel, "/testkit.Ping/Medium", bearer(&token())).await },
            )
        })
        .collect();
    wait_until("the calls reach the service", || front.accepted() == 6).await;
    front.goaway().await.unwrap();
    for call in in_flight {
        call.await.unwrap().unwrap();
    }
    ping_until_reconnected(&channel).await.unwrap();
    assert_eq!(
        front.connections(),
        2,
        "the client reconnected after GOAWAY"
    );
    front.stop().await;
    assert!(front.goaway().await.is_err());
}
