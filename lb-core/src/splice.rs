//! Joining two TCP connections at packet level: the two splice entries of a connection,
//! computed from both sockets' state at the quiescent point (FASTPATH.md has the arithmetic;
//! A is client↔LB, B is LB↔server). Sequence and timestamp offsets, window shifts and the
//! check that the two connections can be joined at all, as wrapping arithmetic on values
//! the daemon read from its sockets; the daemon's hand-off writes the result to the kernel.
pub mod course;
pub mod keepalive;

use std::net::SocketAddr;

use lb_common::{
    addr::{addr_bytes, bytes_addr},
    splice_option, splice_state, FlowKey, SpliceEntry,
};

/// Bytes of the TCP timestamp option as segments carry it (with its two NOPs).
pub const TIMESTAMP_OPTION_LEN: u32 = 12;

/// Why two connections can not be joined; the daemon then keeps relaying them itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Incompatible {
    /// ECN, TCP Fast Open or microsecond timestamps on either connection.
    #[error("{0} on a connection")]
    Unsupported(&'static str),
    /// Timestamps or SACK negotiated on one connection only.
    #[error("{0} negotiated on one connection only")]
    OptionsDiffer(&'static str),
    /// The client and the server speak different IP families.
    #[error("the connections are of different IP families")]
    Family,
    /// Timestamps are on, but the XDP program never saw the peer's TSval.
    #[error("no TSval seen from a peer")]
    NoTimestamp,
    /// A side finished sending (or reset).
    #[error("a connection is closing")]
    Closing,
    /// One side's peer may send segments larger than the other side's path takes (a
    /// smaller MTU there): translated, they would fail the FIB's MTU check for good.
    #[error("a peer's segments are larger than the other path takes")]
    MssMismatch,
}

/// The negotiated options of one connection (TCP_INFO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// In state ESTABLISHED: neither side has closed.
    pub established: bool,
    /// TCP timestamps on: every segment carries TSval/TSecr, which the join must translate.
    pub timestamps: bool,
    /// SACK on: SACK blocks carry sequence numbers, which the join must translate.
    pub sack: bool,
    /// Window scaling negotiated; when false both shifts are 0.
    pub wscale: bool,
    /// The shift the peer applies to the windows it sends.
    pub peer_wscale: u8,
    /// The shift we apply to ours.
    pub our_wscale: u8,
    /// ECN, TCP Fast Open (data in the SYN) or microsecond timestamps: any of them and the
    /// XDP program could not keep both ends consistent.
    pub unsupported: Option<&'static str>,
    /// Largest segment we send to the peer (without options).
    pub send_mss: u32,
    /// The MSS we announced to the peer: the largest segment it may send us (options
    /// included).
    pub advertised_mss: u32,
}

/// Sequence numbers of a socket in repair mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sequences {
    /// Next sequence number we send (write_seq: with an empty send queue, snd_nxt).
    pub snd_nxt: u32,
    /// Next sequence number we expect from the peer.
    pub rcv_nxt: u32,
    /// The TSval our side would send now (its clock including the per-connection offset).
    pub tsval: u32,
    /// The window the peer last advertised, in bytes (scaled).
    pub peer_window: u32,
    /// What is left of the window we last advertised, in bytes (its right edge minus
    /// `rcv_nxt`): the window our next ACK would carry, as far as the peer knows.
    pub offered_window: u32,
}

/// Timestamp ticks added on top of the exact offset. The retired socket may still have sent
/// one more segment (a delayed ACK) after its clock was read; Linux's PAWS check tolerates
/// one tick, this keeps the first translated TSval safely ahead of anything the peer saw.
const TS_MARGIN: u32 = 2;

/// One of the two connections, frozen.
#[derive(Debug, Clone, Copy)]
pub struct Leg {
    /// The peer's end.
    pub remote: SocketAddr,
    /// Our end.
    pub local: SocketAddr,
    /// What the connection negotiated.
    pub negotiated: Negotiated,
    /// Its sequence numbers, frozen.
    pub seq: Sequences,
    /// The last TSval the peer sent us, as the XDP program recorded it.
    pub peer_tsval: Option<u32>,
}

impl Leg {
    /// The key of the frames that arrive on this connection.
    pub fn key(&self) -> FlowKey {
        endpoints_key(self.remote, self.local)
    }
}

/// The key of frames from `remote` to `local`.
pub fn endpoints_key(remote: SocketAddr, local: SocketAddr) -> FlowKey {
    let (remote_addr, family) = addr_bytes(remote.ip());
    let (local_addr, _) = addr_bytes(local.ip());
    FlowKey::new(remote_addr, local_addr, remote.port().to_be(), local.port().to_be(), family)
}

/// Whether the two connections can be joined at all, judged from what they negotiated;
/// checked before the flow is frozen, and again on the frozen state.
pub fn compatible(a: &Negotiated, b: &Negotiated) -> Result<(), Incompatible> {
    if let Some(what) = a.unsupported.or(b.unsupported) {
        return Err(Incompatible::Unsupported(what));
    }
    if !a.established || !b.established {
        return Err(Incompatible::Closing);
    }
    if a.timestamps != b.timestamps {
        return Err(Incompatible::OptionsDiffer("timestamps"));
    }
    if a.sack != b.sack {
        return Err(Incompatible::OptionsDiffer("sack"));
    }
    // A peer's largest segment carries its timestamp option; the other side's send MSS
    // already leaves room for ours.
    let options = if a.timestamps { TIMESTAMP_OPTION_LEN } else { 0 };
    let fits = |from: &Negotiated, to: &Negotiated| from.advertised_mss.saturating_sub(options) <= to.send_mss;
    if !fits(a, b) || !fits(b, a) {
        return Err(Incompatible::MssMismatch);
    }
    Ok(())
}

/// A splice entry per direction: (key of client frames, its entry), (key of server frames, its entry).
pub fn entries(client: &Leg, server: &Leg) -> Result<[(FlowKey, SpliceEntry); 2], Incompatible> {
    let (a, b) = (client, server);
    compatible(&a.negotiated, &b.negotiated)?;
    let (client_key, server_key) = (a.key(), b.key());
    if client_key.family != server_key.family {
        return Err(Incompatible::Family);
    }
    // dC: a client byte at A-sequence x is server-bound byte x + dC; dS likewise.
    let d_c = b.seq.snd_nxt.wrapping_sub(a.seq.rcv_nxt);
    let d_s = a.seq.snd_nxt.wrapping_sub(b.seq.rcv_nxt);
    let timestamps = a.negotiated.timestamps;
    let (t_c, t_s) = if timestamps {
        let (Some(c_last), Some(s_last)) = (a.peer_tsval, b.peer_tsval) else {
            return Err(Incompatible::NoTimestamp);
        };
        (b.seq.tsval.wrapping_add(TS_MARGIN).wrapping_sub(c_last), a.seq.tsval.wrapping_add(TS_MARGIN).wrapping_sub(s_last))
    } else {
        (0, 0)
    };
    let mut options = 0;
    if timestamps {
        options |= splice_option::TIMESTAMPS;
    }
    if a.negotiated.sack {
        options |= splice_option::SACK;
    }
    let to_server = SpliceEntry {
        src_addr: server_key.local_addr,
        dst_addr: server_key.remote_addr,
        src_port: server_key.local_port,
        dst_port: server_key.remote_port,
        seq_add: d_c,
        ack_sub: d_s,
        tsval_add: t_c,
        tsecr_sub: t_s,
        state: splice_state::LIVE,
        options,
        wscale_in: a.negotiated.peer_wscale,
        wscale_out: b.negotiated.our_wscale,
        family: client_key.family,
        // Where the client's receive window stands (for RSTs sent to it): everything we
        // sent it, acknowledged or about to be, since the flow is quiescent.
        last_ack: a.seq.snd_nxt,
        last_win: raw_window(a.seq.peer_window, a.negotiated.peer_wscale),
        // The client's next sequence number: an RST there is exact for the server.
        data_end: a.seq.rcv_nxt,
        ..SpliceEntry::default()
    };
    let to_client = SpliceEntry {
        src_addr: client_key.local_addr,
        dst_addr: client_key.remote_addr,
        src_port: client_key.local_port,
        dst_port: client_key.remote_port,
        seq_add: d_s,
        ack_sub: d_c,
        tsval_add: t_s,
        tsecr_sub: t_c,
        state: splice_state::LIVE,
        options,
        wscale_in: b.negotiated.peer_wscale,
        wscale_out: a.negotiated.our_wscale,
        family: client_key.family,
        last_ack: b.seq.snd_nxt,
        last_win: raw_window(b.seq.peer_window, b.negotiated.peer_wscale),
        data_end: b.seq.rcv_nxt,
        ..SpliceEntry::default()
    };
    Ok([(client_key, to_server), (server_key, to_client)])
}

/// A window in bytes as its sender writes it in the header: shifted right by its scale.
fn raw_window(bytes: u32, shift: u8) -> u16 {
    (bytes >> shift.min(14)).min(u32::from(u16::MAX)) as u16
}

/// `remote -> local` of a key, for logs.
pub fn describe(key: &FlowKey) -> String {
    let end = |addr: &[u8; 16], port: u16| SocketAddr::new(bytes_addr(addr, key.family), u16::from_be(port));
    format!("{} -> {}", end(&key.remote_addr, key.remote_port), end(&key.local_addr, key.local_port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiated(peer_wscale: u8, our_wscale: u8) -> Negotiated {
        Negotiated {
            established: true,
            timestamps: true,
            sack: true,
            wscale: true,
            peer_wscale,
            our_wscale,
            unsupported: None,
            send_mss: 1448,
            advertised_mss: 1460,
        }
    }

    fn legs() -> (Leg, Leg) {
        let client = Leg {
            remote: "10.77.1.2:40000".parse().unwrap(),
            local: "10.77.1.1:443".parse().unwrap(),
            negotiated: negotiated(7, 9),
            seq: Sequences { snd_nxt: 5_000, rcv_nxt: 0xFFFF_FF00, tsval: 1_000_000, peer_window: 64 << 7, offered_window: 64 << 10 },
            peer_tsval: Some(77),
        };
        let server = Leg {
            remote: "10.77.2.2:8443".parse().unwrap(),
            local: "10.77.2.1:50000".parse().unwrap(),
            negotiated: negotiated(8, 9),
            seq: Sequences { snd_nxt: 0x100, rcv_nxt: 3_000, tsval: 2_000_000, peer_window: 1 << 30, offered_window: 1 << 20 },
            peer_tsval: Some(900),
        };
        (client, server)
    }

    #[test]
    fn offsets_map_each_sides_next_byte_onto_the_others() {
        let (a, b) = legs();
        let [(ck, up), (sk, down)] = entries(&a, &b).unwrap();
        assert_eq!(ck, a.key());
        assert_eq!(sk, b.key());
        // The client's next byte (A.rcv_nxt) is the server's next byte (B.snd_nxt), across 2^32.
        assert_eq!(a.seq.rcv_nxt.wrapping_add(up.seq_add), b.seq.snd_nxt);
        assert_eq!(b.seq.rcv_nxt.wrapping_add(down.seq_add), a.seq.snd_nxt);
        // An ACK of everything we sent the client becomes an ACK of everything the server sent.
        assert_eq!(a.seq.snd_nxt.wrapping_sub(up.ack_sub), b.seq.rcv_nxt);
        assert_eq!(b.seq.snd_nxt.wrapping_sub(down.ack_sub), a.seq.rcv_nxt);
    }

    #[test]
    fn rewritten_addresses_are_the_other_connections() {
        let (a, b) = legs();
        let [(_, up), (_, down)] = entries(&a, &b).unwrap();
        assert_eq!((up.src_addr, up.dst_addr), (b.key().local_addr, b.key().remote_addr));
        assert_eq!((up.src_port, up.dst_port), (50000u16.to_be(), 8443u16.to_be()));
        assert_eq!((down.src_port, down.dst_port), (443u16.to_be(), 40000u16.to_be()));
        assert_eq!(up.reverse_key(), b.key());
        assert_eq!(down.reverse_key(), a.key());
    }

    #[test]
    fn timestamps_continue_each_ends_view_and_echo_back_exactly() {
        let (a, b) = legs();
        let [(_, up), (_, down)] = entries(&a, &b).unwrap();
        // The client's last TSval, translated, is just ahead of what the server last saw from us.
        assert_eq!(77u32.wrapping_add(up.tsval_add), b.seq.tsval + TS_MARGIN);
        assert_eq!(900u32.wrapping_add(down.tsval_add), a.seq.tsval + TS_MARGIN);
        // The server echoing a translated client TSval gives the client its own clock back.
        let c = 12_345u32;
        assert_eq!(c.wrapping_add(up.tsval_add).wrapping_sub(down.tsecr_sub), c);
        let s = 54_321u32;
        assert_eq!(s.wrapping_add(down.tsval_add).wrapping_sub(up.tsecr_sub), s);
    }

    #[test]
    fn window_shifts_go_from_sender_to_our_egress_shift() {
        let (a, b) = legs();
        let [(_, up), (_, down)] = entries(&a, &b).unwrap();
        assert_eq!((up.wscale_in, up.wscale_out), (7, 9));
        assert_eq!((down.wscale_in, down.wscale_out), (8, 9));
    }

    #[test]
    fn each_receivers_window_is_seeded_for_the_reset_check() {
        let (a, b) = legs();
        let [(_, up), (_, down)] = entries(&a, &b).unwrap();
        // The entry of the client's frames holds the client's receive window: an RST from
        // the server, translated, lands at A.snd_nxt when it is exact.
        assert_eq!((up.last_ack, up.last_win), (a.seq.snd_nxt, 64));
        assert_eq!(b.seq.rcv_nxt.wrapping_add(down.seq_add), up.last_ack);
        // A window too large for 16 bits at the peer's shift is capped, not wrapped.
        assert_eq!((down.last_ack, down.last_win), (b.seq.snd_nxt, u16::MAX));
    }

    #[test]
    fn a_peer_sending_larger_segments_than_the_other_path_takes_falls_back() {
        let (a, mut b) = legs();
        // The server's path takes 1,388-byte payloads (a 1,440-byte MTU), the client may send 1,448.
        b.negotiated.send_mss = 1388;
        assert_eq!(entries(&a, &b).unwrap_err(), Incompatible::MssMismatch);
        let (mut a, b) = legs();
        a.negotiated.send_mss = 1388;
        assert_eq!(entries(&a, &b).unwrap_err(), Incompatible::MssMismatch);
        // Equal paths, or a smaller peer MSS than the path takes, are fine.
        let (a, mut b) = legs();
        b.negotiated.advertised_mss = 1400;
        assert!(entries(&a, &b).is_ok());
    }

    #[test]
    fn mismatched_options_fall_back() {
        let (mut a, b) = legs();
        a.negotiated.sack = false;
        assert_eq!(entries(&a, &b).unwrap_err(), Incompatible::OptionsDiffer("sack"));
        let (mut a, b) = legs();
        a.negotiated.unsupported = Some("ecn");
        assert_eq!(entries(&a, &b).unwrap_err(), Incompatible::Unsupported("ecn"));
        let (mut a, b) = legs();
        a.peer_tsval = None;
        assert_eq!(entries(&a, &b).unwrap_err(), Incompatible::NoTimestamp);
        let (a, mut b) = legs();
        b.remote = "[fd77:2::2]:8443".parse().unwrap();
        b.local = "[fd77:2::1]:50000".parse().unwrap();
        assert_eq!(entries(&a, &b).unwrap_err(), Incompatible::Family);
    }

    #[test]
    fn without_timestamps_no_timestamp_is_needed() {
        let (mut a, mut b) = legs();
        a.negotiated.timestamps = false;
        b.negotiated.timestamps = false;
        // Without the option, segments carry 12 more bytes of payload.
        a.negotiated.send_mss = 1460;
        b.negotiated.send_mss = 1460;
        a.peer_tsval = None;
        let [(_, up), _] = entries(&a, &b).unwrap();
        assert_eq!(up.options & splice_option::TIMESTAMPS, 0);
    }
}
