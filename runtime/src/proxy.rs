//! HTTPS proxies, as `HTTPS_PROXY` and `NO_PROXY` name them: which one a connection takes,
//! and the `CONNECT` tunnel through it. Shared by the channel's dials and token fetches.

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::{Intercept, Matcher};

/// The proxy the environment names for `uri`; never one for this machine.
pub(crate) fn proxy_for(uri: &Uri) -> Option<Intercept> {
    let host = uri.host()?;
    if cloud_run_grpc_endpoint::is_loopback(host) {
        return None;
    }
    Matcher::from_env().intercept(uri)
}

/// A `CONNECT` tunnel through `proxy` over `tcp`, with the proxy's credentials if it has any.
pub(crate) fn tunnel(proxy: &Intercept, tcp: HttpConnector) -> Tunnel<HttpConnector> {
    let tunnel = Tunnel::new(proxy.uri().clone(), tcp);
    match proxy.basic_auth() {
        Some(auth) => tunnel.with_auth(auth.clone()),
        None => tunnel,
    }
}
