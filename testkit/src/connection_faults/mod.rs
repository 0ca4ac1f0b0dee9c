//! Faults of the connection itself, for testing how a client finds dead connections: a proxy
//! whose connections go silent, a server that never finishes a TLS handshake, and an h2c proxy
//! that enforces grpc-go's keepalive policy with `GOAWAY` `too_many_pings`.
//!
//! Each runs on the Tokio runtime that started it, listens on `127.0.0.1`, counts what it saw,
//! and closes every socket it holds when dropped.

mod keepalive;
mod proxy;
mod silent;

pub use keepalive::{KeepaliveEnforcer, KeepaliveEnforcerBuilder};
pub use proxy::TcpProxy;
pub use silent::SilentServer;

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::runtime::Handle;

/// A listener on a free port of `127.0.0.1`, on the caller's runtime.
fn listen() -> io::Result<(Handle, TcpListener, SocketAddr)> {
    let runtime = crate::runtime::current()?;
    let listener = crate::runtime::bind(&runtime, (std::net::Ipv4Addr::LOCALHOST, 0).into())?;
    let addr = listener.local_addr()?;
    Ok((runtime, listener, addr))
}
