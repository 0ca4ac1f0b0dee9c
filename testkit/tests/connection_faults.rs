//! The dead-connection tools, against a plain tonic client: a proxy whose connections go
//! silent, a server that never finishes a TLS handshake, and grpc-go's PING policing.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloud_run_grpc_testkit::{FrontEnd, KeepaliveEnforcer, SilentServer, TcpProxy};
use common::grpc::{HOST, bearer, call, ping, ping_slow, ping_until_reconnected, routes, token};
use common::wait_until;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// A TLS channel to the front end's host that dials `addr`, with HTTP/2 keep-alive PINGs every
/// `keep_alive` (and a timeout of three of them) when given.
fn channel_through(
    front: &FrontEnd,
    addr: std::net::SocketAddr,
    keep_alive: Option<Duration>,
) -> Channel {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(front.ca_certificate_pem()))
        .domain_name(front.host());
    let mut endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .origin(format!("https://{}", front.host()).parse().unwrap())
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20));
    if let Some(interval) = keep_alive {
        endpoint = endpoint
            .http2_keep_alive_interval(interval)
            .keep_alive_timeout(interval * 3);
    }
    endpoint.connect_lazy()
}

#[tokio::test]
async fn a_silenced_connection_is_found_by_keep_alive_and_new_calls_get_a_new_one() {
    let front = FrontEnd::builder(HOST).serve(routes()).await.unwrap();
    let proxy = TcpProxy::start(front.addr()).await.unwrap();
    assert_eq!(proxy.target(), front.addr());
    let channel = channel_through(&front, proxy.addr(), Some(Duration::from_millis(100)));
    ping(&channel, bearer(&token())).await.unwrap();
    let in_flight = tokio::spawn({
        let channel = channel.clone();
        async move { ping_slow(&channel, bearer(&token())).await }
    });
    wait_until("the slow call reaches the service", || {
        front.accepted() == 2
    })
    .await;
    let silenced = Instant::now();
    proxy.silence();
    let failed = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("keep-alive ends the call")
        .unwrap();
    assert!(failed.is_err(), "{failed:?}");
    // PINGs every 100ms, each given 300ms to be answered.
    assert!(
        silenced.elapsed() < Duration::from_secs(2),
        "took {:?}",
        silenced.elapsed()
    );
    assert_eq!(proxy.silenced(), 1);
    ping_until_reconnected(&channel).await.unwrap();
    assert_eq!((proxy.connections(), front.connections()), (2, 2));
}

#[tokio::test]
async fn without_keep_alive_a_call_on_a_silenced_connection_just_hangs() {
    let front = FrontEnd::builder(HOST).serve(routes()).await.unwrap();
    let proxy = TcpProxy::start(front.addr()).await.unwrap();
    let channel = channel_through(&front, proxy.addr(), None);
    ping(&channel, bearer(&token())).await.unwrap();
    proxy.silence();
    // Nothing closes the connection: the call waits for an answer that never comes.
    let call = ping(&channel, bearer(&token()));
    assert!(
        tokio::time::timeout(Duration::from_millis(500), call)
            .await
            .is_err()
    );
    assert_eq!((front.accepted(), proxy.connections()), (1, 1));
}

#[tokio::test]
async fn new_connections_can_be_silenced_too_until_healed() {
    let front = FrontEnd::builder(HOST).serve(routes()).await.unwrap();
    let proxy = TcpProxy::start(front.addr()).await.unwrap();
    proxy.silence_new_connections();
    // TCP connects; the TLS handshake never completes, nothing reaches the front end.
    let stuck_channel = channel_through(&front, proxy.addr(), None);
    let stuck = ping(&stuck_channel, bearer(&token()));
    assert!(
        tokio::time::timeout(Duration::from_millis(500), stuck)
            .await
            .is_err()
    );
    assert_eq!((proxy.connections(), proxy.silenced()), (1, 1));
    assert_eq!(front.connections(), 0);
    proxy.heal();
    ping(
        &channel_through(&front, proxy.addr(), None),
        bearer(&token()),
    )
    .await
    .unwrap();
    assert_eq!((proxy.connections(), front.connections()), (2, 1));
}

#[tokio::test]
async fn a_silent_server_reads_the_client_hello_and_never_answers() {
    let silent = SilentServer::start().await.unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(tokio_rustls::rustls::RootCertStore::empty())
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let socket = tokio::net::TcpStream::connect(silent.addr()).await.unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(HOST).unwrap();
    let handshake = connector.connect(name, socket);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), handshake)
            .await
            .is_err(),
        "the handshake finished"
    );
    assert_eq!(silent.connections(), 1);
    assert!(silent.bytes_received() > 100, "no ClientHello read");

    // A tonic channel waits for it too, until its own deadline.
    let front = FrontEnd::builder(HOST).serve(routes()).await.unwrap();
    let stuck_channel = channel_through(&front, silent.addr(), None);
    let stuck = ping(&stuck_channel, bearer(&token()));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), stuck)
            .await
            .is_err()
    );
    assert_eq!(silent.connections(), 2);
}

/// An h2c channel to `addr` that pings every `interval` (with no stream open too, when
/// `while_idle`), waiting long for the answers.
fn pinging(addr: std::net::SocketAddr, interval: Duration, while_idle: bool) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .http2_keep_alive_interval(interval)
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(while_idle)
        .timeout(Duration::from_secs(20))
        .connect_lazy()
}

async fn plaintext_front_end() -> FrontEnd {
    FrontEnd::builder(HOST)
        .plaintext()
        .serve(routes())
        .await
        .unwrap()
}

#[tokio::test]
async fn pings_too_often_while_a_call_waits_get_goaway_too_many_pings() {
    let front = plaintext_front_end().await;
    let enforcer = KeepaliveEnforcer::builder(front.addr())
        .min_time(Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    let channel = pinging(enforcer.addr(), Duration::from_millis(50), false);
    let started = Instant::now();
    // The service holds the call for ten seconds and says nothing meanwhile.
    let status = ping_slow(&channel, bearer(&token())).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    // The connection is closed right after the GOAWAY, as grpc-go does: the call in flight
    // fails with the broken connection (the frame itself is checked byte by byte below).
    assert_ne!(status.code(), tonic::Code::Ok);
    assert_eq!(enforcer.goaways(), 1);
    assert_eq!(enforcer.strikes(), 3, "GOAWAY at the third strike");
    assert_eq!(enforcer.pings(), 4, "the first PING is never a strike");
    // The channel connects again.
    ping_until_reconnected(&channel).await.unwrap();
    assert_eq!(enforcer.connections(), 2);
}

#[tokio::test]
async fn pings_spaced_by_min_time_are_fine() {
    let front = plaintext_front_end().await;
    let enforcer = KeepaliveEnforcer::builder(front.addr())
        .min_time(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    let channel = pinging(enforcer.addr(), Duration::from_millis(200), false);
    // The service holds this call for half a second: two PINGs, 200ms apart.
    call(&channel, "/testkit.Ping/Medium", bearer(&token()))
        .await
        .unwrap();
    assert!(enforcer.pings() >= 1, "no PING was sent");
    assert_eq!((enforcer.strikes(), enforcer.goaways()), (0, 0));
}

#[tokio::test]
async fn pings_with_no_call_open_are_strikes_unless_permitted() {
    let front = plaintext_front_end().await;
    let strict = KeepaliveEnforcer::builder(front.addr())
        .min_time(Duration::from_millis(10))
        .start()
        .await
        .unwrap();
    let channel = pinging(strict.addr(), Duration::from_millis(50), true);
    ping(&channel, bearer(&token())).await.unwrap();
    // Idle: a PING every 50ms, each within two hours of the last.
    wait_until("GOAWAY on an idle connection", || strict.goaways() == 1).await;
    assert_eq!(strict.strikes(), 3);

    let permissive = KeepaliveEnforcer::builder(front.addr())
        .min_time(Duration::from_millis(10))
        .permit_without_stream(true)
        .start()
        .await
        .unwrap();
    let channel = pinging(permissive.addr(), Duration::from_millis(50), true);
    ping(&channel, bearer(&token())).await.unwrap();
    wait_until("idle PINGs", || permissive.pings() >= 5).await;
    assert_eq!((permissive.strikes(), permissive.goaways()), (0, 0));
}

/// Reads one HTTP/2 frame: type, flags, stream id, payload.
async fn read_frame(socket: &mut tokio::net::TcpStream) -> std::io::Result<(u8, u8, u32, Vec<u8>)> {
    use tokio::io::AsyncReadExt as _;
    let mut header = [0; 9];
    socket.read_exact(&mut header).await?;
    let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
    let mut payload = vec![0; length];
    socket.read_exact(&mut payload).await?;
    Ok((header[3], header[4], stream, payload))
}

#[tokio::test]
async fn the_goaway_is_the_one_grpc_go_sends() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let front = plaintext_front_end().await;
    let enforcer = KeepaliveEnforcer::builder(front.addr())
        .start()
        .await
        .unwrap();
    let mut socket = tokio::net::TcpStream::connect(enforcer.addr())
        .await
        .unwrap();
    // The preface, empty SETTINGS, then four PINGs with no stream open: the first is never a
    // strike, the next three are (within two hours of each other).
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    for n in 0..4u8 {
        hello.extend_from_slice(&[0, 0, 8, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, n]);
    }
    socket.write_all(&hello).await.unwrap();
    let goaway = tokio::time::timeout(common::DEADLINE, async {
        // Bounded by the deadline: SETTINGS, its ACK and the PING ACKs come first.
        loop {
            let (kind, _, stream, payload) = read_frame(&mut socket).await.unwrap();
            if kind == 7 {
                break (stream, payload);
            }
        }
    })
    .await
    .expect("a GOAWAY");
    let (stream, payload) = goaway;
    assert_eq!(stream, 0);
    assert_eq!(
        &payload[..4],
        &[0, 0, 0, 0],
        "last stream id: none was opened"
    );
    assert_eq!(&payload[4..8], &[0, 0, 0, 0xb], "ENHANCE_YOUR_CALM");
    assert_eq!(&payload[8..], b"too_many_pings");
    // Then the connection is closed.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(common::DEADLINE, socket.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "still open");
    assert_eq!(
        (enforcer.pings(), enforcer.strikes(), enforcer.goaways()),
        (4, 3, 1)
    );
}
