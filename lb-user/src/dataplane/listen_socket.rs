//! Opening a frontend's listening socket, and making sure no other process listens there.
//!
//! Every listener has SO_REUSEPORT so that a refresh can open a frontend's new address
//! before closing the old one (a dedicated address beside the wildcard on the same port):
//! without it the kernel refuses the second bind while the first socket listens, and the
//! change would leave a gap. SO_REUSEPORT would also let another process's socket share the
//! port silently and take part of the connections, so the host's listening sockets are
//! checked before each bind ([`ForeignListeners`]).
use std::{
    collections::HashSet,
    fs, io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::AsRawFd,
};

/// A frontend's listener. Its accepted connections inherit TCP_NODELAY and our keepalive
/// (Linux copies a listener's TCP options into each connection it accepts): five system
/// calls per connection saved.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = bound_sharing(addr)?;
    socket.set_nodelay(true)?;
    socket.set_tcp_keepalive(&crate::dataplane::liveness::keepalive_settings())?;
    socket.set_nonblocking(true)?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// A TCP socket bound to `addr` with SO_REUSEADDR and SO_REUSEPORT, so that our own
/// sockets on the same port (a listener being replaced, a port held for an adopted flow)
/// stand beside each other.
pub fn bound_sharing(addr: SocketAddr) -> io::Result<socket2::Socket> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        // The IPv4 wildcard has its own socket.
        socket.set_only_v6(true)?;
    }
    // Dedicated addresses may be brought up after the daemon (failover IPs).
    socket.set_freebind(true).ok();
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Listening TCP sockets of this network namespace that are not ours.
pub struct ForeignListeners {
    scanned: Option<Vec<SocketAddr>>,
    ours: HashSet<u64>,
}

impl ForeignListeners {
    /// Reads the table lazily: only a refresh that binds something new pays for it (the
    /// table lists every connection of the host).
    pub fn scan(ours: &[&std::net::TcpListener]) -> io::Result<Self> {
        let ours = ours.iter().filter_map(|l| socket_inode(l.as_raw_fd())).collect();
        Ok(Self { scanned: None, ours })
    }

    /// A foreign listener whose address overlaps `addr` (same family and port; equal
    /// addresses, or either one the wildcard).
    pub fn overlapping(&mut self, addr: SocketAddr) -> Option<SocketAddr> {
        if self.scanned.is_none() {
            let mut found = Vec::new();
            for (table, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
                // A kernel without IPv6 has no tcp6 table: nothing listens there.
                let Ok(text) = fs::read_to_string(table) else { continue };
                found.extend(text.lines().skip(1).filter_map(|line| listening(line, v6, &self.ours)));
            }
            self.scanned = Some(found);
        }
        let overlaps = |other: &SocketAddr| {
            other.port() == addr.port()
                && other.is_ipv6() == addr.is_ipv6()
                && (other.ip() == addr.ip() || other.ip().is_unspecified() || addr.ip().is_unspecified())
        };
        self.scanned.as_ref()?.iter().copied().find(overlaps)
    }
}

/// The socket inode behind a descriptor, as /proc/net/tcp names it.
fn socket_inode(fd: i32) -> Option<u64> {
    let link = fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    link.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// The local address of a /proc/net/tcp{,6} line in state LISTEN whose inode is not ours.
fn listening(line: &str, v6: bool, ours: &HashSet<u64>) -> Option<SocketAddr> {
    const LISTEN: &str = "0A";
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
    if *state != LISTEN || ours.contains(&inode.parse().ok()?) {
        return None;
    }
    let (ip, port) = local.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(SocketAddr::new(parse_ip(ip, v6)?, port))
}

/// The kernel prints addresses as 32-bit words in host byte order.
fn parse_ip(hex: &str, v6: bool) -> Option<IpAddr> {
    let word = |i: usize| hex.get(i * 8..i * 8 + 8).and_then(|w| u32::from_str_radix(w, 16).ok()).map(u32::to_ne_bytes);
    if v6 {
        let mut bytes = [0u8; 16];
        for i in 0..4 {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
        }
        (hex.len() == 32).then_some(IpAddr::V6(Ipv6Addr::from(bytes)))
    } else {
        (hex.len() == 8).then_some(IpAddr::V4(Ipv4Addr::from(word(0)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_connections_inherit_nodelay_and_keepalive() {
        use crate::dataplane::liveness::{KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_PROBES};
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        listener.set_nonblocking(false).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let sock = socket2::SockRef::from(&accepted);
        assert!(sock.nodelay().unwrap());
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.keepalive_time().unwrap(), KEEPALIVE_IDLE);
        assert_eq!(sock.keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        assert_eq!(sock.keepalive_retries().unwrap(), KEEPALIVE_PROBES);
    }

    #[test]
    fn proc_net_lines_give_foreign_listening_addresses() {
        let v4 = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0";
        let none = HashSet::new();
        assert_eq!(listening(v4, false, &none), "127.0.0.1:8080".parse().ok());
        assert_eq!(listening(v4, false, &HashSet::from([4242])), None, "our own socket");
        let established = v4.replace(" 0A ", " 01 ");
        assert_eq!(listening(&established, false, &none), None);
        let v6 = "   0: 00000000000000000000000001000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0000000000000000 100 0 0 10 0";
        assert_eq!(listening(v6, true, &none), "[::1]:443".parse().ok());
    }

    #[test]
    fn a_foreign_wildcard_overlaps_a_dedicated_address_of_the_same_port() {
        let mut foreign = ForeignListeners { scanned: Some(vec!["0.0.0.0:443".parse().unwrap()]), ours: HashSet::new() };
        assert!(foreign.overlapping("192.0.2.1:443".parse().unwrap()).is_some());
        assert!(foreign.overlapping("192.0.2.1:444".parse().unwrap()).is_none());
        assert!(foreign.overlapping("[2001:db8::1]:443".parse().unwrap()).is_none());
    }

    #[test]
    fn our_own_listener_is_not_foreign() {
        let ours = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = ours.local_addr().unwrap();
        let mut foreign = ForeignListeners::scan(&[&ours]).unwrap();
        assert_eq!(foreign.overlapping(addr), None);
        let mut without = ForeignListeners::scan(&[]).unwrap();
        assert_eq!(without.overlapping(addr), Some(addr));
    }
}
