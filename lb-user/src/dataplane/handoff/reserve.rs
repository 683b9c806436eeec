//! Local ports of adopted flows, kept out of new connections' reach.
//!
//! A flow handed off by this daemon keeps its two retired sockets until it ends, so no new
//! connection can draw the load balancer's port of its server-side connection. A flow
//! adopted after a restart has no socket: an upstream `connect()` could then pick that very
//! port toward the same server, and its frames would collide with the flow's. Binding a
//! socket to each such address and port takes it out of the kernel's choice: `connect()`
//! never picks a port whose bind bucket was made by an explicit `bind()`.
use std::{collections::HashMap, io, net::SocketAddr, ops::RangeInclusive};

use lb_common::{addr::bytes_addr, SpliceEntry};
use socket2::Socket;

use crate::dataplane::listen_socket;

/// The sockets holding adopted flows' ports, by the flow's port.
#[derive(Default)]
pub struct Reserved {
    sockets: HashMap<SocketAddr, Socket>,
}

impl Reserved {
    /// Reserves the load balancer's own end of every adopted connection whose port lies in
    /// the kernel's ephemeral range (the server-side ends; frontend ports are the
    /// listeners'). Returns how many were reserved, and the addresses it could not bind.
    pub fn adopt<'a>(&mut self, entries: impl Iterator<Item = &'a SpliceEntry>) -> (usize, Vec<(SocketAddr, io::Error)>) {
        let range = ephemeral_ports().unwrap_or(32768..=60999);
        let mut failed = Vec::new();
        for entry in entries {
            let local = own_end(entry);
            if !range.contains(&local.port()) || self.sockets.contains_key(&local) {
                continue;
            }
            match hold(local) {
                Ok(socket) => {
                    self.sockets.insert(local, socket);
                }
                Err(e) => failed.push((local, e)),
            }
        }
        (self.sockets.len(), failed)
    }

    /// Gives the port back once the flow that used it is gone (nothing if it held none).
    pub fn release(&mut self, entry: &SpliceEntry) {
        self.sockets.remove(&own_end(entry));
    }
}

/// The load balancer's end of the connection an entry's frames are rewritten onto.
fn own_end(entry: &SpliceEntry) -> SocketAddr {
    SocketAddr::new(bytes_addr(&entry.src_addr, entry.family), u16::from_be(entry.src_port))
}

/// A bound, never connected, never listening socket: `connect()` avoids its port, and its
/// SO_REUSEADDR and SO_REUSEPORT keep it from standing in a listener's way.
fn hold(addr: SocketAddr) -> io::Result<Socket> {
    listen_socket::bound_sharing(addr)
}

/// `net.ipv4.ip_local_port_range` (it also governs IPv6).
fn ephemeral_ports() -> Option<RangeInclusive<u16>> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut bounds = text.split_whitespace().map(|n| n.parse::<u16>().ok());
    Some(bounds.next()??..=bounds.next()??)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use lb_common::FAMILY_V4;
    use socket2::{Domain, Type};

    use super::*;

    fn entry_from(addr: SocketAddr) -> SpliceEntry {
        let mut src_addr = [0u8; 16];
        let family = match addr.ip() {
            IpAddr::V4(v4) => {
                src_addr[..4].copy_from_slice(&v4.octets());
                FAMILY_V4
            }
            IpAddr::V6(v6) => {
                src_addr = v6.octets();
                lb_common::FAMILY_V6
            }
        };
        SpliceEntry { src_addr, src_port: addr.port().to_be(), family, ..SpliceEntry::default() }
    }

    /// A free port of the ephemeral range on an address no other test uses: the lib tests
    /// run beside each other and their loopback connections draw ephemeral ports too, so a
    /// fixed port is sometimes taken (it failed a CI run that way).
    fn unused_ephemeral_address() -> SocketAddr {
        let probe = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        probe.bind(&SocketAddr::from(([127, 77, 0, 1], 0)).into()).unwrap();
        probe.local_addr().unwrap().as_socket().unwrap()
    }

    /// That connect() then skips the port is the kernel's rule for explicitly bound ports
    /// (tests/tests/handoff.rs shows it with a one-port ephemeral range); here: the port is
    /// held, a listener may still share it, and release frees it.
    #[test]
    fn a_reserved_port_is_held_until_released_and_leaves_room_for_a_listener() {
        let addr = unused_ephemeral_address();
        assert!(ephemeral_ports().unwrap().contains(&addr.port()));
        let mut reserved = Reserved::default();
        let (count, failed) = reserved.adopt([entry_from(addr)].iter());
        assert!(failed.is_empty(), "{failed:?}");
        assert_eq!(count, 1);
        // A socket without SO_REUSEADDR (std's listeners set it) cannot share the port.
        let plain = || Socket::new(Domain::IPV4, Type::STREAM, None).and_then(|s| s.bind(&addr.into()));
        assert_eq!(plain().unwrap_err().kind(), io::ErrorKind::AddrInUse);
        let beside = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        beside.set_reuse_address(true).unwrap();
        beside.set_reuse_port(true).unwrap();
        beside.bind(&addr.into()).unwrap();
        beside.listen(1).unwrap();
        drop(beside);
        reserved.release(&entry_from(addr));
        assert!(reserved.sockets.is_empty());
        assert!(plain().is_ok(), "the port stayed held after release");
    }

    #[test]
    fn ports_outside_the_ephemeral_range_are_left_alone() {
        let mut reserved = Reserved::default();
        let (count, failed) = reserved.adopt([entry_from(SocketAddr::from(([127, 0, 0, 1], 443)))].iter());
        assert_eq!((count, failed.len()), (0, 0));
    }
}
