//! Workload identity federation through `#[cloud_run_client]`'s `new()`: an `external_account`
//! file named by `GOOGLE_APPLICATION_CREDENTIALS`, its subject token from a file or a URL,
//! exchanged at the STS emulator, the ID token minted by the IAM emulator, every call let
//! through by a Cloud-Run-like TLS front end — across ID-token refreshes, counting the STS and
//! IAM requests each refresh costs.
//!
//! ID tokens live 3 seconds, so refreshes come every two; everything else is as in production:
//! `default_source()`, the process-wide channel, the env override (`SSL_CERT_FILE` trusts the
//! front ends' test CA). Each struct names its own host, so each test has its own channel and
//! token cache; the tests run one at a time since they set `GOOGLE_APPLICATION_CREDENTIALS`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cloud_run_grpc::cloud_run_client;
use cloud_run_grpc_examples::MemoryBookstore;
use cloud_run_grpc_examples::pb::{self, Book, CreateBookRequest, GetBookRequest};
use cloud_run_grpc_testkit::{
    CredentialsFile, FrontEnd, IamEmulator, StsEmulator, SubjectTokenServer, TestCa,
};

#[cloud_run_client(
    host = "wif-file-abc123-ew.a.run.app",
    service = pb::bookstore_cloud_run::Bookstore,
    audience = "https://wif-file-abc123-ew.a.run.app",
    env = "FEDERATION_E2E_FILE_URL"
)]
struct FileFederated;

#[cloud_run_client(
    host = "wif-url-abc123-ew.a.run.app",
    service = pb::bookstore_cloud_run::Bookstore,
    audience = "https://wif-url-abc123-ew.a.run.app",
    env = "FEDERATION_E2E_URL_URL"
)]
struct UrlFederated;

const SERVICE_ACCOUNT: &str = "bookstore-caller@ci-project.iam.gserviceaccount.com";
/// Short enough for refreshes every two seconds, long enough for `exp`'s whole seconds.
const ID_TOKEN_LIFETIME: Duration = Duration::from_secs(3);
const REFRESHES: u32 = 2;

/// One federation: its STS and IAM emulators, the front end, and the `external_account` file.
struct Federation {
    sts: StsEmulator,
    iam: IamEmulator,
    front: FrontEnd,
    /// The subject-token URL, for the URL-sourced file.
    idp: Option<SubjectTokenServer>,
    adc: CredentialsFile,
    /// The subject-token file, for the file-sourced one.
    _subject_token: Option<CredentialsFile>,
}

struct Emulators {
    file: Federation,
    url: Federation,
    _ca_file: CredentialsFile,
}

impl Federation {
    async fn start(
        host: &str,
        sts: cloud_run_grpc_testkit::StsEmulatorBuilder,
        from_url: bool,
        ca: &TestCa,
    ) -> Federation {
        let sts = sts.start().await.unwrap();
        let iam = sts
            .iam_builder()
            .token_lifetime(ID_TOKEN_LIFETIME)
            .start()
            .await
            .unwrap();
        let front = FrontEnd::builder(host)
            .ca(ca.clone())
            .verifier(iam.verifier())
            .serve(MemoryBookstore::default().routes())
            .await
            .unwrap();
        let (idp, subject_token, source) = if from_url {
            let idp = SubjectTokenServer::builder(&sts)
                .json_field("value")
                .require_header("authorization", "Bearer ci-request-token")
                .start()
                .await
                .unwrap();
            let source = idp.credential_source();
            (Some(idp), None, source)
        } else {
            let file =
                CredentialsFile::write_named("token", sts.subject_token().as_bytes()).unwrap();
            let source = serde_json::json!({ "file": file.path() });
            (None, Some(file), source)
        };
        let adc = CredentialsFile::write(
            &sts.external_account_json(&source, Some(&iam.impersonation_url(SERVICE_ACCOUNT))),
        )
        .unwrap();
        Federation {
            sts,
            iam,
            front,
            idp,
            adc,
            _subject_token: subject_token,
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.front.addr().port())
    }

    /// (subject-token URL, STS, IAM) requests so far.
    fn counts(&self) -> (usize, usize, usize) {
        (
            self.idp.as_ref().map_or(0, SubjectTokenServer::requests),
            self.sts.requests(),
            self.iam.requests(),
        )
    }
}

/// The emulators, on the testkit's runtime, which outlives every test's runtime (the shared
/// channels do too). Sets the variables the structs read before any test reads them.
fn emulators() -> &'static Emulators {
    static EMULATORS: OnceLock<Emulators> = OnceLock::new();
    EMULATORS.get_or_init(|| {
        let emulators = cloud_run_grpc_testkit::run_on_testkit_runtime(async {
            let ca = TestCa::new().unwrap();
            let file =
                Federation::start(FileFederated::HOST, StsEmulator::builder(), false, &ca).await;
            // Federated tokens that live one second: every ID-token refresh needs a new one.
            let url = Federation::start(
                UrlFederated::HOST,
                StsEmulator::builder().access_token_lifetime(Duration::from_secs(1)),
                true,
                &ca,
            )
            .await;
            let ca_file =
                CredentialsFile::write_named("ca.pem", ca.certificate_pem().as_bytes()).unwrap();
            Emulators {
                file,
                url,
                _ca_file: ca_file,
            }
        })
        .expect("the testkit's runtime runs the emulators");
        // SAFETY: every test calls `emulators()` first, so no other thread of this process
        // reads the environment while it is set here.
        unsafe {
            std::env::set_var("SSL_CERT_FILE", emulators._ca_file.path());
            std::env::set_var("FEDERATION_E2E_FILE_URL", emulators.file.url());
            std::env::set_var("FEDERATION_E2E_URL_URL", emulators.url.url());
        }
        emulators
    })
}

/// Held by every test: each points `GOOGLE_APPLICATION_CREDENTIALS` at its own file until its
/// token cache has found its source.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn use_credentials(federation: &Federation) {
    // SAFETY: `SERIAL` is held by the caller, so no test reads the environment meanwhile.
    unsafe { std::env::set_var("GOOGLE_APPLICATION_CREDENTIALS", federation.adc.path()) }
}

fn book(title: &str) -> CreateBookRequest {
    CreateBookRequest {
        book: Some(Book {
            title: title.into(),
            ..Book::default()
        }),
    }
}

/// Calls `get` until the cached ID token has been refreshed [`REFRESHES`] times, handing
/// `on_refresh` the refresh's number as soon as each is seen (the next is two seconds away).
/// Every call must succeed. Returns how many calls were made.
async fn through_refreshes<F, Fut>(
    cache: &cloud_run_grpc::token::TokenCache,
    mut get: impl FnMut() -> Fut,
    mut on_refresh: F,
) -> usize
where
    F: FnMut(u32),
    Fut: std::future::Future<Output = Result<Book, tonic::Status>>,
{
    let mut expires_at = cache
        .current()
        .expect("a token after the first call")
        .expires_at();
    let started = Instant::now();
    let (mut calls, mut refreshes) = (0, 0);
    // Bounded: two refreshes of 3-second tokens take about 4 seconds; give up after 20.
    while refreshes < REFRESHES {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{refreshes} refreshes after {calls} calls in 20 s"
        );
        get()
            .await
            .unwrap_or_else(|status| panic!("call #{calls} failed: {status}"));
        calls += 1;
        let now = cache.current().expect("a valid token").expires_at();
        if now != expires_at {
            refreshes += 1;
            expires_at = now;
            on_refresh(refreshes);
        }
        // Paces the calls (a few hundred per refresh is plenty); nothing waits on it.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    calls
}

#[tokio::test]
async fn a_file_sourced_external_account_exchanges_once_and_mints_per_refresh() {
    let emulators = emulators();
    let federation = &emulators.file;
    let _serial = SERIAL.lock().await;
    use_credentials(federation);

    let books = FileFederated::new();
    let created = books.create_book(book("Federated")).await.unwrap();
    assert_eq!(
        federation.counts(),
        (0, 1, 1),
        "the cold call: one exchange, one mint"
    );

    let cache = books.channel().token_cache();
    let calls = through_refreshes(
        cache,
        || {
            books.get_book(GetBookRequest {
                id: created.id.clone(),
            })
        },
        |refresh| {
            // The federated token lives an hour: each refresh is one IAM request, no STS.
            let (_, sts, iam) = federation.counts();
            assert_eq!(
                (sts, iam),
                (1, refresh as usize + 1),
                "after refresh {refresh}"
            );
        },
    )
    .await;
    let minted = federation.iam.last_request().unwrap();
    assert_eq!(minted.service_account, SERVICE_ACCOUNT);
    assert_eq!(minted.audience, FileFederated::AUDIENCE);
    assert_eq!(
        minted.caller,
        federation
            .sts
            .principal(cloud_run_grpc_testkit::DEFAULT_SUBJECT)
    );
    assert_eq!(federation.front.accepted(), calls + 1);
    assert_eq!(federation.front.rejected(), 0);
}

#[tokio::test]
async fn a_url_sourced_external_account_exchanges_again_when_its_token_expires() {
    let emulators = emulators();
    let federation = &emulators.url;
    let _serial = SERIAL.lock().await;
    use_credentials(federation);

    let books = UrlFederated::new();
    let created = books.create_book(book("Federated by URL")).await.unwrap();
    assert_eq!(
        federation.counts(),
        (1, 1, 1),
        "the cold call: one subject token, one exchange, one mint"
    );

    let cache = books.channel().token_cache();
    let calls = through_refreshes(
        cache,
        || {
            books.get_book(GetBookRequest {
                id: created.id.clone(),
            })
        },
        |refresh| {
            // Federated tokens live one second, ID tokens three: each refresh reads a new
            // subject token, exchanges it, and mints.
            let expected = refresh as usize + 1;
            assert_eq!(
                federation.counts(),
                (expected, expected, expected),
                "after refresh {refresh}"
            );
        },
    )
    .await;
    let idp = federation.idp.as_ref().unwrap();
    assert_eq!(idp.rejected(), 0, "the file's header was sent");
    assert_eq!(federation.front.accepted(), calls + 1);
    assert_eq!(federation.front.rejected(), 0);
}
