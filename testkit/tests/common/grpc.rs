//! A one-method gRPC service behind the emulators, and a plain tonic client for it.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use cloud_run_grpc_testkit::{FrontEnd, Issuer};
use tonic::Status;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

pub const HOST: &str = "bookstore.test.run.app";
pub const AUD: &str = "https://bookstore.test.run.app";
pub const EMAIL: &str = "caller@p.iam.gserviceaccount.com";

/// A one-method gRPC service, `/testkit.Ping/Ping`, taking and returning `Empty`.
#[derive(Clone)]
pub struct Ping;

impl NamedService for Ping {
    const NAME: &'static str = "testkit.Ping";
}

/// Answers after `delay` (`/testkit.Ping/Slow` waits ten seconds, `Medium` half a second,
/// `Ping` not at all); `/testkit.Ping/Refuse` answers `UNAUTHENTICATED` itself, as a service
/// refusing an end user's credential does.
struct PingMethod {
    delay: Duration,
    refuse: bool,
}

impl tonic::server::UnaryService<()> for PingMethod {
    type Response = ();
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<()>, Status>> + Send>>;

    fn call(&mut self, _: tonic::Request<()>) -> Self::Future {
        let (delay, refuse) = (self.delay, self.refuse);
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            if refuse {
                return Err(Status::unauthenticated("the service refuses this end user"));
            }
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
        let refuse = path.ends_with("/Refuse");
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<(), ()>::default());
            Ok(grpc.unary(PingMethod { delay, refuse }, request).await)
        })
    }
}

pub fn routes() -> tonic::service::Routes {
    tonic::service::Routes::new(Ping)
}

/// A channel dialling the front end's address with its host as TLS name and authority.
pub async fn channel(front: &FrontEnd) -> Channel {
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

pub async fn plaintext_channel(front: &FrontEnd) -> Channel {
    Endpoint::from_shared(format!("http://{}", front.addr()))
        .unwrap()
        .timeout(Duration::from_secs(5))
        .connect_lazy()
}

/// Calls Ping with the given metadata header, if any.
pub async fn ping(channel: &Channel, header: Option<(&'static str, String)>) -> Result<(), Status> {
    call(channel, "/testkit.Ping/Ping", header).await
}

/// Calls the method that answers after ten seconds.
pub async fn ping_slow(
    channel: &Channel,
    header: Option<(&'static str, String)>,
) -> Result<(), Status> {
    call(channel, "/testkit.Ping/Slow", header).await
}

/// Pings until one goes through and returns the last result, giving the channel up to 20
/// tries, 50 ms apart, to notice that its old connection died and connect again.
pub async fn ping_until_reconnected(channel: &Channel) -> Result<(), Status> {
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

pub async fn call(
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

pub fn bearer(token: &str) -> Option<(&'static str, String)> {
    Some(("authorization", format!("Bearer {token}")))
}

pub fn token() -> String {
    Issuer::new().mint(AUD, EMAIL, Duration::from_secs(3600))
}
