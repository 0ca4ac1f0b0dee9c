//! `url`: https with any port, and plaintext http to loopback addresses only.

pub struct Wrapper;

impl Wrapper {
    pub fn new(_: cloud_run_grpc::CloudRunChannel) -> Self {
        Wrapper
    }
}

#[cloud_run_grpc::cloud_run_client(url = "https://bookstore.example.com:8443/", service = Wrapper)]
pub struct CustomDomain;

#[cloud_run_grpc::cloud_run_client(url = "http://127.0.0.1:8080", service = Wrapper)]
pub struct LocalV4;

#[cloud_run_grpc::cloud_run_client(url = "http://[::1]:50051", service = Wrapper)]
pub struct LocalV6;

#[cloud_run_grpc::cloud_run_client(url = "http://localhost:8080", service = Wrapper)]
pub struct Localhost;

macro_rules! check {
    ($client:ty, $host:literal, $url:literal, $audience:literal, $authority:literal) => {{
        assert_eq!(<$client>::HOST, $host);
        assert_eq!(<$client>::URL, $url);
        assert_eq!(<$client>::AUDIENCE, $audience);
        let client = <$client>::new();
        // The runtime agrees with the compiled-in constants.
        assert_eq!(client.channel().host(), $authority);
        assert_eq!(client.channel().audience(), <$client>::AUDIENCE);
        assert!(
            !format!("{client:?}").contains("misconfigured"),
            "{client:?}"
        );
    }};
}

fn main() {
    check!(
        CustomDomain,
        "bookstore.example.com",
        "https://bookstore.example.com:8443",
        "https://bookstore.example.com",
        "bookstore.example.com:8443"
    );
    check!(
        LocalV4,
        "127.0.0.1",
        "http://127.0.0.1:8080",
        "https://127.0.0.1",
        "127.0.0.1:8080"
    );
    check!(
        LocalV6,
        "[::1]",
        "http://[::1]:50051",
        "https://[::1]",
        "[::1]:50051"
    );
    check!(
        Localhost,
        "localhost",
        "http://localhost:8080",
        "https://localhost",
        "localhost:8080"
    );
}
