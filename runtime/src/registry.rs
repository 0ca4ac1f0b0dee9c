//! The process-wide channels: one per service configuration, one token cache per audience,
//! created on first use.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use crate::auth::AuthHeader;
use crate::channel::CloudRunChannel;
use crate::token::{TokenCache, default_source};

/// The shared channel to `target`: a Cloud Run host (`svc-abc123-ew.a.run.app`) or a URL
/// (`https://svc.example.com`, `http://127.0.0.1:8080`).
///
/// The first call creates it (no I/O); every later call for the same target returns a clone
/// of the same channel, sharing connections and the token cache, across threads and Tokio
/// runtimes. Tokens come from [`default_source()`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let a = cloud_run_grpc::shared("bookstore-abc123-ew.a.run.app");
/// let b = cloud_run_grpc::shared("bookstore-abc123-ew.a.run.app");
/// assert_eq!(a.audience(), "https://bookstore-abc123-ew.a.run.app");
/// assert!(a.shares_token_cache_with(&b));
/// # }
/// ```
///
/// A target that is not a valid host or URL gives a channel whose every call fails with
/// `INVALID_ARGUMENT` saying what is wrong (and the error is logged when the channel is made).
pub fn shared(target: &str) -> CloudRunChannel {
    shared_from_spec(&SharedSpec {
        url: target,
        audience: None,
        env: None,
        header: None,
        timeout: None,
    })
}

/// What the `#[cloud_run_client]` attribute knows at compile time.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct SharedSpec<'a> {
    /// A host or URL.
    pub url: &'a str,
    /// A custom audience.
    pub audience: Option<&'a str>,
    /// The environment variable that replaces `url` at run time.
    pub env: Option<&'a str>,
    /// `authorization` or `x-serverless-authorization`.
    pub header: Option<&'a str>,
    /// The default deadline of calls.
    pub timeout: Option<Duration>,
}

#[derive(Hash, PartialEq, Eq)]
struct Key {
    url: String,
    audience: Option<String>,
    header: Option<String>,
    timeout: Option<Duration>,
}

static CHANNELS: LazyLock<Mutex<HashMap<Key, CloudRunChannel>>> = LazyLock::new(Default::default);
static CACHES: LazyLock<Mutex<HashMap<String, TokenCache>>> = LazyLock::new(Default::default);

/// The shared channel for a spec, after the spec's environment override.
#[doc(hidden)]
pub fn shared_from_spec(spec: &SharedSpec<'_>) -> CloudRunChannel {
    let overridden = spec
        .env
        .and_then(|var| std::env::var(var).ok().map(|value| (var, value)))
        .filter(|(_, value)| !value.trim().is_empty());
    let url = match &overridden {
        Some((_, value)) => value.trim(),
        None => spec.url,
    };
    let audience = spec.audience.map(str::to_owned);
    let key = Key {
        url: url.to_owned(),
        audience: audience.clone(),
        header: spec.header.map(str::to_owned),
        timeout: spec.timeout,
    };
    let mut channels = crate::sync::lock(&CHANNELS);
    if let Some(channel) = channels.get(&key) {
        return channel.clone();
    }
    if let Some((var, value)) = &overridden {
        let url = cloud_run_grpc_endpoint::redacted(value);
        tracing::info!(%var, %url, "service URL overridden by the environment");
    }
    let channel = match make(url, audience, spec, overridden.is_some()) {
        Ok(channel) => channel,
        Err(error) => {
            let origin = overridden
                .as_ref()
                .map(|(var, _)| format!("the environment variable {var}"));
            let url = cloud_run_grpc_endpoint::redacted(url);
            tracing::error!(%error, origin = origin.as_deref(), "cannot make a channel to `{url}`");
            CloudRunChannel::broken(&url, error, origin.as_deref())
        }
    };
    channels.insert(key, channel.clone());
    channel
}

fn make(
    url: &str,
    audience: Option<String>,
    spec: &SharedSpec<'_>,
    overridden: bool,
) -> Result<CloudRunChannel, crate::Error> {
    if overridden && let Some(audience) = &audience {
        check_override(url, audience, spec.url)?;
    }
    let mut builder = if url.contains("://") {
        CloudRunChannel::from_url(url)?
    } else {
        CloudRunChannel::builder(url)
    };
    if let Some(audience) = audience {
        builder = builder.audience(audience);
    }
    if let Some(header) = spec.header {
        builder = builder.header(header.parse::<AuthHeader>()?);
    }
    if let Some(timeout) = spec.timeout {
        builder = builder.timeout(timeout);
    }
    let audience = builder.effective_audience()?;
    let cache = crate::sync::lock(&CACHES)
        .entry(audience.clone())
        .or_insert_with(|| TokenCache::new(default_source(), audience))
        .clone();
    builder.token_cache(cache).build()
}

/// An override keeps an explicit audience (it names the service, not a URL), so tokens for
/// that audience would go wherever the override points. To another host that is a leak: the
/// host could replay them against the service. Allowed only to the configured host (another
/// port or scheme) and to loopback (a local server, a test).
fn check_override(url: &str, audience: &str, configured: &str) -> Result<(), crate::Error> {
    let invalid = |reason: String| crate::Error::InvalidUrl {
        url: cloud_run_grpc_endpoint::redacted(url),
        reason,
    };
    let target = cloud_run_grpc_endpoint::target(url).map_err(|p| invalid(p.to_string()))?;
    let configured_host = cloud_run_grpc_endpoint::target(configured)
        .map(|t| t.host)
        .unwrap_or_default();
    if target.is_loopback() || target.host == configured_host {
        return Ok(());
    }
    Err(invalid(format!(
        "it points at {}, but the client's `audience` is fixed to {audience}: ID tokens for \
         that audience would be sent to another host, which could replay them against the \
         service. Remove `audience` from the attribute (the audience then follows the URL), or \
         build the channel yourself and pass it to `with_channel`",
        target.host
    )))
}
