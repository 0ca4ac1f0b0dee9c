//! The Cloud-Run-like front end, called by a plain tonic client over TLS.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use cloud_run_grpc_testkit::{FrontEnd, Issuer, MetadataEmulator};
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

const HOST: &str = "bookstore.test.run.app";
const AUD: &str = "https://bookstore.test.run.app";
const EMAIL: &str = "caller@p.iam.gserviceaccount.com";

/// A one-method gRPC service, `/testkit.Ping/Ping`, taking and returning `Empty`.
#[derive(Clone)]
struct Ping;

impl NamedService for Ping {
    const NAME: &'static str = "testkit.Ping";
}

/// Answers after `delay` (`/testkit.Ping/Slow` waits ten seconds, `Medium` half a second,
/// `Ping` not at all).
struct PingMethod {
    delay: Duration,
}

impl tonic::server::UnaryService<()> for PingMethod {
    type Response = ();
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<()>, Status>> + Send>>;

    fn call(&mut self, _: tonic::Request<()>) -> Self::Future {
        let delay = self.delay;
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            Ok(tonic::Response::new(()))
        })
    }
}

impl tower_service::Service<http::Request<tonic::body::Body>> for Ping {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let path = request.uri().path();
        let delay = if path.ends_with("/Slow") {
            Duration::from_secs(10)
        } else if path.ends_with("/Medium") {
            Duration::from_millis(500)
        } else {
            Duration::ZERO
        };
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<(), ()>::default());
            Ok(grpc.unary(PingMethod { delay }, request).await)
        })
    }
}

fn routes() -> tonic::service::Routes {
    tonic::service::Routes::new(Ping)
}

/// A channel dialling the front end's address with its host as TLS name and authority.
async fn channel(front: &FrontEnd) -> Channel {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(front.ca_certificate_pem()))
        .domain_name(front.host());
    Endpoint::from_shared(format!("https://{}", front.addr()))
        .unwrap()
        .origin(format!("https://{}", front.host()).parse().unwrap())
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .connect_lazy()
}

async fn plaintext_channel(front: &FrontEnd) -> Channel {
    Endpoint::from_shared(format!("http://{}", front.addr()))
        .unwrap()
        .timeout(Duration::from_secs(5))
        .connect_lazy()
}

/// Calls Ping with the given metadata header, if any.
async fn ping(channel: &Channel, header: Option<(&'static str, String)>) -> Result<(), Status> {
    call(channel, "/testkit.Ping/Ping", header).await
}

/// Calls the method that answers after ten seconds.
async fn ping_slow(
    channel: &Channel,
    header: Option<(&'static str, String)>,
) -> Result<(), Status> {
    call(channel, "/testkit.Ping/Slow", header).await
}

/// Pings until one goes through and returns the last result, giving the channel up to 20
/// tries, 50 ms apart, to notice that its old connection died and connect again.
async fn ping_until_reconnected(channel: &Channel) -> Result<(), Status> {
    let mut result = Err(Status::unknown("not tried"));
    for _ in 0..20 {
        result = ping(channel, bearer(&token())).await;
        if result.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    result
}

async fn call(
    channel: &Channel,
    path: &'static str,
    header: Option<(&'static str, String)>,
) -> Result<(), Status> {
    let mut request = tonic::Request::new(());
    if let Some((name, value)) = header {
        request.metadata_mut().insert(name, value.parse().unwrap());
    }
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    grpc.unary(
        request,
        http::uri::PathAndQuery::from_static(path),
        tonic_prost::ProstCodec::<(), ()>::default(),
    )
    .await
    .map(|_| ())
}

fn bearer(token: &str) -> Option<(&'static str, String)> {
    Some(("authorization", format!("Bearer {token}")))
}

fn token() -> String {
    Issuer::new().mint(AUD, EMAIL, Duration::from_secs(3600))
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
    let status = ping(&channel(&front).await, bearer(&rotated))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status.message().contains("unknown signing key"),
        "{status:?}"
    );
}

#[tokio::test]
async fn a_missing_token_is_unauthenticated() {
    let front = FrontEnd::builder(HOST).serve(routes()).await.unwrap();
    let status = ping(&channel(&front).await, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("missing"), "{status:?}");
    let status = ping(
        &channel(&front).await,
        Some(("authorization", "Basic abc".into())),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("Bearer"), "{status:?}");
    assert_eq!((front.accepted(), front.rejected()), (0, 2));
}

#[tokio::test]
async fn a_wrong_audience_is_named_and_the_token_is_not_echoed() {
    let front = FrontEnd::builder(HOST).serve(routes()).await.unwrap();
    let token = Issuer::new().mint("https://other.run.app", EMAIL, Duration::from_secs(60));
    let status = ping(&channel(&front).await, bearer(&token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let message = status.message();
    assert!(message.contains("wrong audience"), "{message}");
    assert!(message.contains(AUD) && message.contains("https://other.run.app"));
    assert!(!message.contains(&token));
    assert!(!format!("{status:?}").contains(&token));
    assert_eq!(front.last_rejection().as_deref(), Some(message));
}

#[tokio::test]
async fn a_tampered_token_has_a_bad_signature() {
    let front = FrontEnd::builder(HOST).serve(routes()).await.unwrap();
    let mut token = token();
    let last = token.pop().unwrap();
    token.push(if last == 'A' { 'B' } else { 'A' });
    let status = ping(&channel(&front).await, bearer(&token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status.message().contains("bad signature") || status.message().contains("malformed"),
        "{status:?}"
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
    let status = ping(&channel, bearer(&token)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("expired"), "{status:?}");
    front.set_clock_skew(Duration::ZERO);
    ping(&channel, bearer(&token)).await.unwrap();
}

#[tokio::test]
async fn reject_next_rejects_only_that_many_valid_calls() {
    let front = FrontEnd::builder(HOST).serve(routes()).await.unwrap();
    let channel = channel(&front).await;
    front.reject_next(2);
    // Invalid calls do not use up the injected rejections.
    assert!(ping(&channel, None).await.is_err());
    for _ in 0..2 {
        let status = ping(&channel, bearer(&token())).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    ping(&channel, bearer(&token())).await.unwrap();
    assert_eq!((front.accepted(), front.rejected()), (1, 3));
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
    assert_eq!(
        ping(&channel, None).await.unwrap_err().code(),
        Code::Unauthenticated
    );
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
    tokio::time::sleep(Duration::from_millis(200)).await;
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
    tokio::time::sleep(Duration::from_millis(150)).await;
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
