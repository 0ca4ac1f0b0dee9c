//! `default_source()` picks the source Application Default Credentials would, driven by the
//! environment: `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's ADC file (`CLOUDSDK_CONFIG`, else
//! `~/.config/gcloud`), then the metadata server (`GCE_METADATA_HOST`).
//!
//! Every test here changes the process environment, so each holds [`Env`] (one at a time) and
//! gets the variables back as they were when it ends.

mod common;

use std::ffi::OsString;
use std::net::SocketAddr;

use cloud_run_grpc::CloudRunChannel;
use cloud_run_grpc::token::{DefaultCredentials, IdTokenSource, TokenError, default_source};
use cloud_run_grpc_testkit::{
    ADC_FILE_NAME, CredentialsFile, DEFAULT_SUBJECT, MetadataEmulator, OAuthEmulator, StsEmulator,
    impersonated_service_account_json,
};
use common::{AUDIENCE, TARGET, assert_no_secret, echo, front_end, oauth_and_iam, temp_dir};

const CREDENTIALS: &str = "GOOGLE_APPLICATION_CREDENTIALS";
const CLOUDSDK_CONFIG: &str = "CLOUDSDK_CONFIG";
const METADATA_HOST: &str = "GCE_METADATA_HOST";
const VARS: [&str; 4] = [CREDENTIALS, CLOUDSDK_CONFIG, METADATA_HOST, "HOME"];

static ENV_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Exclusive use of the environment, starting from a machine with no credentials: no
/// `GOOGLE_APPLICATION_CREDENTIALS`, an empty gcloud folder, and a metadata host where nothing
/// listens. The variables are restored on drop.
struct Env {
    saved: Vec<(&'static str, Option<OsString>)>,
    gcloud_dir: tempfile::TempDir,
    _lock: tokio::sync::MutexGuard<'static, ()>,
}

impl Env {
    async fn clean() -> Env {
        let lock = ENV_LOCK.lock().await;
        let saved = VARS.iter().map(|v| (*v, std::env::var_os(v))).collect();
        let env = Env {
            saved,
            gcloud_dir: temp_dir("gcloud-config"),
            _lock: lock,
        };
        env.remove(CREDENTIALS);
        env.set(CLOUDSDK_CONFIG, env.gcloud_dir.path());
        env.set(METADATA_HOST, closed_port().to_string());
        env
    }

    fn set(&self, name: &str, value: impl AsRef<std::ffi::OsStr>) {
        // SAFETY: the tests of this binary that touch the environment hold `ENV_LOCK`, and
        // none of them reads it from another thread meanwhile.
        unsafe { std::env::set_var(name, value) }
    }

    fn remove(&self, name: &str) {
        // SAFETY: as in `set`.
        unsafe { std::env::remove_var(name) }
    }

    /// Writes `json` as gcloud's ADC file.
    fn write_gcloud_file(&self, json: &str) {
        std::fs::write(self.gcloud_dir.path().join(ADC_FILE_NAME), json).unwrap();
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for (name, value) in &self.saved {
            match value {
                Some(value) => self.set(name, value),
                None => self.remove(name),
            }
        }
    }
}

/// A loopback address where nothing listens: connections are refused at once.
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

async fn resolved_name(adc: &DefaultCredentials) -> String {
    adc.resolve().await.expect("a source is found").name()
}

#[tokio::test]
async fn google_application_credentials_with_a_key_file() {
    let env = Env::clean().await;
    let oauth = OAuthEmulator::start().await.unwrap();
    let front = front_end(oauth.verifier(), None).await;
    let key = CredentialsFile::write(&oauth.key_json()).unwrap();
    env.set(CREDENTIALS, key.path());

    let adc = default_source();
    let name = resolved_name(&adc).await;
    assert!(
        name.starts_with(&format!("token endpoint {}", oauth.token_uri())),
        "{name}"
    );
    assert_eq!(echo(&front, adc, "k").await.unwrap(), "echo: k");
    assert_eq!(oauth.id_token_requests(AUDIENCE), 1);
}

#[tokio::test]
async fn google_application_credentials_with_an_impersonation_file() {
    let env = Env::clean().await;
    let (oauth, iam) = oauth_and_iam().await;
    let front = front_end(iam.verifier(), None).await;
    let file = CredentialsFile::write(&impersonated_service_account_json(
        &oauth.key_json(),
        &iam.impersonation_url(TARGET),
        &[],
    ))
    .unwrap();
    env.set(CREDENTIALS, file.path());

    let adc = default_source();
    let name = resolved_name(&adc).await;
    assert_eq!(
        name,
        format!(
            "IAM Credentials at {} impersonating {TARGET}",
            iam.base_url()
        )
    );
    assert_eq!(echo(&front, adc, "i").await.unwrap(), "echo: i");
    assert_eq!(iam.last_request().unwrap().service_account, TARGET);
}

#[tokio::test]
async fn google_application_credentials_wins_over_the_gcloud_file() {
    let env = Env::clean().await;
    let oauth = OAuthEmulator::start().await.unwrap();
    let key = CredentialsFile::write(&oauth.key_json()).unwrap();
    env.set(CREDENTIALS, key.path());
    env.write_gcloud_file(&oauth.authorized_user_json());

    let name = resolved_name(&default_source()).await;
    assert!(name.starts_with("token endpoint"), "{name}");
}

#[tokio::test]
async fn the_gcloud_file_with_impersonation_and_endpoints_overridden() {
    let env = Env::clean().await;
    let (oauth, iam) = oauth_and_iam().await;
    let front = front_end(iam.verifier(), None).await;
    // As gcloud writes it: Google's IAM URL, a user's refresh token for Google's token endpoint.
    let json = impersonated_service_account_json(
        &oauth.authorized_user_json(),
        &format!(
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{TARGET}:generateAccessToken"
        ),
        &[],
    );
    env.write_gcloud_file(&json);

    let adc = DefaultCredentials::new()
        .token_uri(oauth.token_uri())
        .iam_base_url(iam.base_url());
    let name = resolved_name(&adc).await;
    assert!(
        name.starts_with(&format!("IAM Credentials at {}", iam.base_url())),
        "{name}"
    );
    assert_eq!(echo(&front, adc, "g").await.unwrap(), "echo: g");
    let request = iam.last_request().unwrap();
    assert_eq!(
        request.caller,
        cloud_run_grpc_testkit::DEFAULT_AUTHORIZED_USER.0
    );
}

#[cfg(unix)]
#[tokio::test]
async fn the_gcloud_file_under_home_when_cloudsdk_config_is_unset() {
    let env = Env::clean().await;
    let oauth = OAuthEmulator::start().await.unwrap();
    let home = temp_dir("home");
    let gcloud = home.path().join(".config").join("gcloud");
    std::fs::create_dir_all(&gcloud).unwrap();
    std::fs::write(gcloud.join(ADC_FILE_NAME), oauth.key_json()).unwrap();
    env.remove(CLOUDSDK_CONFIG);
    env.set("HOME", home.path());

    let name = resolved_name(&default_source()).await;
    assert!(
        name.starts_with(&format!("token endpoint {}", oauth.token_uri())),
        "{name}"
    );
}

#[tokio::test]
async fn the_metadata_server_when_there_is_no_file() {
    let env = Env::clean().await;
    let metadata = MetadataEmulator::start().await.unwrap();
    let front = front_end(metadata.verifier(), None).await;
    env.set(METADATA_HOST, metadata.host());

    let adc = default_source();
    assert_eq!(
        resolved_name(&adc).await,
        format!("metadata server at {}", metadata.host())
    );
    assert_eq!(echo(&front, adc, "m").await.unwrap(), "echo: m");
    assert_eq!(metadata.requests(AUDIENCE), 1);
}

#[tokio::test]
async fn a_channel_without_a_token_source_uses_the_default() {
    let env = Env::clean().await;
    let metadata = MetadataEmulator::start().await.unwrap();
    let front = front_end(metadata.verifier(), None).await;
    env.set(METADATA_HOST, metadata.host());

    let front = front.front();
    let channel = CloudRunChannel::builder(front.host())
        .connect_to(front.addr())
        .ca_certificate(front.ca_certificate_pem())
        .build()
        .unwrap();
    channel.warm_up().await.unwrap();
    assert_eq!(metadata.requests(AUDIENCE), 1);
}

#[tokio::test]
async fn authorized_user_credentials_explain_what_to_use_instead() {
    let env = Env::clean().await;
    let oauth = OAuthEmulator::start().await.unwrap();
    let json = oauth.authorized_user_json();
    env.write_gcloud_file(&json);

    let err = default_source().resolve().await.unwrap_err();
    let TokenError::Unsupported {
        source_name,
        reason,
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert!(
        source_name.contains("`authorized_user` credentials in"),
        "{source_name}"
    );
    assert!(source_name.contains("gcloud's ADC file"), "{source_name}");
    assert!(reason.contains("only for service accounts"), "{reason}");
    assert!(reason.contains("--impersonate-service-account"), "{reason}");
    assert!(reason.contains("GcloudCli"), "{reason}");
    let (_, secret, refresh) = cloud_run_grpc_testkit::DEFAULT_AUTHORIZED_USER;
    assert_no_secret(&err.to_string(), &[secret, refresh]);
    assert_no_secret(&format!("{err:?}"), &[secret, refresh]);
}

#[tokio::test]
async fn google_application_credentials_with_an_external_account_file() {
    let env = Env::clean().await;
    let sts = StsEmulator::start().await.unwrap();
    let iam = sts.iam_builder().start().await.unwrap();
    let front = front_end(iam.verifier(), None).await;
    let token = CredentialsFile::write_named("token", sts.subject_token().as_bytes()).unwrap();
    let file = CredentialsFile::write(&sts.external_account_json(
        &serde_json::json!({ "file": token.path() }),
        Some(&iam.impersonation_url(TARGET)),
    ))
    .unwrap();
    env.set(CREDENTIALS, file.path());

    let adc = default_source();
    let name = resolved_name(&adc).await;
    assert!(name.starts_with("workload identity federation"), "{name}");
    assert!(name.ends_with(&format!("as {TARGET}")), "{name}");
    assert_eq!(echo(&front, adc, "f").await.unwrap(), "echo: f");
    assert_eq!((sts.requests(), iam.requests()), (1, 1));
}

#[tokio::test]
async fn the_gcloud_file_with_external_account_credentials_and_iam_overridden() {
    let env = Env::clean().await;
    let sts = StsEmulator::start().await.unwrap();
    let iam = sts.iam_builder().start().await.unwrap();
    let front = front_end(iam.verifier(), None).await;
    let token = CredentialsFile::write_named("token", sts.subject_token().as_bytes()).unwrap();
    // As gcloud writes it: Google's IAM URL.
    env.write_gcloud_file(&sts.external_account_json(
        &serde_json::json!({ "file": token.path() }),
        Some(&format!(
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{TARGET}:generateAccessToken"
        )),
    ));

    let adc = DefaultCredentials::new().iam_base_url(iam.base_url());
    assert_eq!(echo(&front, adc, "g").await.unwrap(), "echo: g");
    assert_eq!(
        iam.last_request().unwrap().caller,
        sts.principal(DEFAULT_SUBJECT)
    );
}

#[tokio::test]
async fn external_account_credentials_without_impersonation_say_how_to_add_it() {
    let env = Env::clean().await;
    let file = CredentialsFile::write(
        r#"{"type": "external_account", "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/gh",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": "https://sts.googleapis.com/v1/token",
            "credential_source": {"file": "/var/run/token"}}"#,
    )
    .unwrap();
    env.set(CREDENTIALS, file.path());

    let err = default_source().resolve().await.unwrap_err();
    let TokenError::Credentials { path, reason, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(path.contains(CREDENTIALS), "{path}");
    assert!(
        reason.contains("no `service_account_impersonation_url`"),
        "{reason}"
    );
    assert!(
        reason.contains(&format!(
            "gcloud iam workload-identity-pools create-cred-config \
             projects/1/locations/global/workloadIdentityPools/p/providers/gh \
             --service-account=SA_EMAIL --credential-source-file=/var/run/token \
             --output-file={}",
            file.path().display()
        )),
        "{reason}"
    );
}

#[tokio::test]
async fn nothing_found_lists_every_place_looked() {
    let env = Env::clean().await;
    let dead = closed_port();
    env.set(METADATA_HOST, dead.to_string());

    let err = default_source().resolve().await.unwrap_err();
    let TokenError::NotFound { looked } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(looked.len(), 3, "{looked:?}");
    assert_eq!(looked[0], format!("{CREDENTIALS}: not set"));
    let gcloud_file = env.gcloud_dir.path().join(ADC_FILE_NAME);
    assert!(looked[1].starts_with(&format!("{}: no such file", gcloud_file.display())));
    assert!(looked[2].starts_with(&format!("the metadata server at {dead}: unreachable")));
    let shown = err.to_string();
    assert!(shown.contains("--impersonate-service-account"), "{shown}");
}

#[tokio::test]
async fn a_server_that_is_not_a_metadata_server_is_not_taken_for_one() {
    let env = Env::clean().await;
    // The OAuth emulator answers HTTP, but without `Metadata-Flavor: Google`.
    let impostor = OAuthEmulator::start().await.unwrap();
    env.set(METADATA_HOST, impostor.addr().to_string());

    let err = default_source().resolve().await.unwrap_err();
    let TokenError::NotFound { looked } = &err else {
        panic!("{err:?}");
    };
    assert!(
        looked[2].contains("without `Metadata-Flavor: Google`"),
        "{looked:?}"
    );
}

#[tokio::test]
async fn it_stays_lazy_and_looks_again_after_a_failure() {
    let env = Env::clean().await;
    let oauth = OAuthEmulator::start().await.unwrap();
    let dir = temp_dir("later");
    let path = dir.path().join("key.json");
    env.set(CREDENTIALS, &path);

    // Creating it does no I/O: the file does not exist yet, and nothing fails.
    let adc = default_source();
    assert_eq!(adc.name(), "application default credentials");
    let err = adc.fetch(AUDIENCE).await.unwrap_err();
    let TokenError::Credentials {
        path: shown,
        reason,
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert!(shown.contains(&path.display().to_string()), "{shown}");
    assert!(shown.contains(CREDENTIALS), "{shown}");
    assert!(reason.contains("does not exist"), "{reason}");

    std::fs::write(&path, oauth.key_json()).unwrap();
    let token = adc.fetch(AUDIENCE).await.unwrap();
    assert_eq!(token.audience(), Some(AUDIENCE));
    assert!(adc.name().starts_with("token endpoint"), "{}", adc.name());
}

#[cfg(unix)]
#[tokio::test]
async fn google_application_credentials_naming_a_file_that_never_ends() {
    let env = Env::clean().await;
    env.set(CREDENTIALS, "/dev/zero");
    let started = std::time::Instant::now();
    let err = default_source().resolve().await.unwrap_err();
    let TokenError::Credentials { path, reason, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(path.starts_with("/dev/zero"), "{path}");
    assert!(path.contains(CREDENTIALS), "{path}");
    assert!(reason.contains("longer than 1024 KiB"), "{reason}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
