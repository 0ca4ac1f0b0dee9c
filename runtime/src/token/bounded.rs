//! Reading what other programs wrote, within bounds: files (credentials, subject tokens, an
//! executable's output file) and child processes (gcloud, a federation executable). A path
//! such as `/dev/zero` or a program that prints forever fails fast instead of filling memory.

use std::io::{self, Read as _};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::process::{Child, Command};

use crate::excerpt::excerpt;

/// Reads the file at `path` whole, or fails with [`io::ErrorKind::FileTooLarge`] when it is
/// longer than `max` bytes: a cut-off token or key is never used.
pub(crate) fn read_file(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("it is longer than {} KiB", max / 1024),
        ));
    }
    Ok(bytes)
}

/// [`read_file`] off the async threads.
pub(crate) async fn read_file_async(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || read_file(&path, max))
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)))
}

/// A child process that ran to its end.
pub(crate) struct Finished {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
}

impl Finished {
    /// `it exited with <status>`, and its standard error's excerpt if it wrote one.
    pub(crate) fn exited(&self) -> String {
        let stderr = excerpt(&self.stderr);
        if stderr.is_empty() {
            format!("it exited with {}", self.status)
        } else {
            format!("it exited with {} ({stderr})", self.status)
        }
    }
}

/// Why a child process gave no [`Finished`].
#[derive(Debug)]
pub(crate) enum RunError {
    /// It could not be started (`NotFound`: no such program).
    Start(io::Error),
    /// It printed more than the bound on this stream.
    TooLong(&'static str),
    /// Its output could not be read.
    Read(io::Error),
    /// It did not finish in time; it has been killed.
    Timeout,
}

/// Runs `command` with no standard input, reading each of its output streams up to `max`
/// bytes, all within `timeout`. On any early return the child is killed.
pub(crate) async fn run(
    mut command: Command,
    timeout: Duration,
    max: u64,
) -> Result<Finished, RunError> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(RunError::Start)?;
    tokio::time::timeout(timeout, output(&mut child, max))
        .await
        .unwrap_or(Err(RunError::Timeout))
}

/// The child's exit status and its two streams, each read up to `max`.
async fn output(child: &mut Child, max: u64) -> Result<Finished, RunError> {
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (stdout, stderr) = tokio::try_join!(
        read_at_most(stdout, max, "standard output"),
        read_at_most(stderr, max, "standard error")
    )?;
    let status = child.wait().await.map_err(RunError::Read)?;
    Ok(Finished {
        status,
        stdout,
        stderr,
    })
}

async fn read_at_most(
    stream: Option<impl AsyncRead + Unpin>,
    max: u64,
    name: &'static str,
) -> Result<Vec<u8>, RunError> {
    let mut bytes = Vec::new();
    if let Some(stream) = stream {
        stream
            .take(max.saturating_add(1))
            .read_to_end(&mut bytes)
            .await
            .map_err(RunError::Read)?;
    }
    if bytes.len() as u64 > max {
        return Err(RunError::TooLong(name));
    }
    Ok(bytes)
}
