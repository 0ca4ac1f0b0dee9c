//! What the credential-source tests share: a one-method gRPC service behind the testkit's
//! Cloud-Run-like front end, a client call through `CloudRunChannel`, the emulators an
//! impersonation needs, fake gcloud scripts, and checks that errors are actionable and hold no
//! secret.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use cloud_run_grpc::token::{IdTokenSource, ImpersonatedServiceAccount, gcp_auth};
use cloud_run_grpc_testkit::{CloudRun, IamEmulator, OAuthEmulator, Verifier};
use tonic::body::Body;
use tonic::codegen::http;
use tonic_prost::ProstCodec;

/// The service's host name, as Cloud Run would give it.
pub const HOST: &str = "echo-abc123-ew.a.run.app";
/// The audience tokens must carry.
pub const AUDIENCE: &str = "https://echo-abc123-ew.a.run.app";

/// The service account the impersonation tests impersonate.
pub const TARGET: &str = "invoker@target-project.iam.gserviceaccount.com";

const METHOD: &str = "/test.Echo/Echo";

/// `test.Echo/Echo`: answers a `google.protobuf.StringValue` (a `String` in prost) with the
/// same value, prefixed with `echo: `.
#[derive(Clone)]
pub struct Echo;

impl tonic::server::NamedService for Echo {
    const NAME: &'static str = "test.Echo";
}

struct EchoMethod;

impl tonic::server::UnaryService<String> for EchoMethod {
    type Response = String;
    type Future = Ready<Result<tonic::Response<String>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<String>) -> Self::Future {
        let value = format!("echo: {}", request.into_inner());
        ready(Ok(tonic::Response::new(value)))
    }
}

impl tower_service::Service<http::Request<Body>> for Echo {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        Box::pin(async move {
            if request.uri().path() != METHOD {
                let mut response = http::Response::new(Body::empty());
                let headers = response.headers_mut();
                headers.insert(
                    "content-type",
                    http::HeaderValue::from_static("application/grpc"),
                );
                headers.insert("grpc-status", http::HeaderValue::from_static("12"));
                return Ok(response);
            }
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<String, String>::default());
            Ok(grpc.unary(EchoMethod, request).await)
        })
    }
}

/// `Echo` behind the emulated Cloud Run for [`HOST`], accepting tokens `verifier` accepts
/// (for [`AUDIENCE`], and `extra_audience`).
pub async fn front_end(verifier: Verifier, extra_audience: Option<&str>) -> CloudRun {
    let mut fixture = CloudRun::builder(HOST).verifier(verifier);
    if let Some(audience) = extra_audience {
        fixture = fixture.custom_audience(audience);
    }
    fixture
        .serve(tonic::service::Routes::new(Echo))
        .await
        .expect("the fixture starts")
}

/// Calls `Echo` through a `CloudRunChannel` to `cloud_run` over TLS, with tokens from `source`.
pub async fn echo(
    cloud_run: &CloudRun,
    source: impl IdTokenSource,
    message: &str,
) -> Result<String, tonic::Status> {
    let channel = cloud_run
        .channel_builder()
        .token_source(source)
        .build()
        .expect("the channel builds");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static(METHOD);
    let request = tonic::Request::new(message.to_owned());
    let response = grpc
        .unary(request, path, ProstCodec::<String, String>::default())
        .await?;
    Ok(response.into_inner())
}

/// An OAuth emulator, and an IAM Credentials emulator that accepts the access tokens it issues.
pub async fn oauth_and_iam() -> (OAuthEmulator, IamEmulator) {
    let oauth = OAuthEmulator::start()
        .await
        .expect("the OAuth emulator starts");
    let iam = IamEmulator::builder()
        .access_tokens(oauth.access_tokens().clone())
        .start()
        .await
        .expect("the IAM emulator starts");
    (oauth, iam)
}

/// Impersonates [`TARGET`] through `iam`, with `oauth`'s service-account key as the gcp_auth
/// source of the access token.
pub fn impersonation_with_key_of(
    oauth: &OAuthEmulator,
    iam: &IamEmulator,
) -> ImpersonatedServiceAccount {
    let caller = gcp_auth::CustomServiceAccount::from_json(&oauth.key_json())
        .expect("gcp_auth reads the emulator's key");
    ImpersonatedServiceAccount::with_source(TARGET, Arc::new(caller))
        .with_iam_base_url(iam.base_url())
        .expect("the IAM emulator's URL is accepted")
}

/// Asserts that `text` (an error's `Display` or `Debug`) holds none of `secrets`, nor any
/// 12-character piece of them (PEM armour lines, which are not secret, aside).
pub fn assert_no_secret(text: &str, secrets: &[&str]) {
    for secret in secrets {
        let body: String = secret
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let chars: Vec<char> = body.chars().collect();
        if chars.len() < 12 {
            assert!(!text.contains(body.as_str()), "{text}\n  shows a secret");
        }
        for window in chars.windows(12) {
            let piece: String = window.iter().collect();
            assert!(
                !text.contains(&piece),
                "{text}\n  shows part of a secret: {piece}"
            );
        }
    }
}

/// Writes an executable shell script standing in for gcloud into `dir`: it answers
/// `auth list` with `account` and `auth print-identity-token` with `token`, and logs its
/// arguments to `dir/args.log`.
#[cfg(unix)]
pub fn fake_gcloud(dir: &std::path::Path, account: &str, token: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let log = dir.join("args.log");
    let script = format!(
        "#!/bin/sh\n\
         echo \"$*\" >> '{log}'\n\
         case \"$1 $2\" in\n\
         'auth list') echo '{account}' ;;\n\
         'auth print-identity-token') echo '{token}' ;;\n\
         *) echo \"unexpected: $*\" >&2; exit 2 ;;\n\
         esac\n",
        log = log.display()
    );
    let path = dir.join("gcloud");
    std::fs::write(&path, script).expect("write the fake gcloud");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .expect("make the fake gcloud executable");
    path
}

/// A fresh directory under the system's temporary folder, removed on drop; `label` goes in its
/// name so a leftover one says which test made it.
pub fn temp_dir(label: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("cloud-run-grpc-{label}-"))
        .tempdir()
        .expect("create a temporary directory")
}
