//! Raw TCP segments for hostile-client tests: bare SYNs from any source address (half-open
//! connections that never complete), and the kernel's view of them (`SYN_RECV` entries).
// Unsafe here: a raw IP socket and sendto(2) for hand-made SYNs.
#![allow(unsafe_code)]

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{Context, Result};

/// A raw IPv4 socket (`IPPROTO_RAW`: the caller writes the IP header). Needs root.
pub struct RawSender {
    fd: OwnedFd,
}

impl RawSender {
    pub fn new() -> Result<Self> {
        // SAFETY: socket(2) with constant arguments; the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        if fd < 0 {
            return Err(io::Error::last_os_error()).context("socket(AF_INET, SOCK_RAW, IPPROTO_RAW)");
        }
        // SAFETY: `fd` is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    /// Sends one SYN from `src` to `dst` with initial sequence number `seq`.
    pub fn syn(&self, src: SocketAddrV4, dst: SocketAddrV4, seq: u32) -> Result<()> {
        self.send(dst, &syn_packet(src, dst, seq))
    }

    /// Sends one bare RST from `src` to `dst` with sequence number `seq`: what a blind
    /// attacker who knows a connection's addresses can send.
    pub fn rst(&self, src: SocketAddrV4, dst: SocketAddrV4, seq: u32) -> Result<()> {
        self.send(dst, &segment(src, dst, seq, 0x04, &[]))
    }

    fn send(&self, dst: SocketAddrV4, packet: &[u8]) -> Result<()> {
        let to = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(dst.ip().octets()) },
            sin_zero: [0; 8],
        };
        // SAFETY: `packet` and `to` are valid for the duration of the call.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&to as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error()).with_context(|| format!("sending a raw segment to {dst}"));
        }
        Ok(())
    }
}

/// An IPv4 header (checksum, id and total length left to the kernel) and a TCP SYN with an
/// MSS option.
pub fn syn_packet(src: SocketAddrV4, dst: SocketAddrV4, seq: u32) -> Vec<u8> {
    segment(src, dst, seq, 0x02, &[2, 4, 0x05, 0xb4]) // MSS 1460
}

/// An IPv4 header and a TCP header with `flags` and `options` (whole words), no payload.
fn segment(src: SocketAddrV4, dst: SocketAddrV4, seq: u32, flags: u8, options: &[u8]) -> Vec<u8> {
    let mut tcp = Vec::with_capacity(20 + options.len());
    tcp.extend_from_slice(&src.port().to_be_bytes());
    tcp.extend_from_slice(&dst.port().to_be_bytes());
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&0u32.to_be_bytes()); // ack
    tcp.push(((5 + options.len() / 4) as u8) << 4); // data offset in words
    tcp.push(flags);
    tcp.extend_from_slice(&64240u16.to_be_bytes()); // window
    tcp.extend_from_slice(&[0, 0]); // checksum, below
    tcp.extend_from_slice(&[0, 0]); // urgent pointer
    tcp.extend_from_slice(options);
    let sum = tcp_checksum(*src.ip(), *dst.ip(), &tcp);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());

    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, libc::IPPROTO_TCP as u8, 0, 0];
    ip.extend_from_slice(&src.ip().octets());
    ip.extend_from_slice(&dst.ip().octets());
    ip.extend_from_slice(&tcp);
    ip
}

fn tcp_checksum(src: Ipv4Addr, dst: Ipv4Addr, segment: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&[0, libc::IPPROTO_TCP as u8]);
    add(&(segment.len() as u16).to_be_bytes());
    add(segment);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// TCP sockets of the calling thread's network namespace in state `SYN_RECV` whose local
/// port is `port` (from `/proc/thread-self/net/tcp`; run it inside [`crate::in_netns`]).
pub fn syn_recv_count(port: u16) -> Result<usize> {
    let path = "/proc/thread-self/net/tcp";
    let table = fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let wanted = format!(":{port:04X}");
    Ok(table
        .lines()
        .skip(1)
        .filter(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            cols.len() > 3 && cols[1].ends_with(&wanted) && cols[3] == "03"
        })
        .count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syn_checksum_verifies() {
        let src = SocketAddrV4::new(Ipv4Addr::new(10, 77, 1, 50), 40000);
        let dst = SocketAddrV4::new(Ipv4Addr::new(10, 77, 1, 1), 443);
        let packet = syn_packet(src, dst, 1);
        // Summing a segment with its checksum in place gives 0 (one's complement).
        assert_eq!(tcp_checksum(*src.ip(), *dst.ip(), &packet[20..]), 0);
        assert_eq!(packet.len(), 44);
        assert_eq!(packet[33], 0x02);
    }
}
