//! Stalled handed-off flows: data keeps arriving from one peer while the other peer's
//! acknowledgment never moves. That is what a flow looks like when its rewritten frames
//! are lost after the program (a checksum the receiver refuses, a device that drops what
//! it is given): the sender retransmits forever and nobody else notices. Each direction of
//! a live flow is watched from the two splice entries: this direction's data frames, and
//! the last ACK number its receiver sent through the other direction.
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use lb_common::{FlowKey, SpliceEntry};

/// How long the receiver's ACK may stay put while data keeps coming. Retransmission
/// timeouts start at 200 ms and double: two seconds hold three retransmissions.
pub const WINDOW: Duration = Duration::from_secs(2);
/// Data frames needed within the window: one could be a last segment still in flight.
const MIN_DATA_FRAMES: u64 = 2;

struct Watch {
    since: Instant,
    data_packets: u64,
    receiver_ack: u32,
    reported: bool,
}

/// Remembers, per direction, since when its receiver's ACK has not moved.
#[derive(Default)]
pub struct StallWatch {
    watches: HashMap<FlowKey, Watch, foldhash::fast::RandomState>,
}

impl StallWatch {
    /// Looks at one direction: `sent` is its splice entry (frames from the sender, keyed by
    /// `key`), `received` the other direction's (frames from the receiver, whose ACKs
    /// acknowledge this direction's data). True once per stall, when it is found.
    pub fn observe(&mut self, key: FlowKey, sent: &SpliceEntry, received: &SpliceEntry, now: Instant) -> bool {
        let fresh = || Watch { since: now, data_packets: sent.data_packets, receiver_ack: received.last_ack, reported: false };
        // A receiver that advertises a zero window is applying flow control (a slow reader, a
        // full buffer), not losing frames: what the sender sends meanwhile (probes, segments
        // the receiver drops for want of room) earns no new acknowledgment, legitimately.
        let closed = received.last_win == 0;
        // A receiver that has acknowledged everything the sender sent owes nothing, whatever
        // the frame counts say. They can say otherwise on a large map: a scan reads the two
        // entries of a pair moments apart, and a short flow that ends in between leaves a
        // watch holding an older frame count beside the final acknowledgment.
        if closed || !unacknowledged(sent, received) {
            // No watch for it: most directions of a large map are idle, and a watch each
            // would cost every scan a hash-table entry per direction.
            self.watches.remove(&key);
            return false;
        }
        let watch = self.watches.entry(key).or_insert_with(fresh);
        if received.last_ack != watch.receiver_ack || sent.data_packets < watch.data_packets {
            // Progress (or entries rewritten under us): start over from here.
            *watch = fresh();
            return false;
        }
        let stalled = now.duration_since(watch.since) >= WINDOW && sent.data_packets - watch.data_packets >= MIN_DATA_FRAMES;
        if stalled && !watch.reported {
            watch.reported = true;
            return true;
        }
        false
    }

    /// Forgets directions that are no longer live.
    pub fn retain(&mut self, live: impl Fn(&FlowKey) -> bool) {
        self.watches.retain(|key, _| live(key));
    }

    /// The keys of the directions it watches.
    pub fn keys(&self) -> impl Iterator<Item = &FlowKey> {
        self.watches.keys()
    }
}

/// Whether the sender has sent (as far as the program saw: data or a FIN) past what its
/// receiver acknowledged. The sender's end is in its own numbering, the receiver's ACK in
/// the receiver's: the sender's entry translates one into the other (`seq_add`).
fn unacknowledged(sent: &SpliceEntry, received: &SpliceEntry) -> bool {
    let end = sent.data_end.wrapping_add(sent.seq_add);
    // Serial-number comparison (RFC 1982): both wrap at 2^32.
    (end.wrapping_sub(received.last_ack) as i32) > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sender's data ends far past any acknowledgment of these tests.
    fn sent(data_packets: u64) -> SpliceEntry {
        SpliceEntry { data_packets, data_end: 1 << 30, ..SpliceEntry::default() }
    }

    fn acked(last_ack: u32) -> SpliceEntry {
        SpliceEntry { last_ack, last_win: 512, ..SpliceEntry::default() }
    }

    #[test]
    fn a_closed_receive_window_is_flow_control_not_a_stall() {
        let mut watch = StallWatch::default();
        let key = FlowKey::default();
        let t0 = Instant::now();
        let closed = SpliceEntry { last_ack: 7, last_win: 0, ..SpliceEntry::default() };
        assert!(!watch.observe(key, &sent(10), &closed, t0));
        assert!(!watch.observe(key, &sent(15), &closed, t0 + WINDOW));
        assert!(!watch.observe(key, &sent(20), &closed, t0 + 3 * WINDOW), "a slow reader is not a stall");
        // The window opens again and the acknowledgment still does not move: from then on it is.
        assert!(!watch.observe(key, &sent(21), &acked(7), t0 + 4 * WINDOW));
        assert!(watch.observe(key, &sent(24), &acked(7), t0 + 5 * WINDOW));
    }

    #[test]
    fn data_without_acknowledgment_for_the_window_is_one_stall() {
        let mut watch = StallWatch::default();
        let key = FlowKey::default();
        let t0 = Instant::now();
        assert!(!watch.observe(key, &sent(10), &acked(7), t0));
        assert!(!watch.observe(key, &sent(12), &acked(7), t0 + WINDOW / 2), "too early");
        assert!(watch.observe(key, &sent(13), &acked(7), t0 + WINDOW));
        assert!(!watch.observe(key, &sent(20), &acked(7), t0 + 3 * WINDOW), "reported once");
    }

    #[test]
    fn moving_acknowledgments_are_never_a_stall() {
        let mut watch = StallWatch::default();
        let key = FlowKey::default();
        let t0 = Instant::now();
        for i in 0..20u32 {
            let now = t0 + WINDOW * i / 4;
            assert!(!watch.observe(key, &sent(u64::from(i) * 100), &acked(i * 1000), now));
        }
    }

    #[test]
    fn an_idle_flow_is_not_stalled() {
        let mut watch = StallWatch::default();
        let key = FlowKey::default();
        let t0 = Instant::now();
        assert!(!watch.observe(key, &sent(5), &acked(9), t0));
        assert!(!watch.observe(key, &sent(6), &acked(9), t0 + 10 * WINDOW), "one frame is not a stall");
    }

    #[test]
    fn a_stall_after_progress_is_counted_again() {
        let mut watch = StallWatch::default();
        let key = FlowKey::default();
        let t0 = Instant::now();
        watch.observe(key, &sent(0), &acked(1), t0);
        assert!(watch.observe(key, &sent(5), &acked(1), t0 + WINDOW));
        assert!(!watch.observe(key, &sent(6), &acked(2), t0 + 2 * WINDOW));
        assert!(watch.observe(key, &sent(9), &acked(2), t0 + 3 * WINDOW));
    }

    #[test]
    fn a_receiver_that_acknowledged_everything_owes_nothing() {
        // Seen on a map of 200,000 entries: the first scan read the sender's entry after two
        // of its four data frames and the receiver's after its final acknowledgment.
        let mut watch = StallWatch::default();
        let key = FlowKey::default();
        let t0 = Instant::now();
        let final_ack = acked(0x1000_0500);
        let sender = |data_packets| SpliceEntry { data_packets, data_end: 0x2000_0500, seq_add: 0xf000_0000, ..SpliceEntry::default() };
        assert!(!watch.observe(key, &sender(2), &final_ack, t0));
        assert!(!watch.observe(key, &sender(4), &final_ack, t0 + WINDOW));
        assert!(!watch.observe(key, &sender(4), &final_ack, t0 + 2 * WINDOW), "everything sent was acknowledged");
        // One byte past the acknowledgment, retransmitted: owed, and a stall.
        let behind = |data_packets| SpliceEntry { data_end: 0x2000_0501, ..sender(data_packets) };
        assert!(!watch.observe(key, &behind(5), &final_ack, t0 + 3 * WINDOW));
        assert!(watch.observe(key, &behind(7), &final_ack, t0 + 4 * WINDOW));
    }

    #[test]
    fn acknowledgments_compare_across_the_wrap() {
        let sender = SpliceEntry { data_end: 10, seq_add: 0, ..SpliceEntry::default() };
        assert!(unacknowledged(&sender, &acked(u32::MAX - 5)), "the sender wrapped, the receiver not yet");
        assert!(!unacknowledged(&sender, &acked(10)));
        assert!(!unacknowledged(&sender, &acked(12)));
    }
}
