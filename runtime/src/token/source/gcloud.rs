//! ID tokens from the gcloud CLI, for developers' machines.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::token::bounded::{self, RunError};
use crate::token::{IdToken, IdTokenSource, TokenError, TokenFuture};

#[cfg(windows)]
const GCLOUD: &str = "gcloud.cmd";
#[cfg(not(windows))]
const GCLOUD: &str = "gcloud";

/// Fetches ID tokens with `gcloud auth print-identity-token`, as the account gcloud is logged
/// in with.
///
/// When that account is a service account (its email ends in `.gserviceaccount.com`) the token
/// is asked for the audience (`--audiences=…`); gcloud refuses `--audiences` for user accounts,
/// whose tokens carry gcloud's own client id as audience, which Cloud Run accepts from users
/// who hold `roles/run.invoker`. Such a token is marked
/// [`for_any_audience`](crate::token::IdToken::for_any_audience): it is the one exception to the
/// cache's rule that a token's `aud` must be the audience asked for. Each fetch first asks
/// `gcloud auth list` for the active account, so `gcloud config set account` takes effect at
/// the next refresh.
///
/// gcloud may hand out a token it cached, so no server time is recorded: expiry is judged on
/// the local clock.
///
/// ```no_run
/// use cloud_run_grpc::CloudRunChannel;
/// use cloud_run_grpc::token::GcloudCli;
///
/// # fn main() -> Result<(), cloud_run_grpc::Error> {
/// let channel = CloudRunChannel::builder("bookstore-abc123-ew.a.run.app")
///     .token_source(GcloudCli::new())
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct GcloudCli {
    program: PathBuf,
    timeout: Duration,
}

impl GcloudCli {
    /// Runs `gcloud` (`gcloud.cmd` on Windows) from `PATH`.
    pub fn new() -> Self {
        Self {
            program: PathBuf::from(GCLOUD),
            timeout: Duration::from_secs(30),
        }
    }

    /// Runs this executable instead of `gcloud` from `PATH`.
    ///
    /// ```
    /// # use cloud_run_grpc::token::{GcloudCli, IdTokenSource};
    /// let cli = GcloudCli::new().program("/opt/google-cloud-sdk/bin/gcloud");
    /// assert_eq!(cli.name(), "gcloud CLI (/opt/google-cloud-sdk/bin/gcloud)");
    /// ```
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self
    }

    /// How long each gcloud command may take; default 30 seconds (gcloud may have to refresh
    /// its own credentials first).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs gcloud with `args` and returns its standard output. Its output is read up to
    /// [`MAX_OUTPUT`] per stream, all within the timeout: a program that prints forever is
    /// stopped, not read into memory.
    async fn run(&self, args: &[String]) -> Result<String, TokenError> {
        let command = format!("gcloud {}", args.join(" "));
        let mut gcloud = tokio::process::Command::new(&self.program);
        gcloud.args(args.iter().map(OsString::from));
        let failed = |reason: String, source: Option<std::io::Error>| TokenError::Command {
            command: command.clone(),
            reason,
            source: source.map(|e| Arc::new(e) as _),
        };
        let finished = match bounded::run(gcloud, self.timeout, MAX_OUTPUT).await {
            Ok(finished) => finished,
            Err(RunError::Start(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                let reason = format!(
                    "`{}` was not found: the gcloud CLI is not installed or not on PATH; \
                     install the Google Cloud CLI and run `gcloud auth login`, point \
                     `GcloudCli::program` at it, or use another source \
                     (`ImpersonatedServiceAccount`, `ServiceAccountKey`)",
                    self.program.display()
                );
                return Err(failed(reason, Some(e)));
            }
            Err(RunError::Start(e)) => {
                let reason = format!("`{}` could not be run: {e}", self.program.display());
                return Err(failed(reason, Some(e)));
            }
            Err(RunError::TooLong(stream)) => {
                let reason = format!(
                    "it printed more than {} KiB on its {stream}, more than gcloud ever does; \
                     check that `{}` is the gcloud CLI",
                    MAX_OUTPUT / 1024,
                    self.program.display()
                );
                return Err(failed(reason, None));
            }
            Err(RunError::Read(e)) => {
                return Err(failed(
                    format!("its output could not be read: {e}"),
                    Some(e),
                ));
            }
            Err(RunError::Timeout) => {
                return Err(TokenError::Timeout {
                    source_name: format!("{} running `{command}`", self.name()),
                    after: self.timeout,
                });
            }
        };
        if !finished.status.success() {
            let reason = format!(
                "{}; if it asks you to log in, run `gcloud auth login`",
                finished.exited()
            );
            return Err(failed(reason, None));
        }
        Ok(String::from_utf8_lossy(&finished.stdout).into_owned())
    }

    /// The active account's email, if gcloud is logged in.
    async fn active_account(&self) -> Result<String, TokenError> {
        let args = [
            "auth".to_owned(),
            "list".to_owned(),
            "--filter=status:ACTIVE".to_owned(),
            "--format=value(account)".to_owned(),
        ];
        let out = self.run(&args).await?;
        match out.lines().map(str::trim).find(|l| !l.is_empty()) {
            Some(account) => Ok(account.to_owned()),
            None => Err(TokenError::Command {
                command: format!("gcloud {}", args.join(" ")),
                reason: "gcloud has no active account; run `gcloud auth login` (or `gcloud auth \
                         activate-service-account`)"
                    .into(),
                source: None,
            }),
        }
    }

    async fn fetch_token(&self, audience: &str) -> Result<IdToken, TokenError> {
        let account = self.active_account().await?;
        let mut args = vec!["auth".to_owned(), "print-identity-token".to_owned()];
        let audience_asked = is_service_account(&account);
        if audience_asked {
            args.push(format!("--audiences={audience}"));
        }
        let out = self.run(&args).await?;
        // The token is the last line; anything gcloud says besides goes to stderr, but be
        // lenient about stray lines before it.
        let token = out
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or_default();
        let token = IdToken::from_jwt(token).map_err(|reason| TokenError::BadToken {
            source_name: format!("{} (`gcloud {}`)", self.name(), args.join(" ")),
            reason,
        })?;
        // A user account's token is for gcloud's own client id, whatever the audience.
        Ok(if audience_asked {
            token
        } else {
            token.for_any_audience()
        })
    }
}

/// The most gcloud may print on each of its streams; a token is about a kilobyte.
const MAX_OUTPUT: u64 = 64 * 1024;

fn is_service_account(account: &str) -> bool {
    account.ends_with(".gserviceaccount.com")
}

impl Default for GcloudCli {
    fn default() -> Self {
        Self::new()
    }
}

impl IdTokenSource for GcloudCli {
    fn fetch<'a>(&'a self, audience: &'a str) -> TokenFuture<'a> {
        Box::pin(self.fetch_token(audience))
    }

    fn name(&self) -> String {
        if self.program.as_os_str() == GCLOUD {
            "gcloud CLI".into()
        } else {
            format!("gcloud CLI ({})", self.program.display())
        }
    }

    /// Two commands (the active account, then the token), each within [`GcloudCli::timeout`].
    fn fetch_timeout(&self) -> Option<Duration> {
        Some(self.timeout.saturating_mul(2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_service_accounts_from_users() {
        assert!(is_service_account("ci@proj.iam.gserviceaccount.com"));
        assert!(is_service_account(
            "123-compute@developer.gserviceaccount.com"
        ));
        assert!(!is_service_account("ada@example.com"));
    }

    #[test]
    fn the_cache_waits_for_both_commands() {
        let cli = GcloudCli::new().timeout(Duration::from_secs(20));
        assert_eq!(cli.fetch_timeout(), Some(Duration::from_secs(40)));
    }

    #[tokio::test]
    async fn a_missing_gcloud_says_how_to_get_one() {
        let cli = GcloudCli::new().program("/nonexistent/bin/gcloud-nowhere");
        let err = cli.fetch("https://svc").await.unwrap_err();
        let TokenError::Command {
            command, reason, ..
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!(
            command,
            "gcloud auth list --filter=status:ACTIVE --format=value(account)"
        );
        assert!(reason.contains("not installed or not on PATH"), "{reason}");
        assert!(reason.contains("gcloud auth login"), "{reason}");
    }
}
