//! Executable-sourced subject tokens: run only with `GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1`,
//! given Google's environment variables, bounded by the file's timeout, its saved answer
//! reused while valid, and every way it can fail an error of its own.
//!
//! The tests change the opt-in variable, so each holds [`Allowed`] (one at a time).
#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use cloud_run_grpc::token::{ExternalAccount, IdTokenSource, TokenError};
use cloud_run_grpc_testkit::{IamEmulator, StsEmulator};
use common::{AUDIENCE, TARGET, assert_no_secret, echo, front_end};

const ALLOW: &str = "GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES";

static ENV_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Exclusive use of the opt-in variable, set or unset; unset again on drop.
struct Allowed {
    _lock: tokio::sync::MutexGuard<'static, ()>,
}

impl Allowed {
    async fn to(allowed: bool) -> Allowed {
        let lock = ENV_LOCK.lock().await;
        // SAFETY: the tests of this binary hold `ENV_LOCK` while they read or change it.
        unsafe {
            if allowed {
                std::env::set_var(ALLOW, "1");
            } else {
                std::env::remove_var(ALLOW);
            }
        }
        Allowed { _lock: lock }
    }
}

impl Drop for Allowed {
    fn drop(&mut self) {
        // SAFETY: as above; the lock is still held.
        unsafe { std::env::remove_var(ALLOW) }
    }
}

/// The emulators, and a directory with a fake credential helper in it.
struct Setup {
    sts: StsEmulator,
    iam: IamEmulator,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn start() -> Setup {
        let sts = StsEmulator::start().await.unwrap();
        let iam = sts.iam_builder().start().await.unwrap();
        Setup {
            sts,
            iam,
            dir: common::temp_dir("executable"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A helper script: logs its environment and arguments to `runs.log`, then runs `body`.
    fn script(&self, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let script = format!(
            "#!/bin/sh\n\
             echo \"$GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE|$GOOGLE_EXTERNAL_ACCOUNT_TOKEN_TYPE|\
             $GOOGLE_EXTERNAL_ACCOUNT_INTERACTIVE|$GOOGLE_EXTERNAL_ACCOUNT_IMPERSONATED_EMAIL|\
             $GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE|$*\" >> '{log}'\n\
             {body}\n",
            log = self.path("runs.log").display()
        );
        let path = self.path("helper");
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// A helper that prints `response.json` (and saves it as its output file, if it has one).
    fn answering_helper(&self) -> PathBuf {
        self.script(&format!(
            "cat '{response}'\n\
             if [ -n \"$GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE\" ]; then cp '{response}' \"$GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE\"; fi",
            response = self.path("response.json").display()
        ))
    }

    fn respond(&self, response: &serde_json::Value) {
        std::fs::write(self.path("response.json"), response.to_string()).unwrap();
    }

    fn runs(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("runs.log"))
            .map(|log| log.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    fn source(&self, executable: serde_json::Value) -> ExternalAccount {
        let json = self.sts.external_account_json(
            &serde_json::json!({ "executable": executable }),
            Some(&self.iam.impersonation_url(TARGET)),
        );
        ExternalAccount::from_json(&json).unwrap()
    }
}

/// Google's executable response for `token`, expiring at `expiration_time`.
fn success(token: &str, expiration_time: u64) -> serde_json::Value {
    serde_json::json!({
        "version": 1,
        "success": true,
        "token_type": "urn:ietf:params:oauth:token-type:id_token",
        "id_token": token,
        "expiration_time": expiration_time,
    })
}

fn in_an_hour() -> u64 {
    (SystemTime::now() + Duration::from_secs(3600))
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn command(helper: &Path) -> String {
    format!("{} --profile=ci --verbose", helper.display())
}

#[tokio::test]
async fn an_allowed_executable_gets_googles_environment_and_its_token_passes() {
    let _allowed = Allowed::to(true).await;
    let setup = Setup::start().await;
    let front = front_end(setup.iam.verifier(), None).await;
    let helper = setup.answering_helper();
    setup.respond(&success(&setup.sts.subject_token(), in_an_hour()));

    let source = setup.source(serde_json::json!({ "command": command(&helper) }));
    assert_eq!(echo(&front, source, "exe").await.unwrap(), "echo: exe");
    assert_eq!(
        setup.runs(),
        [format!(
            "{}|urn:ietf:params:oauth:token-type:jwt|0|{TARGET}||--profile=ci --verbose",
            setup.sts.audience()
        )]
    );
    assert_eq!(setup.iam.last_request().unwrap().service_account, TARGET);
}

#[tokio::test]
async fn its_saved_answer_is_used_until_it_expires() {
    let _allowed = Allowed::to(true).await;
    let setup = Setup::start().await;
    let helper = setup.answering_helper();
    let output = setup.path("saved.json");
    setup.respond(&success(&setup.sts.subject_token(), in_an_hour()));
    let source = setup.source(serde_json::json!({
        "command": command(&helper),
        "timeout_millis": 10000,
        "output_file": output,
    }));
    // A new subject token is read only when the federated token must be exchanged anew.
    let exchange_again = || async {
        tokio::time::pause();
        tokio::time::advance(Duration::from_secs(3600)).await;
        tokio::time::resume();
    };

    source.fetch(AUDIENCE).await.unwrap();
    assert_eq!(setup.runs().len(), 1);
    assert!(setup.runs()[0].contains(&format!("|{}|", output.display())));
    assert!(output.exists(), "the helper saved its answer");

    exchange_again().await;
    source.fetch(AUDIENCE).await.unwrap();
    assert_eq!(setup.sts.requests(), 2);
    assert_eq!(setup.runs().len(), 1, "the saved answer was used");

    std::fs::write(&output, success(&setup.sts.subject_token(), 1).to_string()).unwrap();
    exchange_again().await;
    source.fetch(AUDIENCE).await.unwrap();
    assert_eq!(
        setup.runs().len(),
        2,
        "an expired saved answer runs the helper again"
    );

    std::fs::write(&output, r#"{"success": true}"#).unwrap();
    exchange_again().await;
    let err = source.fetch(AUDIENCE).await.unwrap_err();
    assert!(matches!(err, TokenError::Credentials { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(shown.contains(&output.display().to_string()), "{shown}");
    assert!(shown.contains("has no `version` field"), "{shown}");
    assert!(shown.contains("delete the file"), "{shown}");
}

#[tokio::test]
async fn without_the_opt_in_nothing_runs() {
    let _not_allowed = Allowed::to(false).await;
    let setup = Setup::start().await;
    let helper = setup.answering_helper();
    setup.respond(&success(&setup.sts.subject_token(), in_an_hour()));
    let source = setup.source(serde_json::json!({ "command": command(&helper) }));
    let err = source.fetch(AUDIENCE).await.unwrap_err();
    assert!(matches!(err, TokenError::Unsupported { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(
        shown.contains(&format!("executable `{}`", helper.display())),
        "{shown}"
    );
    assert!(
        shown.contains("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1"),
        "{shown}"
    );
    assert!(!err.is_transient());
    assert!(setup.runs().is_empty(), "the helper never ran");
    assert_eq!(setup.sts.requests(), 0);
}

#[tokio::test]
async fn a_failing_executable() {
    let _allowed = Allowed::to(true).await;
    let setup = Setup::start().await;
    let helper = setup.script("echo 'not logged in: run login first' >&2\nexit 3");
    let err = setup
        .source(serde_json::json!({ "command": helper }))
        .fetch(AUDIENCE)
        .await
        .unwrap_err();
    assert!(matches!(err, TokenError::Command { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(
        shown.contains("`credential_source.executable` of <JSON string>"),
        "{shown}"
    );
    assert!(shown.contains("exited with exit status: 3"), "{shown}");
    assert!(shown.contains("not logged in: run login first"), "{shown}");
    assert!(!err.is_transient());

    let missing = setup.path("no-such-helper");
    let err = setup
        .source(serde_json::json!({ "command": missing }))
        .fetch(AUDIENCE)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("was not found"), "{err}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "the spawn error is kept"
    );
}

#[tokio::test(start_paused = true)]
async fn an_executable_past_its_timeout_is_killed() {
    let _allowed = Allowed::to(true).await;
    let setup = Setup::start().await;
    let helper = setup.script("exec sleep 6173");
    let source = setup.source(serde_json::json!({ "command": helper, "timeout_millis": 5000 }));
    let started = tokio::time::Instant::now();
    let err = source.fetch(AUDIENCE).await.unwrap_err();
    assert!(
        matches!(err, TokenError::Timeout { after, .. } if after == Duration::from_secs(5)),
        "{err:?}"
    );
    assert!(started.elapsed() >= Duration::from_secs(5));
    assert!(
        err.to_string().contains("did not answer within 5s"),
        "{err}"
    );
    assert!(err.is_transient());

    // Killed: no child of ours runs it any more (a zombie awaits Tokio's reaper). Polled in
    // real time, for at most 5 s.
    let helper = helper.display().to_string();
    let running =
        || running_children(|cmdline| cmdline.contains(&helper) || cmdline == "sleep 6173");
    for _ in 0..500 {
        if running() == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(running(), 0, "the helper still runs");
}

/// How many of this process's children, not yet exited, have a command line (its words joined
/// by spaces) that `matches`. Linux only, as are the executable tests' shell scripts.
fn running_children(matches: impl Fn(&str) -> bool) -> usize {
    let us = std::process::id().to_string();
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return 0;
    };
    processes
        .filter_map(Result::ok)
        .filter(|process| {
            let dir = process.path();
            let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
                return false;
            };
            // After the command's `)`: state, then parent pid.
            let mut fields = stat
                .rsplit_once(')')
                .map_or("", |(_, rest)| rest)
                .split_whitespace();
            let (state, parent) = (fields.next(), fields.next());
            let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            parent == Some(us.as_str()) && state != Some("Z") && matches(cmdline.trim_end())
        })
        .count()
}

#[tokio::test]
async fn an_executable_answering_what_is_not_googles_format() {
    let _allowed = Allowed::to(true).await;
    let setup = Setup::start().await;
    let secret = "eyJhbGciOiJSUzI1NiJ9.printed-instead-of-json.sig";
    let helper = setup.script(&format!("echo '{secret}'"));
    let err = setup
        .source(serde_json::json!({ "command": helper }))
        .fetch(AUDIENCE)
        .await
        .unwrap_err();
    assert!(matches!(err, TokenError::Command { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(
        shown.contains("its response is not a JSON object"),
        "{shown}"
    );
    assert!(shown.contains("executable-response JSON"), "{shown}");
    assert_no_secret(&shown, &[secret]);
    assert_no_secret(&format!("{err:?}"), &[secret]);

    let helper = setup.answering_helper();
    setup.respond(&serde_json::json!({
        "version": 1, "success": false, "code": "401", "message": "Caller not authorized.",
    }));
    let err = setup
        .source(serde_json::json!({ "command": helper }))
        .fetch(AUDIENCE)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("it reported a failure: (401) Caller not authorized."),
        "{err}"
    );
}
