//! Segments the daemon sends into a handed-off flow on its own (docs/fastpath.md, "Ends
//! nobody saw"). A live flow whose end the program never saw (an RST it had to judge out of
//! window, a peer that vanished) would otherwise hold its entries until the idle timeout,
//! and drop the SYNs of a later connection from the same address and port.
//!
//! - A **probe** is what Linux's own keepalive sends: an ACK one byte behind what the peer
//!   expects. A peer whose connection lives answers with a duplicate ACK; a host without the
//!   connection (or with a new one, in SYN-SENT, on the same ports) answers with an RST
//!   whose sequence number is the probe's acknowledgment number. That number is chosen
//!   where the program takes an RST as exact for the other peer, so the flow ends there.
//! - A **window update** is an ACK at the peer's next expected sequence number with the other
//!   peer's window, for a peer held at a zero window while its flow was handed off.
//! - An **end** is an RST at the peer's next expected sequence number, for a flow whose
//!   other peer stopped answering probes.
use std::net::{IpAddr, SocketAddr};

use lb_common::{addr::bytes_addr, csum, tcp::rescale_window, FlowKey, SpliceEntry};

const TCP_ACK: u8 = 0x10;
const TCP_RST: u8 = 0x04;
const TCP_HEADER: usize = 20;
const IPPROTO_TCP: u8 = 6;

/// A whole IP packet (header included) and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The load balancer's end of the peer's connection.
    pub src: SocketAddr,
    /// The peer.
    pub dst: SocketAddr,
    /// IPv4 or IPv6 header, then a TCP header without options.
    pub bytes: Vec<u8>,
}

/// The probe toward the peer whose frames `entry` rewrites (keyed `key`, as its frames
/// arrive); `reverse` is the other direction's entry.
pub fn probe(key: &FlowKey, entry: &SpliceEntry, reverse: &SpliceEntry) -> Segment {
    let (seq, ack, window) = positions(entry, reverse);
    build(key, entry.family, seq.wrapping_sub(1), ack, TCP_ACK, window)
}

/// A window update toward the peer whose frames `entry` rewrites: the window the other
/// peer last offered, at the place the peer expects. Sent when a flow goes live, since the
/// peer was last told a zero window (the hold before the freeze) and would otherwise wait
/// for its own zero-window probe (a retransmission timeout) to learn it is open.
pub fn window_update(key: &FlowKey, entry: &SpliceEntry, reverse: &SpliceEntry) -> Segment {
    let (seq, ack, window) = positions(entry, reverse);
    build(key, entry.family, seq, ack, TCP_ACK, window)
}

/// A zero-window ACK from our end of a peer's connection, `seq` and `ack` as our socket
/// stands (next byte it sends, next byte it expects): tells a peer being held before the
/// freeze to stop sending, when our socket has nothing to send that would carry the closed
/// window (everything was acknowledged before the hold).
pub fn zero_window(key: &FlowKey, family: u8, seq: u32, ack: u32) -> Segment {
    build(key, family, seq, ack, TCP_ACK, 0)
}

/// Our socket's ACK as it stands (`at`: next byte it sends, next byte it expects, what is
/// left of the window it last offered, shifted by our window scale `wscale`): undoes a zero
/// window told in the socket's name when a hand-off is abandoned after the hold.
pub fn offered_window(key: &FlowKey, family: u8, at: &super::Sequences, wscale: u8) -> Segment {
    // RFC 7323 caps the shift at 14.
    let window = (at.offered_window >> wscale.min(14)).min(u32::from(u16::MAX)) as u16;
    build(key, family, at.snd_nxt, at.rcv_nxt, TCP_ACK, window)
}

/// The RST that ends the peer's connection (exact while nothing is in flight toward it).
pub fn end(key: &FlowKey, entry: &SpliceEntry, reverse: &SpliceEntry) -> Segment {
    let (seq, ack, _) = positions(entry, reverse);
    build(key, entry.family, seq, ack, TCP_RST | TCP_ACK, 0)
}

/// In the peer's connection: the sequence number it expects next from us (what it last
/// acknowledged), what we acknowledge of its stream (what the other peer last acknowledged,
/// translated back), and the window the other peer last offered, as the program rescales it.
fn positions(entry: &SpliceEntry, reverse: &SpliceEntry) -> (u32, u32, u16) {
    let ack = reverse.last_ack.wrapping_sub(entry.seq_add);
    let window = rescale_window(reverse.last_win, reverse.wscale_in, reverse.wscale_out);
    (entry.last_ack, ack, window)
}

fn build(key: &FlowKey, family: u8, seq: u32, ack: u32, flags: u8, window: u16) -> Segment {
    let src = SocketAddr::new(bytes_addr(&key.local_addr, family), u16::from_be(key.local_port));
    let dst = SocketAddr::new(bytes_addr(&key.remote_addr, family), u16::from_be(key.remote_port));
    let mut tcp = [0u8; TCP_HEADER];
    tcp[0..2].copy_from_slice(&src.port().to_be_bytes());
    tcp[2..4].copy_from_slice(&dst.port().to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    tcp[12] = (TCP_HEADER as u8 / 4) << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&window.to_be_bytes());
    let mut bytes = Vec::with_capacity(40 + TCP_HEADER);
    let pseudo = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut ip = [0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((20 + TCP_HEADER) as u16).to_be_bytes());
            // Don't fragment, TTL 64.
            ip[6] = 0x40;
            ip[8] = 64;
            ip[9] = IPPROTO_TCP;
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let check = csum::checksum(&ip, 0);
            ip[10..12].copy_from_slice(&check.to_be_bytes());
            bytes.extend_from_slice(&ip);
            csum::pseudo_v4(&s.octets(), &d.octets(), IPPROTO_TCP, TCP_HEADER as u16)
        }
        (s, d) => {
            let (s, d) = (v6(s), v6(d));
            let mut ip = [0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&(TCP_HEADER as u16).to_be_bytes());
            ip[6] = IPPROTO_TCP;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&s);
            ip[24..40].copy_from_slice(&d);
            bytes.extend_from_slice(&ip);
            csum::pseudo_v6(&s, &d, IPPROTO_TCP, TCP_HEADER as u32)
        }
    };
    let check = csum::checksum(&tcp, pseudo);
    tcp[16..18].copy_from_slice(&check.to_be_bytes());
    bytes.extend_from_slice(&tcp);
    Segment { src, dst, bytes }
}

fn v6(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V6(v6) => v6.octets(),
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
    }
}

#[cfg(test)]
mod tests {
    use lb_common::{addr::addr_bytes, FAMILY_V4};

    use super::*;

    fn key(remote: SocketAddr, local: SocketAddr) -> FlowKey {
        crate::splice::endpoints_key(remote, local)
    }

    fn field32(segment: &Segment, ip_len: usize, at: usize) -> u32 {
        u32::from_be_bytes(segment.bytes[ip_len + at..ip_len + at + 4].try_into().unwrap())
    }

    /// The client's frames are shifted by `seq_add` onto the server's connection; the server
    /// last acknowledged `server_ack` there. A dead client's answer (RST at the probe's ACK
    /// number), shifted the same way, lands exactly on the server's last ACK: the program
    /// takes it as exact and the flow ends.
    #[test]
    fn a_dead_peers_answer_is_exact_for_the_other_peer() {
        let client = SocketAddr::from(([10, 0, 1, 2], 40000));
        let frontend = SocketAddr::from(([10, 0, 1, 1], 443));
        let from_client = SpliceEntry { seq_add: 0x9000_0000, last_ack: 5000, family: FAMILY_V4, ..SpliceEntry::default() };
        let server_ack = 0x1000_0010u32;
        let from_server = SpliceEntry { last_ack: server_ack, last_win: 100, wscale_in: 7, wscale_out: 2, ..SpliceEntry::default() };
        let probe = probe(&key(client, frontend), &from_client, &from_server);
        assert_eq!((probe.src, probe.dst), (frontend, client));
        assert_eq!(field32(&probe, 20, 4), 4999, "one byte behind what the client expects");
        let answer_seq = field32(&probe, 20, 8);
        assert_eq!(answer_seq.wrapping_add(from_client.seq_add), server_ack);
        assert_eq!(probe.bytes[20 + 13], TCP_ACK);
        assert_eq!(u16::from_be_bytes([probe.bytes[34], probe.bytes[35]]), (100 << 7) >> 2);
        let end = end(&key(client, frontend), &from_client, &from_server);
        assert_eq!((field32(&end, 20, 4), end.bytes[20 + 13]), (5000, TCP_RST | TCP_ACK));
    }

    /// The window update sits exactly where the client expects our next byte, acknowledges
    /// what the server's acknowledgment says of the client's stream (translated back), and
    /// offers the server's window in the client connection's scale.
    #[test]
    fn a_window_update_lands_at_the_peers_next_expected_byte() {
        let client = SocketAddr::from(([10, 0, 1, 2], 40000));
        let frontend = SocketAddr::from(([10, 0, 1, 1], 443));
        let from_client = SpliceEntry { seq_add: 0x9000_0000, last_ack: 5000, family: FAMILY_V4, ..SpliceEntry::default() };
        let from_server = SpliceEntry { last_ack: 0x9000_0400, last_win: 300, wscale_in: 9, wscale_out: 7, ..SpliceEntry::default() };
        let update = window_update(&key(client, frontend), &from_client, &from_server);
        assert_eq!((update.src, update.dst), (frontend, client));
        assert_eq!(field32(&update, 20, 4), 5000, "in sequence, not behind like a probe");
        assert_eq!(field32(&update, 20, 8), 0x400);
        assert_eq!(update.bytes[20 + 13], TCP_ACK);
        assert_eq!(u16::from_be_bytes([update.bytes[34], update.bytes[35]]), 1200, "300 << 9 >> 7");
    }

    /// In sequence where our socket stands, acknowledging all it received, window closed.
    #[test]
    fn a_zero_window_ack_is_in_sequence_and_closes_the_window() {
        let client = SocketAddr::from(([10, 0, 1, 2], 40000));
        let frontend = SocketAddr::from(([10, 0, 1, 1], 443));
        let ack = zero_window(&key(client, frontend), FAMILY_V4, 7000, 0xFFFF_FFF0);
        assert_eq!((ack.src, ack.dst), (frontend, client));
        assert_eq!((field32(&ack, 20, 4), field32(&ack, 20, 8)), (7000, 0xFFFF_FFF0));
        assert_eq!(ack.bytes[20 + 13], TCP_ACK);
        assert_eq!(u16::from_be_bytes([ack.bytes[34], ack.bytes[35]]), 0);
    }

    /// Both checksums verify as a receiver checks them: the sum over the covered bytes,
    /// checksum included, folds to all ones.
    #[test]
    fn checksums_verify_for_both_families() {
        for (remote, local) in [
            (SocketAddr::from(([10, 0, 1, 2], 40000)), SocketAddr::from(([10, 0, 1, 1], 443))),
            ("[fd00::2]:40000".parse().unwrap(), "[fd00::1]:443".parse().unwrap()),
        ] {
            let family = addr_bytes(remote.ip()).1;
            let entry = SpliceEntry { family, last_ack: 77, ..SpliceEntry::default() };
            let segment = probe(&key(remote, local), &entry, &SpliceEntry::default());
            let ip_len = if remote.is_ipv4() { 20 } else { 40 };
            assert_eq!(segment.bytes.len(), ip_len + TCP_HEADER);
            let tcp = &segment.bytes[ip_len..];
            let pseudo = match (local.ip(), remote.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    assert_eq!(csum::fold(csum::sum(&segment.bytes[..20], 0)), 0xffff, "IPv4 header checksum");
                    csum::pseudo_v4(&s.octets(), &d.octets(), IPPROTO_TCP, TCP_HEADER as u16)
                }
                (s, d) => csum::pseudo_v6(&v6(s), &v6(d), IPPROTO_TCP, TCP_HEADER as u32),
            };
            assert_eq!(csum::fold(csum::sum(tcp, pseudo)), 0xffff, "TCP checksum of {remote}");
            assert_eq!(u16::from_be_bytes([tcp[2], tcp[3]]), remote.port());
        }
    }

    /// Where our socket stands, with what is left of its last offer in its own scale; a
    /// larger offer than 16 bits hold (a shift our peer never agreed to) is capped.
    #[test]
    fn an_offered_window_ack_carries_the_sockets_own_window() {
        let client = SocketAddr::from(([10, 0, 1, 2], 40000));
        let frontend = SocketAddr::from(([10, 0, 1, 1], 443));
        let at = crate::splice::Sequences { snd_nxt: 7000, rcv_nxt: 9000, tsval: 0, peer_window: 0, offered_window: 3 << 16 };
        let ack = offered_window(&key(client, frontend), FAMILY_V4, &at, 7);
        assert_eq!((ack.src, ack.dst), (frontend, client));
        assert_eq!((field32(&ack, 20, 4), field32(&ack, 20, 8)), (7000, 9000));
        assert_eq!(ack.bytes[20 + 13], TCP_ACK);
        assert_eq!(u16::from_be_bytes([ack.bytes[34], ack.bytes[35]]), 3 << 9);
        let unscaled = offered_window(&key(client, frontend), FAMILY_V4, &at, 0);
        assert_eq!(u16::from_be_bytes([unscaled.bytes[34], unscaled.bytes[35]]), u16::MAX);
    }
}
