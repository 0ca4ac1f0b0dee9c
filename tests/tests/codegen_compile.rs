//! The code `cloud-run-grpc-build` generates compiles where users put it: under
//! `#![deny(missing_docs)]` and `-D warnings`, beside user items that shadow every crate and
//! prelude name a relative path could pick up, for awkward protos (keyword method names,
//! messages named `Result`/`Option`/`Box`, well-known types, nested packages, deprecation).
//!
//! Most of this file is checked by the compiler; the tests construct every wrapper future so
//! each signature is type-checked against the messages it should take and return.
#![deny(missing_docs, warnings)]
#![warn(clippy::pedantic)]

use std::time::Duration;

use cloud_run_grpc::CloudRunChannel;
use cloud_run_grpc::token::{IdToken, StaticToken};

/// Declares, in the module it is expanded in, an item for every name that generated code must
/// not reach relatively: if a generated path at package level were `prost::…`, `tonic::…`,
/// `core::…` or a bare prelude name, it would resolve to one of these and fail to compile.
macro_rules! decoys {
    () => {
        mod prost {}
        mod prost_types {}
        mod tonic {}
        mod tonic_prost {}
        mod cloud_run_grpc {}
        mod core {}
        mod std {}
        mod alloc {}
        #[allow(unused_imports)]
        use ::std::fmt::Error as Default;
        #[allow(unused_imports)]
        use ::std::fmt::Error as Clone;
        #[allow(unused_imports)]
        use ::std::fmt::Error as Send;
        #[allow(unused_imports)]
        use ::std::fmt::Error as Future;
        #[allow(unused_imports)]
        use ::std::fmt::Error as Debug;
    };
}

/// The same decoys plus the prelude types, for packages that do not define messages with
/// those names themselves.
macro_rules! prelude_decoys {
    () => {
        decoys!();
        #[allow(unused_imports)]
        use ::std::fmt::Error as Option;
        #[allow(unused_imports)]
        use ::std::fmt::Error as Result;
        #[allow(unused_imports)]
        use ::std::fmt::Error as Box;
        #[allow(unused_imports)]
        use ::std::fmt::Error as String;
        #[allow(unused_imports)]
        use ::std::fmt::Error as Vec;
    };
}

/// The bookstore package, included as `include_proto!` would.
pub mod bookstore {
    prelude_decoys!();
    ::cloud_run_grpc::include_proto!("acme.bookstore.v1");
}

/// The awkward packages, nested by hand so every package module can hold decoys.
pub mod acme {
    /// `acme.awkward.*`
    pub mod awkward {
        /// `acme.awkward.v1`: defines `Result`, `Option` and `Box` itself.
        pub mod v1 {
            decoys!();
            ::cloud_run_grpc::include_proto!("acme.awkward.v1");

            /// `acme.awkward.v1.inner`, nested inside its parent package.
            pub mod inner {
                prelude_decoys!();
                ::cloud_run_grpc::include_proto!("acme.awkward.v1.inner");
            }
        }
    }
    /// `acme.inner.*`
    pub mod inner {
        /// `acme.inner.v1`, beside `acme.awkward.v1`.
        pub mod v1 {
            prelude_decoys!();
            ::cloud_run_grpc::include_proto!("acme.inner.v1");
        }
    }
}

/// The same packages through the generated include file (whose modules it documents).
pub mod through_include_file {
    include!(concat!(env!("OUT_DIR"), "/awkward.rs"));
}

fn channel() -> CloudRunChannel {
    // Never used to send anything: the futures below are built, not awaited.
    let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDB9.c2ln";
    CloudRunChannel::builder("awkward-abc123-ew.a.run.app")
        .token_source(StaticToken::new(IdToken::from_jwt(jwt).expect("valid jwt")))
        .build()
        .expect("channel")
}

fn assert_send<T: Send>(value: T) -> T {
    value
}

#[tokio::test]
async fn wrapper_signatures_take_and_return_the_right_messages() {
    use acme::awkward::v1 as aw;
    use tokio_stream::iter;

    let awkward = aw::awkward_cloud_run::Awkward::new(channel());
    let options = || aw::Option {
        name: "o".into(),
        enabled: true,
    };

    // Unary, keyword name: takes `Option`, returns `Result` (the messages, not the prelude).
    drop(assert_send(awkward.r#type(options())));

    // Client streaming, keyword name.
    drop(assert_send(awkward.r#move(iter(vec![aw::Box::default()]))));
    // Server streaming from `google.protobuf.Empty`.
    drop(assert_send(awkward.r#async(())));
    // Bidirectional, renamed because `client()` is the wrapper's own.
    drop(assert_send(awkward.client_rpc(iter(vec![options()]))));
    // Well-known types both ways, renamed because `with_timeout()` is the wrapper's own.
    drop(assert_send(
        awkward.with_timeout_rpc(prost_types::Timestamp::default()),
    ));

    // Per-call settings return a wrapper of the same type.
    let tuned: aw::awkward_cloud_run::Awkward =
        awkward.with_timeout(Duration::from_secs(5)).with_metadata(
            tonic::metadata::MetadataKey::from_static("x-request-id"),
            tonic::metadata::MetadataValue::from_static("abc"),
        );
    let _raw: aw::awkward_client::AwkwardClient<CloudRunChannel> = tuned.client();
    assert!(format!("{tuned:?}").starts_with("Awkward"));

    // Every RPC kind through the other services and packages.
    let twin = aw::twin_cloud_run::Twin::new(channel());
    drop(assert_send(twin.ping(())));
    let inner = aw::inner::inner_cloud_run::Inner::new(channel());
    drop(assert_send(inner.echo(aw::Result::default())));
    drop(assert_send(inner.watch(aw::inner::Thing::default())));
    let other = acme::inner::v1::other_cloud_run::Other::new(channel());
    drop(assert_send(other.self_(aw::inner::Thing::default())));
    drop(assert_send(other.r#await(iter(vec![options()]))));

    // The include-file copy is the same code.
    let _ = through_include_file::acme::awkward::v1::awkward_cloud_run::Awkward::new(channel());
}

#[tokio::test]
async fn typed_results_are_what_the_protos_say() {
    use acme::awkward::v1 as aw;
    // Pin the output types down: these only compile when the wrapper returns exactly these.
    async fn unary(
        w: &aw::awkward_cloud_run::Awkward,
    ) -> core::result::Result<aw::Result, tonic::Status> {
        w.r#type(aw::Option::default()).await
    }
    async fn empty(w: &aw::awkward_cloud_run::Awkward) -> core::result::Result<(), tonic::Status> {
        w.with_timeout_rpc(prost_types::Timestamp::default()).await
    }
    async fn server_stream(
        w: &aw::awkward_cloud_run::Awkward,
    ) -> core::result::Result<tonic::Streaming<aw::Box>, tonic::Status> {
        w.r#async(()).await
    }
    async fn bidi(
        w: &aw::awkward_cloud_run::Awkward,
    ) -> core::result::Result<tonic::Streaming<aw::Result>, tonic::Status> {
        w.client_rpc(tokio_stream::empty()).await
    }
    let w = aw::awkward_cloud_run::Awkward::new(channel());
    drop((unary(&w), empty(&w), server_stream(&w), bidi(&w)));
}

#[test]
#[allow(deprecated)]
fn deprecated_items_stay_usable() {
    use acme::awkward::v1 as aw;
    let legacy = aw::legacy_cloud_run::Legacy::new(channel());
    drop(legacy.get(aw::Box::default()));
    let awkward = aw::awkward_cloud_run::Awkward::new(channel());
    drop(awkward.old(aw::Box::default()));
}

#[test]
fn generated_code_names_prost_only_through_the_runtime() {
    let files = [
        include_str!(concat!(env!("OUT_DIR"), "/acme.bookstore.v1.rs")),
        include_str!(concat!(env!("OUT_DIR"), "/acme.awkward.v1.rs")),
        include_str!(concat!(env!("OUT_DIR"), "/acme.awkward.v1.inner.rs")),
        include_str!(concat!(env!("OUT_DIR"), "/acme.inner.v1.rs")),
    ];
    let runtime = "::cloud_run_grpc::__private::";
    for file in files {
        let count = |needle: &str| file.matches(needle).count();
        // `prost::` also matches inside `tonic_prost::`.
        assert_eq!(
            count("prost::"),
            count(&format!("{runtime}prost::")) + count(&format!("{runtime}tonic_prost::")),
            "prost or tonic-prost named other than through the runtime"
        );
        assert_eq!(
            count("prost_types::"),
            count(&format!("{runtime}prost_types::")),
            "prost-types named other than through the runtime"
        );
        // The check is not vacuous: every file names the codec or messages through the runtime.
        assert!(count(runtime) > 0);
    }
}

#[test]
fn debug_shows_the_metadata_keys_a_user_attached_never_their_values() {
    use tonic::metadata::{MetadataKey, MetadataValue};
    let books = bookstore::bookstore_cloud_run::Bookstore::new(channel())
        .with_timeout(Duration::from_secs(5))
        .with_metadata(
            MetadataKey::from_static("authorization"),
            MetadataValue::from_static("Bearer an-end-users-credential"),
        )
        .with_metadata(
            MetadataKey::from_static("x-request-id"),
            MetadataValue::from_static("request-1234"),
        );
    let debug = format!("{books:?}");
    assert_eq!(
        debug,
        "Bookstore { options: CallOptions { timeout: Some(5s), metadata_keys: \
         [\"authorization\", \"x-request-id\"] }, .. }"
    );
    assert!(!debug.contains("credential") && !debug.contains("1234"));
}
