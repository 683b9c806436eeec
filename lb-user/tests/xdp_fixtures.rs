//! Packet fixtures for the XDP splice fast path, run through BPF_PROG_TEST_RUN as Katran's
//! tests do: each test loads the daemon's own object in a fresh network namespace (real
//! routes and permanent neighbours, so bpf_fib_lookup answers), feeds it frames, and compares
//! the output byte for byte with a frame built independently, whose checksums are computed
//! from scratch (never incrementally).
//!
//! Needs root (namespaces, BPF). Run: `cargo test -p lb-user --test xdp_fixtures`.

#[path = "xdp_fixtures/harness.rs"]
mod harness;
#[path = "xdp_fixtures/netns.rs"]
mod netns;
#[path = "xdp_fixtures/packet.rs"]
mod packet;

use harness::{Dataplane, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, XDP_DROP, XDP_PASS, XDP_REDIRECT};
use lb_common::{splice_option, splice_seen, splice_state, Counter, FlowKey, FlowValue, SpliceEntry, FAMILY_V4, FAMILY_V6};
use netns::*;
use packet::{assert_frame_eq, options, sack, timestamp, Addrs, Segment, ACK, FIN, PSH, RST, SYN};

const NOP: u8 = 1;
const CLIENT_PORT: u16 = 40_000;
const FRONTEND_PORT: u16 = 443;
const LB_PORT: u16 = 50_000;
const SERVER_PORT: u16 = 8_443;

struct Fixture {
    dp: Dataplane,
    c0: u32,
    s0: u32,
}

/// Runs a test inside its own namespace with the program loaded and both interfaces in
/// the egress devmap; the namespace goes away whatever the outcome.
fn with_fixture(test: impl FnOnce(&mut Fixture) + Send + 'static) {
    let ns = Netns::create();
    ns.run_inside(move || {
        let mut dp = Dataplane::load();
        let (c0, s0) = (ifindex("c0"), ifindex("s0"));
        dp.allow_egress(c0);
        dp.allow_egress(s0);
        test(&mut Fixture { dp, c0, s0 });
    });
}

fn v4(addr: [u8; 4]) -> [u8; 16] {
    let mut out = [0; 16];
    out[..4].copy_from_slice(&addr);
    out
}

fn key(remote: [u8; 16], remote_port: u16, local: [u8; 16], local_port: u16, family: u8) -> FlowKey {
    FlowKey::new(remote, local, remote_port.to_be(), local_port.to_be(), family)
}

fn client_key_v4() -> FlowKey {
    key(v4(CLIENT_V4), CLIENT_PORT, v4(FRONTEND_V4), FRONTEND_PORT, FAMILY_V4)
}

fn client_key_v6() -> FlowKey {
    key(CLIENT_V6, CLIENT_PORT, FRONTEND_V6, FRONTEND_PORT, FAMILY_V6)
}

/// Client → server rules with zero offsets; tests set the numbers they exercise.
fn toward_server_v4() -> SpliceEntry {
    SpliceEntry {
        src_addr: v4(LB_V4),
        dst_addr: v4(SERVER_V4),
        src_port: LB_PORT.to_be(),
        dst_port: SERVER_PORT.to_be(),
        state: splice_state::LIVE,
        options: splice_option::TIMESTAMPS | splice_option::SACK,
        wscale_in: 7,
        wscale_out: 7,
        family: FAMILY_V4,
        ..Default::default()
    }
}

/// A data segment from the client to the frontend, as it arrives on c0.
fn from_client_v4() -> Segment {
    Segment {
        eth_dst: C0_MAC,
        eth_src: CLIENT_MAC,
        vlan: None,
        addrs: Addrs::V4(CLIENT_V4, FRONTEND_V4),
        sport: CLIENT_PORT,
        dport: FRONTEND_PORT,
        seq: 5_000,
        ack: 9_000,
        flags: ACK | PSH,
        window: 500,
        options: Vec::new(),
        payload: b"hello, server".to_vec(),
    }
}

/// The addressing a client segment must leave with toward the server (s0).
fn addressed_to_server_v4(input: &Segment) -> Segment {
    Segment { eth_dst: SERVER_MAC, eth_src: S0_MAC, addrs: Addrs::V4(LB_V4, SERVER_V4), sport: LB_PORT, dport: SERVER_PORT, ..input.clone() }
}

#[test]
fn verifier_accepts_the_program() {
    with_fixture(|fx| {
        let insns = fx.dp.verified_instructions();
        let tc_insns = fx.dp.tc_verified_instructions();
        eprintln!("verifier processed {insns:?} instructions (XDP), {tc_insns:?} (tc)");
        assert!(insns.is_some_and(|n| n > 0));
        assert!(tc_insns.is_some_and(|n| n > 0));
    });
}

#[test]
fn no_entry_passes_the_frame_unchanged() {
    with_fixture(|fx| {
        let input = from_client_v4().to_bytes();
        let (action, out) = fx.dp.run(fx.c0, &input);
        assert_eq!(action, XDP_PASS);
        assert_frame_eq(&out, &input);
        // XDP leaves the frame to tc, which judges and counts it.
        assert_eq!(fx.dp.counter(Counter::Passed), 0);
        let (action, out) = fx.dp.run_tc(fx.c0, &input);
        assert_eq!(action, TC_ACT_OK);
        assert_frame_eq(&out, &input);
        assert_eq!(fx.dp.counter(Counter::Passed), 1);
        assert_eq!(fx.dp.counter(Counter::SplicedPackets), 0);
    });
}

#[test]
fn seq_and_ack_wrap_around_2_pow_32() {
    with_fixture(|fx| {
        let rules = SpliceEntry { seq_add: 0x200, ack_sub: 0x300, ..toward_server_v4() };
        fx.dp.splice(client_key_v4(), rules);
        let input = Segment { seq: 0xFFFF_FF80, ack: 0x100, ..from_client_v4() };
        let expected = Segment { seq: 0x180, ack: 0xFFFF_FE00, ..addressed_to_server_v4(&input) };
        let frame = input.to_bytes();
        let (action, out) = fx.dp.run(fx.c0, &frame);
        assert_eq!(action, XDP_REDIRECT);
        assert_frame_eq(&out, &expected.to_bytes());
        assert_eq!(fx.dp.counter(Counter::SplicedPackets), 1);
        assert_eq!(fx.dp.counter(Counter::SplicedBytes), frame.len() as u64);
        let entry = fx.dp.splice_entry(&client_key_v4());
        assert_eq!((entry.packets, entry.bytes), (1, frame.len() as u64));
        assert!(entry.last_ns > 0);
        assert_eq!(entry.seen, 0);
    });
}

#[test]
fn aligned_timestamps_and_one_sack_block_are_translated() {
    with_fixture(|fx| {
        let rules = SpliceEntry { seq_add: 7, ack_sub: 0x1000, tsval_add: 0x20, tsecr_sub: 0x30, ..toward_server_v4() };
        fx.dp.splice(client_key_v4(), rules);
        let input = Segment {
            ack: 0x5000,
            options: options(&[&[NOP, NOP], &timestamp(0xFFFF_FFF0, 0x10), &[NOP, NOP], &sack(&[(0x6000, 0x0800)])]),
            ..from_client_v4()
        };
        let expected = Segment {
            seq: input.seq + 7,
            ack: 0x4000,
            options: options(&[&[NOP, NOP], &timestamp(0x10, 0xFFFF_FFE0), &[NOP, NOP], &sack(&[(0x5000, 0xFFFF_F800)])]),
            ..addressed_to_server_v4(&input)
        };
        let (action, out) = fx.dp.run(fx.c0, &input.to_bytes());
        assert_eq!(action, XDP_REDIRECT);
        assert_frame_eq(&out, &expected.to_bytes());
    });
}

#[test]
fn timestamps_at_an_odd_offset_are_translated() {
    with_fixture(|fx| {
        // Offsets whose checksum delta is not byte-symmetric, so that a delta applied at
        // the wrong alignment shows.
        let rules = SpliceEntry { tsval_add: 0x0102_0375, tsecr_sub: 0x0A0B_0C0D, ..toward_server_v4() };
        fx.dp.splice(client_key_v4(), rules);
        // NOP then TS: the timestamp fields start at odd offsets from the TCP header.
        let input = Segment { options: options(&[&[NOP], &timestamp(0xAABB_CCDD, 0x1122_3344)]), ..from_client_v4() };
        let expected = Segment {
            options: options(&[&[NOP], &timestamp(0xAABB_CCDDu32.wrapping_add(0x0102_0375), 0x1122_3344 - 0x0A0B_0C0D)]),
            ..addressed_to_server_v4(&input)
        };
        let (action, out) = fx.dp.run(fx.c0, &input.to_bytes());
        assert_eq!(action, XDP_REDIRECT);
        assert_frame_eq(&out, &expected.to_bytes());
    });
}

#[test]
fn three_sack_blocks_and_timestamps_at_odd_offsets_are_translated() {
    with_fixture(|fx| {
        let rules = SpliceEntry { ack_sub: 0x100, tsval_add: 5, tsecr_sub: 6, ..toward_server_v4() };
        fx.dp.splice(client_key_v4(), rules);
        let blocks = [(0x1000, 0x2000), (0x50, 0x3000), (0xFFFF_0000, 0xFFFF_0400)];
        let input = Segment { ack: 0x800, options: options(&[&[NOP], &sack(&blocks), &timestamp(100, 200)]), ..from_client_v4() };
        let translated: Vec<(u32, u32)> = blocks.iter().map(|&(l, r): &(u32, u32)| (l.wrapping_sub(0x100), r.wrapping_sub(0x100))).collect();
        let expected = Segment { ack: 0x700, options: options(&[&[NOP], &sack(&translated), &timestamp(105, 194)]), ..addressed_to_server_v4(&input) };
        let (action, out) = fx.dp.run(fx.c0, &input.to_bytes());
        assert_eq!(action, XDP_REDIRECT);
        assert_frame_eq(&out, &expected.to_bytes());
    });
}

#[test]
fn options_not_negotiated_on_both_sides_are_left_alone() {
    with_fixture(|fx| {
        let rules = SpliceEntry { ack_sub: 0x100, tsval_add: 5, tsecr_sub: 6, options: 0, ..toward_server_v4() };
        fx.dp.splice(client_key_v4(), rules);
        let opts = options(&[&[NOP, NOP], &timestamp(100, 200), &[NOP, NOP], &sack(&[(0x1000, 0x2000)])]);
        let input = Segment { ack: 0x800, options: opts.clone(), ..from_client_v4() };
        let expected = Segment { ack: 0x700, options: opts, ..addressed_to_server_v4(&input) };
        let (action, out) = fx.dp.run(fx.c0, &input.to_bytes());
        assert_eq!(action, XDP_REDIRECT);
        assert_frame_eq(&out, &expected.to_bytes());
    });
}

#[test]
fn window_is_rescaled_between_shifts() {
    with_fixture(|fx| {
        // (window, shift of the sender, shift of the LB on the other side, expected)
        let cases = [
            (1000u16, 7u8, 8u8, 500u16), // up: fewer, larger units
            (1000, 9, 7, 4000),          // down
            (40_000, 9, 7, 65_535),      // capped
            (3, 2, 10, 1),               // rounds to 0 bytes-worth: stays open at 1
            (0, 0, 14, 0),               // a closed window stays closed
            (1234, 7, 7, 1234),          // equal shifts: untouched
        ];
        for (window, wscale_in, wscale_out, want) in cases {
            fx.dp.splice(client_key_v4(), SpliceEntry { wscale_in, wscale_out, ..toward_server_v4() });
            let input = Segment { window, ..from_client_v4() };
            let expected = Segment { window: want, ..addressed_to_server_v4(&input) };
            let (action, out) = fx.dp.run(fx.c0, &input.to_bytes());
            assert_eq!(action, XDP_REDIRECT, "window {window} {wscale_in}->{wscale_out}");
            assert_frame_eq(&out, &expected.to_bytes());
        }
    });
}

#[test]
fn server_to_client_v4_is_translated_and_redirected() {
    with_fixture(|fx| {
        let rules = SpliceEntry {
            src_addr: v4(FRONTEND_V4),
            dst_addr: v4(CLIENT_V4),
            src_port: FRONTEND_PORT.to_be(),
            dst_port: CLIENT_PORT.to_be(),
            seq_add: 0x8000_0000,
            ack_sub: 1,
            wscale_in: 9,
            wscale_out: 7,
            ..toward_server_v4()
        };
        fx.dp.splice(key(v4(SERVER_V4), SERVER_PORT, v4(LB_V4), LB_PORT, FAMILY_V4), rules);
        let input = Segment {
            eth_dst: S0_MAC,
            eth_src: SERVER_MAC,
            addrs: Addrs::V4(SERVER_V4, LB_V4),
            sport: SERVER_PORT,
            dport: LB_PORT,
            seq: 0x9000_0000,
            ack: 0,
            window: 100,
            payload: b"hello, client".to_vec(),
            ..from_client_v4()
        };
        let expected = Segment {
            eth_dst: CLIENT_MAC,
            eth_src: C0_MAC,
            addrs: Addrs::V4(FRONTEND_V4, CLIENT_V4),
            sport: FRONTEND_PORT,
            dport: CLIENT_PORT,
            seq: 0x1000_0000,
            ack: 0xFFFF_FFFF,
            window: 400,
            ..input.clone()
        };
        let (action, out) = fx.dp.run(fx.s0, &input.to_bytes());
        assert_eq!(action, XDP_REDIRECT);
        assert_frame_eq(&out, &expected.to_bytes());
    });
}

#[test]
fn ipv6_segment_is_translated_and_redirected() {
    with_fixture(|fx| {
        let rules = SpliceEntry {
            src_addr: LB_V6,
            dst_addr: SERVER_V6,
            family: FAMILY_V6,
            seq_add: 0xFFFF_FFFF,
            ack_sub: 0x10,
            tsval_add: 1,
            tsecr_sub: 2,
            ..toward_server_v4()
        };
        fx.dp.splice(client_key_v6(), rules);
        let input = Segment {
            eth_dst: C0_MAC,
            eth_src: CLIENT_MAC,
            addrs: Addrs::V6(CLIENT_V6, FRONTEND_V6),
            options: options(&[&[NOP, NOP], &timestamp(1000, 2000), &[NOP, NOP], &sack(&[(0x30, 0x40), (0x50, 0x60)])]),
            ..from_client_v4()
        };
        let expected = Segment {
            eth_dst: SERVER_MAC,
            eth_src: S0_MAC,
            addrs: Addrs::V6(LB_V6, SERVER_V6),
            sport: LB_PORT,
            dport: SERVER_PORT,
            seq: input.seq - 1,
            ack: input.ack - 0x10,
            options: options(&[&[NOP, NOP], &timestamp(1001, 1998), &[NOP, NOP], &sack(&[(0x20, 0x30), (0x40, 0x50)])]),
            ..input.clone()
        };
        let (action, out) = fx.dp.run(fx.c0, &input.to_bytes());
        assert_eq!(action, XDP_REDIRECT);
        assert_frame_eq(&out, &expected.to_bytes());
    });
}

/// The entry of the server's frames, as far as the reset check reads it: the server has
/// acknowledged up to `next` and offers `window << 7` bytes.
fn server_window(next: u32, window: u16) -> SpliceEntry {
    SpliceEntry { last_ack: next, last_win: window, wscale_in: 7, ..toward_server_v4() }
}

fn server_key_v4() -> FlowKey {
    key(v4(SERVER_V4), SERVER_PORT, v4(LB_V4), LB_PORT, FAMILY_V4)
}

#[test]
fn fin_and_rst_are_forwarded_and_marked_seen() {
    with_fixture(|fx| {
        fx.dp.splice(client_key_v4(), SpliceEntry { seq_add: 10, ack_sub: 20, ..toward_server_v4() });
        // The server expects exactly the client's next byte: the RST below is exact.
        fx.dp.splice(server_key_v4(), server_window(from_client_v4().seq + 10, 100));
        let fin = Segment { flags: FIN | ACK, payload: Vec::new(), ..from_client_v4() };
        let expected = Segment { seq: fin.seq + 10, ack: fin.ack - 20, ..addressed_to_server_v4(&fin) };
        let (action, out) = fx.dp.run(fx.c0, &fin.to_bytes());
        assert_eq!(action, XDP_REDIRECT);
        assert_frame_eq(&out, &expected.to_bytes());
        assert_eq!(fx.dp.splice_entry(&client_key_v4()).seen, splice_seen::FIN);

        // A RST without ACK: its acknowledgment field is not a number to translate.
        let rst = Segment { flags: RST, ack: 0, payload: Vec::new(), ..from_client_v4() };
        let expected = Segment { seq: rst.seq + 10, ..addressed_to_server_v4(&rst) };
        let (action, out) = fx.dp.run(fx.c0, &rst.to_bytes());
        assert_eq!(action, XDP_REDIRECT);
        assert_frame_eq(&out, &expected.to_bytes());
        assert_eq!(fx.dp.splice_entry(&client_key_v4()).seen, splice_seen::FIN | splice_seen::RST);
        assert_eq!(fx.dp.splice_entry(&client_key_v4()).packets, 2);
    });
}

#[test]
fn rst_inside_the_window_is_forwarded_without_ending_the_flow() {
    with_fixture(|fx| {
        fx.dp.splice(client_key_v4(), SpliceEntry { seq_add: 10, ..toward_server_v4() });
        let next = from_client_v4().seq + 10;
        fx.dp.splice(server_key_v4(), server_window(next - 1_000, 100));
        // 1,000 bytes past what the server acknowledged, inside its 12,800-byte window: the
        // server answers with a challenge ACK (RFC 5961), so the flow is not over.
        let rst = Segment { flags: RST, ack: 0, payload: Vec::new(), ..from_client_v4() };
        let (action, out) = fx.dp.run_tc(fx.c0, &rst.to_bytes());
        assert_eq!(action, TC_ACT_REDIRECT);
        let expected = Segment { seq: next, ..addressed_to_server_v4(&rst) };
        assert_frame_eq(&out, &expected.to_bytes());
        assert_eq!(fx.dp.splice_entry(&client_key_v4()).seen, 0);
        assert_eq!(fx.dp.counter(Counter::RstOutOfWindow), 0);
    });
}

#[test]
fn blind_rst_outside_the_window_is_dropped_and_counted() {
    with_fixture(|fx| {
        fx.dp.splice(client_key_v4(), SpliceEntry { seq_add: 10, ..toward_server_v4() });
        let next = from_client_v4().seq + 10;
        fx.dp.splice(server_key_v4(), server_window(next, 100));
        for (seq, flags) in [(from_client_v4().seq + 12_800, RST), (from_client_v4().seq - 1, RST | ACK), (0x8000_0000, RST)] {
            let rst = Segment { seq, flags, payload: Vec::new(), ..from_client_v4() };
            let (action, _) = fx.dp.run(fx.c0, &rst.to_bytes());
            assert_eq!(action, XDP_DROP, "XDP, seq {seq}");
            let (action, _) = fx.dp.run_tc(fx.c0, &rst.to_bytes());
            assert_eq!(action, TC_ACT_SHOT, "tc, seq {seq}");
        }
        assert_eq!(fx.dp.counter(Counter::RstOutOfWindow), 6);
        assert_eq!(fx.dp.splice_entry(&client_key_v4()).seen, 0);
        assert_eq!(fx.dp.splice_entry(&client_key_v4()).packets, 0);
    });
}

#[test]
fn rst_of_a_flow_without_its_other_direction_is_dropped() {
    with_fixture(|fx| {
        fx.dp.splice(client_key_v4(), toward_server_v4());
        let rst = Segment { flags: RST, payload: Vec::new(), ..from_client_v4() };
        let (action, _) = fx.dp.run_tc(fx.c0, &rst.to_bytes());
        assert_eq!(action, TC_ACT_SHOT);
        assert_eq!(fx.dp.counter(Counter::RstOutOfWindow), 1);
    });
}

#[test]
fn live_acks_record_the_receivers_window() {
    with_fixture(|fx| {
        fx.dp.splice(client_key_v4(), toward_server_v4());
        let data = from_client_v4();
        let (action, _) = fx.dp.run_tc(fx.c0, &data.to_bytes());
        assert_eq!(action, TC_ACT_REDIRECT);
        let entry = fx.dp.splice_entry(&client_key_v4());
        assert_eq!((entry.last_ack, entry.last_win), (data.ack, data.window));
    });
}

#[test]
fn truncated_tcp_header_is_passed_and_counted_unparsed() {
    with_fixture(|fx| {
        let frame = from_client_v4().to_bytes();
        // Ethernet and IPv4 headers whole, then 10 of the TCP header's 20 bytes.
        let truncated = &frame[..14 + 20 + 10];
        let (action, out) = fx.dp.run_tc(fx.c0, truncated);
        assert_eq!(action, TC_ACT_OK);
        assert_eq!(out, truncated);
        assert_eq!(fx.dp.counter(Counter::Unparsed), 1);
        // Not TCP at all is not "unparsed".
        let mut udp = frame.clone();
        udp[14 + 9] = 17;
        fx.dp.run_tc(fx.c0, &udp);
        assert_eq!(fx.dp.counter(Counter::Unparsed), 1);
    });
}

#[test]
fn syn_of_a_live_flow_is_dropped() {
    with_fixture(|fx| {
        fx.dp.splice(client_key_v4(), toward_server_v4());
        let syn = Segment { flags: SYN, payload: Vec::new(), ..from_client_v4() };
        let (action, _) = fx.dp.run(fx.c0, &syn.to_bytes());
        assert_eq!(action, XDP_DROP);
        let (action, _) = fx.dp.run_tc(fx.c0, &syn.to_bytes());
        assert_eq!(action, TC_ACT_SHOT);
        // Counted on the entry, for the daemon's probe, and not as an error.
        assert_eq!(fx.dp.counter(Counter::SynOnLive), 2);
        assert_eq!(fx.dp.counter(Counter::SpliceErrors), 0);
        let entry = fx.dp.splice_entry(&client_key_v4());
        assert_eq!((entry.syns, entry.packets), (2, 0));
    });
}

/// The server has acknowledged nothing of what follows and offers no window: only an RST
/// at the client's next sequence number may end the flow. That number is past the FIN
/// (which takes one), and a retransmission of older data does not move it back.
#[test]
fn an_rst_at_the_senders_next_sequence_is_exact_past_a_fin_and_retransmissions() {
    with_fixture(|fx| {
        fx.dp.splice(client_key_v4(), toward_server_v4());
        let start = from_client_v4().seq;
        fx.dp.splice(server_key_v4(), server_window(start, 0));
        let data = from_client_v4();
        let end = data.seq + data.payload.len() as u32;
        let fin = Segment { seq: end, flags: FIN | ACK, payload: Vec::new(), ..from_client_v4() };
        let again = from_client_v4();
        for frame in [&data, &fin, &again] {
            assert_eq!(fx.dp.run_tc(fx.c0, &frame.to_bytes()).0, TC_ACT_REDIRECT);
        }
        assert_eq!(fx.dp.splice_entry(&client_key_v4()).data_end, end + 1);
        let early = Segment { seq: end, flags: RST, ack: 0, payload: Vec::new(), ..from_client_v4() };
        assert_eq!(fx.dp.run_tc(fx.c0, &early.to_bytes()).0, TC_ACT_SHOT, "behind the FIN, with a closed window");
        let rst = Segment { seq: end + 1, ..early };
        assert_eq!(fx.dp.run_tc(fx.c0, &rst.to_bytes()).0, TC_ACT_REDIRECT);
        assert_eq!(fx.dp.splice_entry(&client_key_v4()).seen, splice_seen::FIN | splice_seen::RST);
    });
}

/// The idle clock runs on what moves the flow: a duplicate ACK (what a keepalive probe
/// draws) leaves it, a new acknowledgment moves it, and an older one does not move the
/// recorded position back.
#[test]
fn duplicate_and_older_acks_leave_the_flows_position_and_idle_clock() {
    with_fixture(|fx| {
        fx.dp.splice(client_key_v4(), SpliceEntry { last_ack: 9_000, last_win: 500, last_ns: 1, ..toward_server_v4() });
        let dup = Segment { flags: ACK, payload: Vec::new(), ..from_client_v4() };
        assert_eq!(fx.dp.run_tc(fx.c0, &dup.to_bytes()).0, TC_ACT_REDIRECT);
        let entry = fx.dp.splice_entry(&client_key_v4());
        assert_eq!((entry.last_ns, entry.packets), (1, 1));
        let newer = Segment { ack: 9_100, ..dup.clone() };
        assert_eq!(fx.dp.run_tc(fx.c0, &newer.to_bytes()).0, TC_ACT_REDIRECT);
        let entry = fx.dp.splice_entry(&client_key_v4());
        assert!(entry.last_ns > 1);
        assert_eq!(entry.last_ack, 9_100);
        let older = Segment { ack: 9_050, ..dup };
        assert_eq!(fx.dp.run_tc(fx.c0, &older.to_bytes()).0, TC_ACT_REDIRECT);
        assert_eq!(fx.dp.splice_entry(&client_key_v4()).last_ack, 9_100);
    });
}

#[test]
fn frozen_flow_drops_what_advances_the_sequence_and_passes_acks_and_resets() {
    with_fixture(|fx| {
        fx.dp.splice(client_key_v4(), SpliceEntry { state: splice_state::FROZEN, seq_add: 99, ..toward_server_v4() });
        let data = from_client_v4();
        let pure_ack = Segment { payload: Vec::new(), ..from_client_v4() };
        let fin = Segment { flags: FIN | ACK, ..pure_ack.clone() };
        let syn = Segment { flags: SYN, ..pure_ack.clone() };
        let rst = Segment { flags: RST | ACK, ..data.clone() };
        for dropped in [&data, &fin, &syn] {
            // XDP leaves frozen flows to tc, which drops what advances the sequence.
            let (action, _) = fx.dp.run(fx.c0, &dropped.to_bytes());
            assert_eq!(action, XDP_PASS, "XDP: flags {:#x}", dropped.flags);
            let (action, _) = fx.dp.run_tc(fx.c0, &dropped.to_bytes());
            assert_eq!(action, TC_ACT_SHOT, "flags {:#x}, {} payload bytes", dropped.flags, dropped.payload.len());
        }
        for passed in [&pure_ack, &rst] {
            let frame = passed.to_bytes();
            let (action, out) = fx.dp.run_tc(fx.c0, &frame);
            assert_eq!(action, TC_ACT_OK, "flags {:#x}", passed.flags);
            assert_frame_eq(&out, &frame);
        }
        assert_eq!(fx.dp.counter(Counter::FrozenDropped), 3);
        assert_eq!(fx.dp.counter(Counter::SplicedPackets), 0);
    });
}

/// Our socket's ACK to the client of a held (then frozen) flow leaves with a zero window
/// and a checksum that verifies; the entry records how far and when the client was told to
/// stop. Frames of other flows, and of live ones, leave untouched.
#[test]
fn held_and_frozen_flows_advertise_a_zero_window_to_the_peer() {
    with_fixture(|fx| {
        // Our ACK to the client: the reverse of the client's frames (key client_key_v4).
        let ours = Segment {
            eth_dst: CLIENT_MAC,
            eth_src: C0_MAC,
            addrs: Addrs::V4(FRONTEND_V4, CLIENT_V4),
            sport: FRONTEND_PORT,
            dport: CLIENT_PORT,
            seq: 9_000,
            ack: 5_013,
            window: 1_234,
            payload: Vec::new(),
            ..from_client_v4()
        };
        let frame = ours.to_bytes();
        let (action, out) = fx.dp.run_tc_egress(fx.c0, &frame);
        assert_eq!(action, TC_ACT_OK);
        assert_frame_eq(&out, &frame);
        for state in [splice_state::HELD, splice_state::FROZEN] {
            fx.dp.splice(client_key_v4(), SpliceEntry { state, ..SpliceEntry::default() });
            let (action, out) = fx.dp.run_tc_egress(fx.c0, &frame);
            assert_eq!(action, TC_ACT_OK);
            assert_frame_eq(&out, &Segment { window: 0, ..ours.clone() }.to_bytes());
            let entry = fx.dp.splice_entry(&client_key_v4());
            assert!(entry.seen & splice_seen::WINDOW_CLOSED != 0 && entry.last_ack == 5_013 && entry.last_ns > 0, "{entry:?}");
        }
        assert_eq!(fx.dp.counter(Counter::WindowsHeld), 2);
        fx.dp.splice(client_key_v4(), toward_server_v4());
        let (_, out) = fx.dp.run_tc_egress(fx.c0, &frame);
        assert_frame_eq(&out, &frame);
    });
}

/// A held flow is not handed off yet: the ingress programs pass its frames to the socket.
#[test]
fn held_flow_frames_reach_the_socket() {
    with_fixture(|fx| {
        fx.dp.splice(client_key_v4(), SpliceEntry { state: splice_state::HELD, ..SpliceEntry::default() });
        let frame = from_client_v4().to_bytes();
        assert_eq!(fx.dp.run(fx.c0, &frame).0, XDP_PASS);
        let (action, out) = fx.dp.run_tc(fx.c0, &frame);
        assert_eq!(action, TC_ACT_OK);
        assert_frame_eq(&out, &frame);
        assert_eq!(fx.dp.counter(Counter::FrozenDropped), 0);
    });
}

#[test]
fn flow_map_records_the_peer_tsval() {
    with_fixture(|fx| {
        fx.dp.pin_flow(client_key_v4(), FlowValue { frontend_id: 1, ..Default::default() });
        assert_eq!(fx.dp.flow(&client_key_v4()).tsval_seen, 0);

        let aligned = Segment { options: options(&[&[NOP, NOP], &timestamp(0xDEAD_BEEF, 7)]), ..from_client_v4() };
        let frame = aligned.to_bytes();
        let (action, out) = fx.dp.run_tc(fx.c0, &frame);
        assert_eq!(action, TC_ACT_OK);
        assert_frame_eq(&out, &frame);
        let flow = fx.dp.flow(&client_key_v4());
        assert_eq!((flow.tsval_seen, flow.peer_tsval), (1, 0xDEAD_BEEF));

        // Not the common layout: found by the option walk.
        let walked = Segment { options: options(&[&sack(&[(1, 2)]), &[NOP], &timestamp(0x0102_0304, 7)]), ..from_client_v4() };
        fx.dp.run_tc(fx.c0, &walked.to_bytes());
        assert_eq!(fx.dp.flow(&client_key_v4()).peer_tsval, 0x0102_0304);

        // No timestamp: the last one seen stays.
        fx.dp.run_tc(fx.c0, &from_client_v4().to_bytes());
        let flow = fx.dp.flow(&client_key_v4());
        assert_eq!((flow.peer_tsval, flow.packets), (0x0102_0304, 3));
    });
}

#[test]
fn flow_map_records_how_far_data_was_delivered() {
    with_fixture(|fx| {
        fx.dp.pin_flow(client_key_v4(), FlowValue { frontend_id: 1, ..Default::default() });
        assert_eq!(fx.dp.flow(&client_key_v4()).data_seen, 0);
        let data = from_client_v4();
        let end = data.seq + data.payload.len() as u32;
        fx.dp.run_tc(fx.c0, &data.to_bytes());
        let flow = fx.dp.flow(&client_key_v4());
        assert_eq!((flow.data_seen, flow.data_end), (1, end));
        // A retransmission of older data does not move it back; a pure ACK does not move it.
        fx.dp.run_tc(fx.c0, &Segment { seq: data.seq - 100, ..data.clone() }.to_bytes());
        fx.dp.run_tc(fx.c0, &Segment { seq: end + 50, payload: Vec::new(), ..data.clone() }.to_bytes());
        assert_eq!(fx.dp.flow(&client_key_v4()).data_end, end);
        // Data dropped by a frozen hand-off was not delivered.
        fx.dp.splice(client_key_v4(), SpliceEntry { state: splice_state::FROZEN, ..toward_server_v4() });
        let (action, _) = fx.dp.run_tc(fx.c0, &Segment { seq: end, ..data.clone() }.to_bytes());
        assert_eq!(action, TC_ACT_SHOT);
        assert_eq!(fx.dp.flow(&client_key_v4()).data_end, end);
    });
}

#[test]
fn frozen_flow_keeps_recording_the_peer_tsval() {
    with_fixture(|fx| {
        fx.dp.pin_flow(client_key_v4(), FlowValue::default());
        fx.dp.splice(client_key_v4(), SpliceEntry { state: splice_state::FROZEN, ..toward_server_v4() });
        for (tsval, payload) in [(41u32, b"data".to_vec()), (42, Vec::new())] {
            let input = Segment { options: options(&[&[NOP, NOP], &timestamp(tsval, 1)]), payload, ..from_client_v4() };
            fx.dp.run_tc(fx.c0, &input.to_bytes());
            assert_eq!(fx.dp.flow(&client_key_v4()).peer_tsval, tsval);
        }
    });
}

#[test]
fn fib_failure_is_left_to_tc_which_drops_counts_and_marks_the_flow() {
    with_fixture(|fx| {
        fx.dp.splice(client_key_v4(), SpliceEntry { dst_addr: v4(UNROUTED_V4), ..toward_server_v4() });
        let (action, _) = fx.dp.run(fx.c0, &from_client_v4().to_bytes());
        assert_eq!(action, XDP_PASS, "XDP toward an unrouted address");
        let (action, _) = fx.dp.run_tc(fx.c0, &from_client_v4().to_bytes());
        assert_eq!(action, TC_ACT_SHOT);
        assert_eq!(fx.dp.counter(Counter::XdpDeferred), 1);
        assert_eq!(fx.dp.counter(Counter::FibFailed), 1);
        assert_eq!(fx.dp.counter(Counter::SplicedPackets), 0);
        assert_eq!(fx.dp.splice_entry(&client_key_v4()).seen, splice_seen::FIB_FAILED);
    });
}

#[test]
fn a_route_without_a_neighbour_is_resolved_by_the_kernel_from_tc() {
    with_fixture(|fx| {
        fx.dp.splice(client_key_v4(), SpliceEntry { dst_addr: v4(UNRESOLVED_V4), ..toward_server_v4() });
        // XDP cannot resolve a neighbour: it leaves the frame to tc.
        let (action, _) = fx.dp.run(fx.c0, &from_client_v4().to_bytes());
        assert_eq!(action, XDP_PASS);
        // tc rewrites it and has the kernel resolve the next hop (bpf_redirect_neigh).
        let input = from_client_v4();
        let (action, out) = fx.dp.run_tc(fx.c0, &input.to_bytes());
        assert_eq!(action, TC_ACT_REDIRECT);
        let expected = Segment { addrs: Addrs::V4(LB_V4, UNRESOLVED_V4), ..addressed_to_server_v4(&input) };
        // The MACs are the kernel's to fill after the program: only the IP packet is ours.
        assert_frame_eq(&out[14..], &expected.to_bytes()[14..]);
        assert_eq!(fx.dp.counter(Counter::NeighResolved), 1);
        assert_eq!(fx.dp.counter(Counter::FibFailed), 0);
        assert_eq!(fx.dp.counter(Counter::SplicedPackets), 1);
    });
}

/// A one-armed load balancer sends frames back out of the interface they came in on: through
/// the devmap like any other, not XDP_TX (which a veth delivers without waking a peer that
/// has NAPI for GRO but no XDP program of its own).
#[test]
fn egress_on_the_ingress_interface_is_redirected_through_the_devmap() {
    with_fixture(|fx| {
        let rules = SpliceEntry { src_addr: v4(FRONTEND_V4), dst_addr: v4(NEIGHBOUR_V4), ..toward_server_v4() };
        fx.dp.splice(client_key_v4(), rules);
        let input = from_client_v4();
        let expected = Segment {
            eth_dst: NEIGHBOUR_MAC,
            eth_src: C0_MAC,
            addrs: Addrs::V4(FRONTEND_V4, NEIGHBOUR_V4),
            sport: LB_PORT,
            dport: SERVER_PORT,
            ..input.clone()
        };
        let (action, out) = fx.dp.run(fx.c0, &input.to_bytes());
        assert_eq!(action, XDP_REDIRECT);
        assert_frame_eq(&out, &expected.to_bytes());
        assert_eq!(fx.dp.counter(Counter::SplicedPackets), 1);
        // Left out of the devmap, the ingress interface is no exception: tc sends the frame.
        let c0 = fx.c0;
        fx.dp.forbid_egress(c0);
        let (action, out) = fx.dp.run(fx.c0, &input.to_bytes());
        assert_eq!(action, XDP_PASS);
        assert_frame_eq(&out, &input.to_bytes());
        assert_eq!(fx.dp.counter(Counter::XdpDeferred), 1);
    });
}

/// The daemon leaves out of the devmap the interfaces XDP must not redirect to (a veth whose
/// peer may lack NAPI): XDP leaves such frames, untouched, to tc, which redirects the skb.
#[test]
fn egress_missing_from_the_devmap_is_left_to_tc() {
    with_fixture(|fx| {
        let s0 = fx.s0;
        fx.dp.forbid_egress(s0);
        fx.dp.splice(client_key_v4(), toward_server_v4());
        let input = from_client_v4();
        let (action, out) = fx.dp.run(fx.c0, &input.to_bytes());
        assert_eq!(action, XDP_PASS);
        assert_frame_eq(&out, &input.to_bytes());
        assert_eq!(fx.dp.counter(Counter::XdpDeferred), 1);
        assert_eq!(fx.dp.splice_entry(&client_key_v4()).packets, 0, "accounted by the hook that splices it");
        let (action, out) = fx.dp.run_tc(fx.c0, &input.to_bytes());
        assert_eq!(action, TC_ACT_REDIRECT);
        assert_frame_eq(&out, &addressed_to_server_v4(&input).to_bytes());
        assert_eq!(fx.dp.counter(Counter::SplicedPackets), 1);
        assert_eq!(fx.dp.splice_entry(&client_key_v4()).packets, 1);
    });
}

/// A checksum left to offload (the field holds the pseudo-header sum) cannot be completed
/// by XDP, which sees no skb: it leaves the frame to tc.
#[test]
fn partial_checksum_is_left_to_tc() {
    with_fixture(|fx| {
        fx.dp.splice(client_key_v4(), toward_server_v4());
        let mut frame = from_client_v4().to_bytes();
        let l4_len = (frame.len() - 34) as u16;
        let partial = lb_common::csum::partial_check(lb_common::csum::pseudo_v4(&CLIENT_V4, &FRONTEND_V4, 6, l4_len));
        frame[50..52].copy_from_slice(&partial.to_be_bytes());
        let (action, out) = fx.dp.run(fx.c0, &frame);
        assert_eq!(action, XDP_PASS);
        assert_frame_eq(&out, &frame);
        assert_eq!(fx.dp.counter(Counter::XdpDeferred), 1);
        assert_eq!(fx.dp.counter(Counter::SplicedPackets), 0);
    });
}

#[test]
fn truncated_options_are_a_splice_error() {
    with_fixture(|fx| {
        fx.dp.splice(client_key_v4(), toward_server_v4());
        let input = Segment { options: options(&[&[NOP, NOP], &timestamp(1, 2)]), payload: Vec::new(), ..from_client_v4() };
        let mut frame = input.to_bytes();
        frame.truncate(frame.len() - 6); // the header claims 12 option bytes; 6 remain
        let (action, _) = fx.dp.run(fx.c0, &frame);
        assert_eq!(action, XDP_DROP);
        assert_eq!(fx.dp.counter(Counter::SpliceErrors), 1);
    });
}

#[test]
fn vlan_tagged_frame_of_a_live_flow_is_not_spliced() {
    with_fixture(|fx| {
        fx.dp.splice(client_key_v4(), toward_server_v4());
        let input = Segment { vlan: Some(100), ..from_client_v4() };
        let (action, _) = fx.dp.run(fx.c0, &input.to_bytes());
        assert_eq!(action, XDP_DROP);
        assert_eq!(fx.dp.counter(Counter::SpliceErrors), 1);
    });
}

/// A small deterministic generator (xorshift64*): the same cases on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn u32(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The window rule of docs/fastpath.md ("The translation arithmetic"), written out independently of lb_common::tcp.
fn expected_window(window: u16, shift_in: u8, shift_out: u8) -> u16 {
    if shift_in == shift_out {
        return window;
    }
    let bytes = (u64::from(window) << shift_in) >> shift_out;
    bytes.clamp(u64::from(window != 0), 65_535) as u16
}

/// NOP padding, timestamps and SACK blocks in either order.
fn layout(pre: usize, ts: Option<(u32, u32)>, mid: usize, blocks: &[(u32, u32)], ts_first: bool) -> Vec<u8> {
    let ts = ts.map(|(v, e)| timestamp(v, e)).unwrap_or_default();
    let sack = if blocks.is_empty() { Vec::new() } else { sack(blocks) };
    let (first, second) = if ts_first { (ts, sack) } else { (sack, ts) };
    options(&[&vec![NOP; pre], &first, &vec![NOP; mid], &second])
}

#[test]
fn random_segments_match_independently_built_frames() {
    with_fixture(|fx| random_segments(fx, Hook::Xdp));
}

/// The same segments through the tc program: the kernel's checksum helpers, given an skb
/// with CHECKSUM_NONE, must leave exactly the checksums computed from scratch.
#[test]
fn random_segments_through_tc_match_independently_built_frames() {
    with_fixture(|fx| random_segments(fx, Hook::Tc));
}

/// Whether the TCP checksum field of an untagged frame equals its pseudo-header sum.
fn looks_partial(frame: &[u8], v6: bool) -> bool {
    use lb_common::csum::{partial_check, pseudo_v4, pseudo_v6};
    let (tcp, pseudo) = if v6 {
        let l4_len = u16::from_be_bytes([frame[18], frame[19]]);
        let (src, dst): ([u8; 16], [u8; 16]) = (frame[22..38].try_into().unwrap(), frame[38..54].try_into().unwrap());
        (54, pseudo_v6(&src, &dst, 6, u32::from(l4_len)))
    } else {
        let l4_len = u16::from_be_bytes([frame[16], frame[17]]) - 20;
        let (src, dst): ([u8; 4], [u8; 4]) = (frame[26..30].try_into().unwrap(), frame[30..34].try_into().unwrap());
        (34, pseudo_v4(&src, &dst, 6, l4_len))
    };
    u16::from_be_bytes([frame[tcp + 16], frame[tcp + 17]]) == partial_check(pseudo)
}

#[derive(Clone, Copy, Debug)]
enum Hook {
    Xdp,
    Tc,
}

fn random_segments(fx: &mut Fixture, hook: Hook) {
    {
        let mut rng = Rng(0x5EED_CAFE_F00D_0001);
        for case in 0..300 {
            let v6 = rng.below(2) == 1;
            let rules = SpliceEntry {
                seq_add: rng.u32(),
                ack_sub: rng.u32(),
                tsval_add: rng.u32(),
                tsecr_sub: rng.u32(),
                wscale_in: rng.below(15) as u8,
                wscale_out: rng.below(15) as u8,
                ..if v6 { SpliceEntry { src_addr: LB_V6, dst_addr: SERVER_V6, family: FAMILY_V6, ..toward_server_v4() } } else { toward_server_v4() }
            };
            fx.dp.splice(if v6 { client_key_v6() } else { client_key_v4() }, rules);

            let (pre, mid) = (rng.below(4) as usize, rng.below(4) as usize);
            let ts = (rng.below(4) != 0).then(|| (rng.u32(), rng.u32()));
            let mut blocks: Vec<(u32, u32)> = (0..rng.below(5)).map(|_| (rng.u32(), rng.u32())).collect();
            let ts_first = rng.below(2) == 1;
            // At most 40 option bytes.
            while pre + mid + ts.map_or(0, |_| 10) + if blocks.is_empty() { 0 } else { 2 + 8 * blocks.len() } > 40 {
                blocks.pop();
            }
            let flags = [ACK, ACK | PSH, ACK | FIN, RST, RST | ACK][rng.below(5) as usize];
            let payload: Vec<u8> = (0..rng.below(64)).map(|_| rng.below(256) as u8).collect();
            let input = Segment {
                addrs: if v6 { Addrs::V6(CLIENT_V6, FRONTEND_V6) } else { Addrs::V4(CLIENT_V4, FRONTEND_V4) },
                seq: rng.u32(),
                ack: rng.u32(),
                flags,
                window: rng.u32() as u16,
                options: layout(pre, ts, mid, &blocks, ts_first),
                payload,
                ..from_client_v4()
            };

            if flags & RST != 0 {
                // The server expects exactly this RST's byte: it passes the window check.
                let server = if v6 { key(SERVER_V6, SERVER_PORT, LB_V6, LB_PORT, FAMILY_V6) } else { server_key_v4() };
                fx.dp.splice(server, server_window(input.seq.wrapping_add(rules.seq_add), 0));
            }
            let ack_sub = if flags & ACK != 0 { rules.ack_sub } else { 0 };
            let sack_blocks: Vec<(u32, u32)> = blocks.iter().map(|&(l, r)| (l.wrapping_sub(rules.ack_sub), r.wrapping_sub(rules.ack_sub))).collect();
            let expected = Segment {
                addrs: if v6 { Addrs::V6(LB_V6, SERVER_V6) } else { Addrs::V4(LB_V4, SERVER_V4) },
                seq: input.seq.wrapping_add(rules.seq_add),
                ack: input.ack.wrapping_sub(ack_sub),
                window: expected_window(input.window, rules.wscale_in, rules.wscale_out),
                options: layout(pre, ts.map(|(v, e)| (v.wrapping_add(rules.tsval_add), e.wrapping_sub(rules.tsecr_sub))), mid, &sack_blocks, ts_first),
                ..addressed_to_server_v4(&input)
            };
            let (action, out) = match hook {
                Hook::Xdp => fx.dp.run(fx.c0, &input.to_bytes()),
                Hook::Tc => fx.dp.run_tc(fx.c0, &input.to_bytes()),
            };
            if matches!(hook, Hook::Xdp) && looks_partial(&input.to_bytes(), v6) {
                // Once in 65,536 frames a full checksum equals the pseudo-header sum: XDP
                // cannot tell it from a partial one and leaves it to tc.
                assert_eq!((action, out), (XDP_PASS, input.to_bytes()), "case {case}");
                continue;
            }
            let redirect = match hook {
                Hook::Xdp => XDP_REDIRECT,
                Hook::Tc => TC_ACT_REDIRECT,
            };
            assert_eq!(action, redirect, "{hook:?} case {case}: {input:?}");
            if out != expected.to_bytes() {
                eprintln!("{hook:?} case {case}: rules {rules:?}\ninput {input:?}");
                assert_frame_eq(&out, &expected.to_bytes());
            }
        }
    }
}
