//! What `#[cloud_run_client]` accepts compiles, and the struct it makes works as documented:
//! each option, and the expansion's hygiene.
//!
//! These were trybuild `pass` cases; as ordinary tests they are compiled once, with the rest of
//! the workspace, instead of built and run as programs against a second build of the runtime.
//! `-D warnings` and `missing_docs` apply to the expansion here as in a user crate that denies
//! them.
#![deny(warnings, missing_docs)]

mod pb {
    cloud_run_grpc::include_proto!("acme.bookstore.v1");
}

fn assert_send_sync<T: Send + Sync + 'static>() {}

/// `host` and `service`: the struct derefs to the generated wrapper, so every RPC is a method.
mod service {
    use super::{assert_send_sync, pb};

    #[cloud_run_grpc::cloud_run_client(
        host = "bookstore-abc123-ew.a.run.app",
        service = pb::bookstore_cloud_run::Bookstore,
    )]
    pub struct Bookstore;

    #[test]
    fn the_struct_has_the_constants_the_shared_channel_and_the_rpcs() {
        assert_eq!(Bookstore::HOST, "bookstore-abc123-ew.a.run.app");
        assert_eq!(Bookstore::URL, "https://bookstore-abc123-ew.a.run.app");
        assert_eq!(Bookstore::AUDIENCE, "https://bookstore-abc123-ew.a.run.app");
        assert_send_sync::<Bookstore>();

        let books = Bookstore::new();
        assert_eq!(books.channel().host(), "bookstore-abc123-ew.a.run.app");
        assert_eq!(books.channel().audience(), Bookstore::AUDIENCE);

        // `Deref` to the wrapper: its RPCs and its `client()` are callable on the struct.
        let wrapper: &pb::bookstore_cloud_run::Bookstore = &books;
        let _tonic_client = wrapper.client();
        let _call = books.create_book(pb::CreateBookRequest::default());

        // `new()`, `Default` and `Clone` all give the one shared channel and token cache.
        let again = Bookstore::default();
        assert!(again.channel().shares_token_cache_with(books.channel()));
        let copy = books.clone();
        assert!(copy.channel().shares_token_cache_with(books.channel()));

        let debug = format!("{books:?}");
        assert!(
            debug.starts_with("Bookstore { url: \"https://bookstore-abc123-ew.a.run.app\""),
            "{debug}"
        );
        assert!(
            debug.contains("audience: \"https://bookstore-abc123-ew.a.run.app\""),
            "{debug}"
        );
    }

    #[test]
    fn with_channel_takes_any_channel_instead_of_the_shared_one() {
        let channel = cloud_run_grpc::CloudRunChannel::builder("elsewhere.example.com")
            .build()
            .expect("a channel, built without I/O");
        let elsewhere = Bookstore::with_channel(channel);
        assert_eq!(elsewhere.channel().host(), "elsewhere.example.com");
        assert!(
            !elsewhere
                .channel()
                .shares_token_cache_with(Bookstore::new().channel())
        );
    }
}

/// `client`: a plain tonic client on the shared channel, for users of plain tonic-build.
mod client {
    use cloud_run_grpc::CloudRunChannel;

    use super::pb;
    use super::pb::bookstore_client::BookstoreClient;

    #[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app", client = BookstoreClient)]
    pub struct Bookstore;

    #[test]
    fn the_struct_hands_out_the_tonic_client() {
        let books = Bookstore::new();
        let mut client: BookstoreClient<CloudRunChannel> = books.client();
        let _call = client.get_book(pb::GetBookRequest::default());
        assert_eq!(books.channel().audience(), Bookstore::AUDIENCE);
        assert!(format!("{books:?}").contains("bookstore-abc123-ew.a.run.app"));
    }
}

/// `audience`: a custom audience, as Cloud Run allows them.
mod audience {
    use super::pb;

    #[cloud_run_grpc::cloud_run_client(
        host = "bookstore-abc123-ew.a.run.app",
        service = pb::bookstore_cloud_run::Bookstore,
        audience = "https://books.example.com",
    )]
    pub struct Bookstore;

    #[test]
    fn the_channel_asks_for_tokens_for_the_custom_audience() {
        assert_eq!(Bookstore::AUDIENCE, "https://books.example.com");
        let books = Bookstore::new();
        assert_eq!(books.channel().audience(), "https://books.example.com");
        assert_eq!(books.channel().host(), "bookstore-abc123-ew.a.run.app");
    }
}

/// `header`: the token goes in `authorization` (the default) or `x-serverless-authorization`,
/// named in any case.
mod header {
    use super::pb;

    #[cloud_run_grpc::cloud_run_client(
        host = "header-abc123-ew.a.run.app",
        service = pb::bookstore_cloud_run::Bookstore,
        header = "x-serverless-authorization",
    )]
    pub struct Serverless;

    #[cloud_run_grpc::cloud_run_client(
        host = "header-abc123-ew.a.run.app",
        service = pb::bookstore_cloud_run::Bookstore,
        header = "Authorization",
    )]
    pub struct Standard;

    #[test]
    fn either_header_shares_the_token_cache_of_the_audience() {
        let serverless = Serverless::new();
        let standard = Standard::new();
        for debug in [format!("{serverless:?}"), format!("{standard:?}")] {
            assert!(!debug.contains("misconfigured"), "{debug}");
        }
        assert!(
            serverless
                .channel()
                .shares_token_cache_with(standard.channel())
        );
    }
}

/// `timeout`: a deadline for each call, in `ms`, `s` or `m`.
mod timeout {
    use super::pb::bookstore_cloud_run::Bookstore as Wrapper;

    #[cloud_run_grpc::cloud_run_client(host = "timeout-abc123-ew.a.run.app", service = Wrapper, timeout = "500ms")]
    pub struct Fast;

    #[cloud_run_grpc::cloud_run_client(host = "timeout-abc123-ew.a.run.app", service = Wrapper, timeout = "30s")]
    pub struct Usual;

    #[cloud_run_grpc::cloud_run_client(host = "timeout-abc123-ew.a.run.app", service = Wrapper, timeout = "2m")]
    pub struct Patient;

    #[test]
    fn each_unit_gives_a_working_channel() {
        let (fast, usual, patient) = (Fast::new(), Usual::new(), Patient::new());
        for debug in [
            format!("{fast:?}"),
            format!("{usual:?}"),
            format!("{patient:?}"),
        ] {
            assert!(!debug.contains("misconfigured"), "{debug}");
        }
        assert!(fast.channel().shares_token_cache_with(patient.channel()));
    }
}

/// `url`, and `host` with a port: https with any port, and plaintext http to loopback
/// addresses only; the audience never has the port.
mod url {
    use super::pb::bookstore_cloud_run::Bookstore as Wrapper;

    #[cloud_run_grpc::cloud_run_client(url = "https://bookstore.example.com:8443/", service = Wrapper)]
    pub struct CustomDomain;

    #[cloud_run_grpc::cloud_run_client(host = "bookstore.example.com:8443", service = Wrapper)]
    pub struct HostWithPort;

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

    #[test]
    fn the_compiled_in_constants_agree_with_the_runtime() {
        check!(
            CustomDomain,
            "bookstore.example.com",
            "https://bookstore.example.com:8443",
            "https://bookstore.example.com",
            "bookstore.example.com:8443"
        );
        check!(
            HostWithPort,
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
}

/// Generated code uses absolute paths and prefixed names only: it compiles without the
/// prelude, beside items that shadow every name it could use, under `missing_docs`.
pub mod hygiene {
    #![no_implicit_prelude]

    /// Shadows of what generated code might name.
    pub mod core {}
    /// Shadows of what generated code might name.
    pub mod std {}
    /// Shadows of what generated code might name.
    pub mod cloud_run_grpc {}
    /// Shadows of what generated code might name.
    pub struct Option;
    /// Shadows of what generated code might name.
    pub struct Some;
    /// Shadows of what generated code might name.
    pub struct None;
    /// Shadows of what generated code might name.
    pub struct Duration;
    /// Shadows of what generated code might name.
    pub trait Clone {}
    /// Shadows of what generated code might name.
    pub trait Default {}
    /// Shadows of what generated code might name.
    pub trait Debug {}
    /// Shadows of what generated code might name.
    pub trait Deref {}
    /// Shadows of what generated code might name.
    pub trait ServiceWrapper {}
    /// Shadows of what generated code might name.
    pub type Result = ();
    /// Shadows of what generated code might name.
    pub struct CloudRunChannel;

    /// The bookstore.
    #[::cloud_run_grpc::cloud_run_client(
        host = "hygiene-abc123-ew.a.run.app",
        service = crate::pb::bookstore_cloud_run::Bookstore,
        audience = "aud",
        env = "UI_HYGIENE_URL",
        header = "authorization",
        timeout = "1s",
    )]
    pub struct Bookstore;

    /// The bookstore, as a tonic client.
    #[::cloud_run_grpc::cloud_run_client(
        url = "http://127.0.0.1:1",
        client = crate::pb::bookstore_client::BookstoreClient,
    )]
    pub struct Raw;

    #[test]
    fn the_expansion_stands_among_the_shadows() {
        let books = Bookstore::new();
        let _wrapper: &crate::pb::bookstore_cloud_run::Bookstore = &books;
        let _client = <Raw as ::core::default::Default>::default().client();
    }
}
