//! Relayed connections must not hold a slot forever when a peer vanishes or goes quiet:
//! both sockets get TCP keepalive (a peer that disappeared without a FIN or RST is found
//! within about two minutes of silence), and a connection on which neither side sent
//! anything for its frontend's `idleTimeout` is closed.
//!
//! Idleness is read from the kernel (`tcpi_last_data_recv` of both sockets), so it works the
//! same whatever relays the bytes (copy, splice), costs one timer per connection and no work
//! per byte. A connection handed to the XDP program has sockets in repair mode that receive
//! nothing: it is never idle here; the hand-off's own idle timeout reclaims its flow.
// Unsafe here: getsockopt(TCP_INFO) into a zeroed tcp_info: nix has no wrapper for the fields read here.
#![allow(unsafe_code)]
use std::{
    io,
    os::fd::{AsRawFd, RawFd},
    time::Duration,
};

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

use crate::dataplane::fastpath::Moved;

/// Silence before the first keepalive probe.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// Between unanswered probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes before the kernel gives up on the peer (the relay then sees an error).
pub const KEEPALIVE_PROBES: u32 = 6;

/// Our keepalive timings.
pub fn keepalive_settings() -> TcpKeepalive {
    TcpKeepalive::new().with_time(KEEPALIVE_IDLE).with_interval(KEEPALIVE_INTERVAL).with_retries(KEEPALIVE_PROBES)
}

/// Turns TCP keepalive on for a relayed socket (server side: client sockets inherit it from
/// their listener, listen_socket.rs).
pub fn keepalive(stream: &TcpStream) -> io::Result<()> {
    SockRef::from(stream).set_tcp_keepalive(&keepalive_settings())
}

/// Watches the two sockets of a relayed connection for idleness, and tells how many bytes
/// each received (for the access log of a connection whose relay is cut short).
///
/// It holds their raw descriptors, not the streams: those belong to the relay. It must only
/// be awaited next to the relay that owns them (in the same `select!`), so that it is never
/// polled once they are closed.
pub struct IdleWatch {
    fds: [RawFd; 2],
    limit: Option<Duration>,
}

impl IdleWatch {
    /// `limit` None: never idle.
    pub fn new(client: &TcpStream, server: &TcpStream, limit: Option<Duration>) -> Self {
        Self { fds: [client.as_raw_fd(), server.as_raw_fd()], limit }
    }

    /// Completes once neither socket has received data for the limit.
    pub async fn expired(&self) {
        let Some(limit) = self.limit else {
            return std::future::pending().await;
        };
        // The peers have just spoken (the hello, the connect): no look before a whole
        // limit has passed, which spares most connections, short ones, any getsockopt.
        let mut wait = limit;
        loop {
            tokio::time::sleep(wait).await;
            wait = match self.quiet_for() {
                Some(quiet) if quiet >= limit => return,
                Some(quiet) => limit - quiet,
                // Handed off, or the kernel could not tell: look again later.
                None => limit,
            };
        }
    }

    /// Whether the connection is carried by the XDP program (its sockets in repair mode).
    pub fn handed_off(&self) -> bool {
        in_repair(self.fds[0]).unwrap_or(false)
    }

    /// Bytes the kernel received from the client and from the server so far (`tcpi_bytes_received`;
    /// for a handed-off connection, up to the hand-off). Zero where it cannot tell.
    pub fn received(&self) -> Moved {
        let [client, server] = self.fds.map(|fd| tcp_info(fd).map_or(0, |i| i.tcpi_bytes_received));
        Moved { to_server: client, to_client: server }
    }

    /// How long since either socket last received data; None when a socket is in repair
    /// mode (handed off) or cannot be queried.
    fn quiet_for(&self) -> Option<Duration> {
        let mut quiet = Duration::MAX;
        for fd in self.fds {
            if in_repair(fd).unwrap_or(true) {
                return None;
            }
            quiet = quiet.min(last_data_received(fd).ok()?);
        }
        Some(quiet)
    }
}

fn getsockopt<T: Default>(fd: RawFd, option: libc::c_int) -> io::Result<T> {
    let mut value = T::default();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a valid, writable T of `len` bytes; the kernel writes at most `len`.
    let rc = unsafe { libc::getsockopt(fd, libc::IPPROTO_TCP, option, (&raw mut value).cast(), &mut len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

fn in_repair(fd: RawFd) -> io::Result<bool> {
    getsockopt::<libc::c_int>(fd, libc::TCP_REPAIR).map(|v| v != 0)
}

/// `tcpi_last_data_recv`: time since the socket last received a segment carrying data
/// (or, before any, since the connection was established).
fn last_data_received(fd: RawFd) -> io::Result<Duration> {
    Ok(Duration::from_millis(u64::from(tcp_info(fd)?.tcpi_last_data_recv)))
}

fn tcp_info(fd: RawFd) -> io::Result<libc::tcp_info> {
    getsockopt::<TcpInfo>(fd, libc::TCP_INFO).map(|i| i.0)
}

struct TcpInfo(libc::tcp_info);

impl Default for TcpInfo {
    fn default() -> Self {
        // SAFETY: tcp_info is plain integers, for which all zeroes is a valid value.
        Self(unsafe { std::mem::zeroed() })
    }
}

#[cfg(test)]
mod tests {
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn keepalive_is_set_with_our_timings() {
        let (a, _b) = pair().await;
        keepalive(&a).unwrap();
        let sock = SockRef::from(&a);
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.keepalive_time().unwrap(), KEEPALIVE_IDLE);
        assert_eq!(sock.keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        assert_eq!(sock.keepalive_retries().unwrap(), KEEPALIVE_PROBES);
    }

    #[tokio::test]
    async fn a_quiet_pair_expires_and_traffic_postpones_it() {
        let (mut a, mut b) = pair().await;
        let watch = IdleWatch::new(&a, &b, Some(Duration::from_millis(600)));
        let started = std::time::Instant::now();
        // Data each way 300 ms in: the idle period starts again from there.
        let talk = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            a.write_all(b"x").await.unwrap();
            b.write_all(b"y").await.unwrap();
            let mut byte = [0u8; 1];
            b.read_exact(&mut byte).await.unwrap();
            a.read_exact(&mut byte).await.unwrap();
        };
        tokio::join!(watch.expired(), talk);
        let took = started.elapsed();
        let received = watch.received();
        assert_eq!((received.to_server, received.to_client), (1, 1));
        assert!(took >= Duration::from_millis(880), "expired after {took:?}, before 300 + 600 ms");
        assert!(took < Duration::from_millis(1500), "expired only after {took:?}");
    }

    #[tokio::test]
    async fn no_limit_never_expires() {
        let (a, b) = pair().await;
        let watch = IdleWatch::new(&a, &b, None);
        assert!(tokio::time::timeout(Duration::from_millis(100), watch.expired()).await.is_err());
    }
}
