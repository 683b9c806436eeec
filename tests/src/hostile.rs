//! Hostile clients for robustness tests: connections that trickle, stall or send nonsense
//! and watch for the peer to close them, and crowds of idle connections. Every loop is
//! bounded in count and time; run them inside the client namespace ([`crate::in_netns`]).
// Unsafe here: poll(2) on the kit's own sockets to watch for the peer closing.
#![allow(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::client::tcp_connect;

/// How one hostile connection ended.
#[derive(Debug, Clone, Copy)]
pub struct Closed {
    /// From connect to the close the client saw (EOF or reset).
    pub after: Duration,
    /// Bytes the client had sent by then.
    pub sent: usize,
}

/// Connects to `to`, sends `first`, then `trickle` one byte every `every` (the first at once),
/// and returns when the peer closes the connection; fails if it is still open after `limit`.
/// Closure is watched with poll(2) between writes, so it is seen within a few milliseconds.
pub fn hold(to: SocketAddr, first: &[u8], trickle: &[u8], every: Duration, limit: Duration) -> Result<Closed> {
    let mut sock = tcp_connect(None, to, Duration::from_secs(3)).context("connecting")?;
    let started = Instant::now();
    sock.set_nodelay(true)?;
    let mut sent = 0;
    let closed = |sent| Ok(Closed { after: started.elapsed(), sent });
    if !first.is_empty() {
        if !send(&mut sock, first)? {
            return closed(sent);
        }
        sent += first.len();
    }
    let mut next = trickle.iter();
    loop {
        if let Some(byte) = next.next() {
            if !send(&mut sock, &[*byte])? {
                return closed(sent);
            }
            sent += 1;
        }
        if wait_closed(&mut sock, every)? {
            return closed(sent);
        }
        if started.elapsed() >= limit {
            bail!("still open after {:?} ({sent} bytes sent)", started.elapsed());
        }
    }
}

/// Writes `bytes`: false if the peer had closed the connection.
pub fn send(sock: &mut TcpStream, bytes: &[u8]) -> Result<bool> {
    match sock.write_all(bytes) {
        Ok(()) => Ok(true),
        Err(e) if closed_by_peer(&e) => Ok(false),
        Err(e) => Err(e).context("writing"),
    }
}

pub fn closed_by_peer(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe)
}

/// Waits up to `timeout` for the peer to close `sock`: true on EOF or reset.
pub fn wait_closed(sock: &mut TcpStream, timeout: Duration) -> Result<bool> {
    let mut fds = [libc::pollfd { fd: sock.as_raw_fd(), events: libc::POLLIN | libc::POLLRDHUP, revents: 0 }];
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, timeout.as_millis() as libc::c_int) };
    if n < 0 {
        return Err(io::Error::last_os_error()).context("poll");
    }
    if n == 0 {
        return Ok(false);
    }
    let mut buf = [0u8; 512];
    match sock.read(&mut buf) {
        Ok(0) => Ok(true),
        Ok(k) => bail!("the peer sent {k} bytes to a client that never completed a hello"),
        Err(e) if closed_by_peer(&e) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e).context("reading"),
    }
}

/// Deterministic noise (xorshift64*).
pub fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// Opens `count` connections to `to` that send nothing and waits (at most `limit` after the
/// last is open) until the peer has closed every one; returns the longest time from a connection's connect to its close, and the time to
/// open them all.
pub fn idle_crowd(to: SocketAddr, count: usize, limit: Duration) -> Result<(Duration, Duration)> {
    let opening = Instant::now();
    let mut open: Vec<(TcpStream, Instant)> = Vec::with_capacity(count);
    for i in 0..count {
        let sock = tcp_connect(None, to, Duration::from_secs(3)).with_context(|| format!("idle connection {i} of {count}"))?;
        sock.set_nonblocking(true)?;
        open.push((sock, Instant::now()));
    }
    let opened = opening.elapsed();
    let deadline = Instant::now() + limit;
    let mut longest = Duration::ZERO;
    let mut buf = [0u8; 64];
    while !open.is_empty() {
        if Instant::now() >= deadline {
            bail!("{} of {count} idle connections still open {limit:?} after the last was opened", open.len());
        }
        let mut fds: Vec<libc::pollfd> =
            open.iter().map(|(s, _)| libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLIN | libc::POLLRDHUP, revents: 0 }).collect();
        // SAFETY: `fds` is a valid array of `fds.len()` pollfds for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
        if n < 0 {
            return Err(io::Error::last_os_error()).context("poll");
        }
        let now = Instant::now();
        let mut keep = Vec::with_capacity(open.len());
        for ((mut sock, at), fd) in open.into_iter().zip(&fds) {
            if fd.revents == 0 {
                keep.push((sock, at));
                continue;
            }
            match sock.read(&mut buf) {
                Ok(0) => longest = longest.max(now - at),
                Err(e) if closed_by_peer(&e) => longest = longest.max(now - at),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => keep.push((sock, at)),
                Ok(k) => bail!("the peer sent {k} bytes to an idle client"),
                Err(e) => return Err(e).context("reading an idle connection"),
            }
        }
        open = keep;
    }
    Ok((longest, opened))
}
