//! Runs the README's first command's program, the bookstore example, and checks what it shows.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `cargo test` builds the package's examples next to its test binaries.
fn example_binary() -> std::path::PathBuf {
    let test = std::env::current_exe().expect("the test binary's path");
    let dir = test
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/debug");
    dir.join("examples")
        .join(format!("bookstore{}", std::env::consts::EXE_SUFFIX))
}

/// Runs the example with `args` and returns its standard output; fails unless it exits zero
/// having made every kind of call across two token refreshes.
///
/// One run at a time: the example checks that no call was slowed by a token fetch, which two
/// runs competing for two cores would make a check of the machine's load instead.
fn run_example(args: &[&str]) -> String {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let binary = example_binary();
    assert!(binary.exists(), "{} was not built", binary.display());
    let mut child = Command::new(&binary)
        .args(args)
        .env_remove("BOOKSTORE_URL")
        .env_remove("GCE_METADATA_HOST")
        .env_remove("SSL_CERT_FILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: the example takes about 12 seconds; kill it after 90.
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(90) {
            child.kill().unwrap();
            panic!("the example did not finish within 90 seconds");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        status.success(),
        "exit {status}\nstdout:\n{out}\nstderr:\n{err}"
    );
    for expected in [
        "create_book  -> book-1 \"Dune\"",
        "get_book     -> book-1",
        "list_books   <- book-3",
        "upload_books -> 2 books stored",
        "chat         <- bookstore: you said: hello",
        "token refreshed in the background",
        "no call waited for a token",
        "all calls succeeded",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    assert_eq!(
        out.matches("token refreshed in the background").count(),
        2,
        "{out}"
    );
    out
}

#[test]
fn the_bookstore_example_runs_every_call_kind_through_refreshes_and_exits_zero() {
    let out = run_example(&[]);
    assert!(out.contains("tokens from a metadata server at"), "{out}");
}

#[test]
fn with_federation_its_tokens_come_from_an_external_account_file() {
    let out = run_example(&["--federation"]);
    assert!(out.contains("external_account file:"), "{out}");
    // One exchange for the run, one IAM request per token: the first and two refreshes.
    assert!(
        out.contains(
            "3 token fetches in all (3 from IAM, after 1 subject token(s) and 1 STS exchange(s)"
        ),
        "{out}"
    );
}
