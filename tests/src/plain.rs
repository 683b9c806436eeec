//! Plain (non-TLS) TCP clients: echo checks and waiting for the peer to close.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::client::tcp_connect;

/// A plain (non-TLS) TCP exchange: connect, send `payload`, shut the write side, read until EOF.
pub fn plain_tcp_exchange(bind: Option<IpAddr>, to: SocketAddr, payload: &[u8], timeout: Duration) -> Result<Vec<u8>> {
    let mut sock = tcp_connect(bind, to, timeout).with_context(|| format!("TCP connect to {to}"))?;
    sock.write_all(payload).context("sending plain payload")?;
    sock.shutdown(Shutdown::Write)?;
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline {
        match sock.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(e).context(format!("reading plain reply after {} bytes", out.len())),
        }
    }
    bail!("plain TCP reply not finished within {timeout:?} ({} bytes)", out.len())
}

/// A plain (non-TLS) TCP echo check that does not depend on half-close: connect, send
/// `payload`, read until as many bytes came back (or EOF).
pub fn plain_tcp_echo(bind: Option<IpAddr>, to: SocketAddr, payload: &[u8], timeout: Duration) -> Result<Vec<u8>> {
    let mut sock = tcp_connect(bind, to, timeout).with_context(|| format!("TCP connect to {to}"))?;
    sock.write_all(payload).context("sending plain payload")?;
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    while out.len() < payload.len() {
        if Instant::now() >= deadline {
            bail!("plain TCP echo incomplete after {timeout:?}: {out:?}");
        }
        match sock.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(e).context(format!("reading plain echo after {} bytes", out.len())),
        }
    }
    Ok(out)
}

/// Connects, sends `prefix`, then nothing: returns how long until the peer closed (EOF or
/// reset), or an error if it did not within `limit`.
pub fn time_until_closed(bind: Option<IpAddr>, to: SocketAddr, prefix: &[u8], limit: Duration) -> Result<Duration> {
    let mut sock = tcp_connect(bind, to, Duration::from_secs(3)).with_context(|| format!("TCP connect to {to}"))?;
    sock.set_read_timeout(Some(limit))?;
    sock.write_all(prefix)?;
    let started = Instant::now();
    let mut chunk = [0u8; 1024];
    match sock.read(&mut chunk) {
        Ok(0) => Ok(started.elapsed()),
        Ok(n) => bail!("peer sent {n} bytes to a client that never finished its hello"),
        Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted) => Ok(started.elapsed()),
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
            bail!("connection still open after {limit:?}")
        }
        Err(e) => Err(e).context("waiting for the close"),
    }
}
