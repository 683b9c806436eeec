//! Keepalive for handed-off flows, as the relays' sockets have it (dataplane/liveness.rs):
//! the retired sockets are silent, so the daemon probes the peers itself, with the segments
//! `lb_core::splice::keepalive` builds. A peer is probed when a SYN met its flow (it may be
//! a new connection on the ports of one whose end the program never saw: the probe draws
//! the RST that ends the old flow, and the SYN's retransmission then finds the listener),
//! and when it has sent nothing for the idle period. A peer that leaves every probe of a
//! round unanswered is gone without a word: the flow ends, with an RST to the other peer.
use std::{
    collections::HashMap,
    io,
    net::SocketAddr,
    time::{Duration, Instant},
};

use lb_common::{FlowKey, SpliceEntry};
use lb_core::splice::keepalive::Segment;
use socket2::{Domain, Protocol, Socket, Type};

/// When and how often a silent peer is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepaliveSettings {
    /// A peer that sent no frame for this long is probed.
    pub idle: Duration,
    /// Between probes of a peer that did not answer.
    pub interval: Duration,
    /// Unanswered probes after which the peer is taken for gone.
    pub probes: u32,
}

impl Default for KeepaliveSettings {
    /// The relays' keepalive: a vanished peer is found within about two minutes.
    fn default() -> Self {
        Self { idle: Duration::from_secs(60), interval: Duration::from_secs(10), probes: 6 }
    }
}

/// What one look at a peer came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    Quiet,
    /// A probe is due: a SYN met the flow (`syn`), or the peer has been silent.
    Probe {
        syn: bool,
    },
    /// The peer left a whole round of probes unanswered.
    Gone,
}

struct Watch {
    /// The entry's frame count and SYN count when last looked at.
    packets: u64,
    syns: u16,
    /// Since when the peer has sent nothing.
    silent_since: Instant,
    last_probe: Option<Instant>,
    unanswered: u32,
}

/// Per peer (keyed by the flow key of its frames): what it last sent and how it was probed.
#[derive(Default)]
pub struct KeepaliveWatch {
    watches: HashMap<FlowKey, Watch, foldhash::fast::RandomState>,
}

impl KeepaliveWatch {
    /// Looks at the peer whose frames `entry` counts; a probe it returns is taken as sent.
    /// `now_ns` is `now` on the program's clock (`last_ns`).
    pub fn look(&mut self, key: FlowKey, entry: &SpliceEntry, settings: &KeepaliveSettings, now: Instant, now_ns: u64) -> Look {
        // A peer whose flow moved within the idle period (`last_ns`), and that no SYN ever
        // met, needs no watch: that is most of a large map, and a watch each would cost every
        // scan a hash-table entry per peer. Its watch, made once it falls silent, counts the
        // silence from its last moving frame.
        let moved_ago = (entry.last_ns != 0).then(|| Duration::from_nanos(now_ns.saturating_sub(entry.last_ns)));
        if entry.syns == 0 && moved_ago.is_some_and(|ago| ago < settings.idle) {
            self.watches.remove(&key);
            return Look::Quiet;
        }
        let silent_since = moved_ago.and_then(|ago| now.checked_sub(ago)).unwrap_or(now);
        // A SYN count that is not zero when the watch is made is news: watches are only left
        // out while it is zero.
        let watch = self.watches.entry(key).or_insert_with(|| Watch { packets: entry.packets, syns: 0, silent_since, last_probe: None, unanswered: 0 });
        if entry.packets != watch.packets {
            // Any frame is an answer: a duplicate ACK to a probe, or traffic.
            watch.packets = entry.packets;
            watch.silent_since = now;
            watch.last_probe = None;
            watch.unanswered = 0;
        }
        let syn = entry.syns != watch.syns;
        watch.syns = entry.syns;
        let silent = now.duration_since(watch.silent_since) >= settings.idle;
        let probe_due = watch.last_probe.is_none_or(|at| now.duration_since(at) >= settings.interval);
        if silent && probe_due && watch.unanswered >= settings.probes {
            return Look::Gone;
        }
        if syn || (silent && probe_due) {
            watch.last_probe = Some(now);
            watch.unanswered += 1;
            return Look::Probe { syn };
        }
        Look::Quiet
    }

    /// Forgets peers whose flows are gone.
    pub fn retain(&mut self, live: impl Fn(&FlowKey) -> bool) {
        self.watches.retain(|key, _| live(key));
    }

    /// The peers a look would probe now (or give up): silent past the idle period, their
    /// last probe an interval ago. Other watched peers need no look until then, unless their
    /// flow moves or a SYN meets it, which the program notes.
    pub fn due(&self, settings: KeepaliveSettings, now: Instant) -> impl Iterator<Item = &FlowKey> {
        self.watches
            .iter()
            .filter(move |(_, w)| {
                now.duration_since(w.silent_since) >= settings.idle && w.last_probe.is_none_or(|at| now.duration_since(at) >= settings.interval)
            })
            .map(|(key, _)| key)
    }
}

/// Sends whole IP packets (header included) through send-only raw sockets, one per family,
/// opened on first use: `IPPROTO_RAW` sockets receive nothing, so they cost nothing while
/// the host's traffic goes by.
#[derive(Default)]
pub struct RawSender {
    v4: Option<Socket>,
    v6: Option<Socket>,
}

impl RawSender {
    pub fn send(&mut self, segment: &Segment) -> io::Result<()> {
        let (slot, domain) = match segment.dst {
            SocketAddr::V4(_) => (&mut self.v4, Domain::IPV4),
            SocketAddr::V6(_) => (&mut self.v6, Domain::IPV6),
        };
        let socket = match slot {
            Some(socket) => socket,
            None => slot.insert(Socket::new(domain, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW)))?),
        };
        // The port of a raw socket's destination must be zero (IPv6 takes it as a protocol).
        let to = SocketAddr::new(segment.dst.ip(), 0);
        socket.send_to(&segment.bytes, &to.into()).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> KeepaliveSettings {
        KeepaliveSettings { idle: Duration::from_secs(60), interval: Duration::from_secs(10), probes: 3 }
    }

    fn entry(packets: u64, syns: u16) -> SpliceEntry {
        SpliceEntry { packets, syns, ..SpliceEntry::default() }
    }

    #[test]
    fn a_talking_peer_is_never_probed() {
        let mut watch = KeepaliveWatch::default();
        let start = Instant::now();
        for minute in 0..10u64 {
            let look = watch.look(FlowKey::default(), &entry(minute, 0), &settings(), start + Duration::from_secs(59 * minute), 0);
            assert_eq!(look, Look::Quiet);
        }
    }

    #[test]
    fn a_silent_peer_is_probed_each_interval_then_given_up() {
        let mut watch = KeepaliveWatch::default();
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let key = FlowKey::default();
        // Between full scans the reaper looks only at the peers due a probe.
        let due = |watch: &KeepaliveWatch, s: u64| watch.due(settings(), at(s)).count();
        assert_eq!(watch.look(key, &entry(5, 0), &settings(), at(0), 0), Look::Quiet);
        assert_eq!(watch.look(key, &entry(5, 0), &settings(), at(59), 0), Look::Quiet);
        assert_eq!((due(&watch, 59), due(&watch, 60)), (0, 1));
        assert_eq!(watch.look(key, &entry(5, 0), &settings(), at(60), 0), Look::Probe { syn: false });
        assert_eq!((due(&watch, 69), due(&watch, 70)), (0, 1));
        assert_eq!(watch.look(key, &entry(5, 0), &settings(), at(65), 0), Look::Quiet);
        assert_eq!(watch.look(key, &entry(5, 0), &settings(), at(70), 0), Look::Probe { syn: false });
        assert_eq!(watch.look(key, &entry(5, 0), &settings(), at(80), 0), Look::Probe { syn: false });
        assert_eq!(watch.look(key, &entry(5, 0), &settings(), at(89), 0), Look::Quiet);
        assert_eq!(watch.look(key, &entry(5, 0), &settings(), at(90), 0), Look::Gone);
    }

    #[test]
    fn an_answer_starts_the_idle_period_over() {
        let mut watch = KeepaliveWatch::default();
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let key = FlowKey::default();
        watch.look(key, &entry(5, 0), &settings(), at(0), 0);
        assert_eq!(watch.look(key, &entry(5, 0), &settings(), at(60), 0), Look::Probe { syn: false });
        // The duplicate ACK it drew.
        assert_eq!(watch.look(key, &entry(6, 0), &settings(), at(61), 0), Look::Quiet);
        assert_eq!(watch.look(key, &entry(6, 0), &settings(), at(120), 0), Look::Quiet);
        assert_eq!(watch.look(key, &entry(6, 0), &settings(), at(121), 0), Look::Probe { syn: false });
    }

    #[test]
    fn a_syn_is_probed_at_once_even_from_a_talking_peer() {
        let mut watch = KeepaliveWatch::default();
        let start = Instant::now();
        let key = FlowKey::default();
        watch.look(key, &entry(5, 0), &settings(), start, 0);
        assert_eq!(watch.look(key, &entry(9, 1), &settings(), start + Duration::from_millis(250), 0), Look::Probe { syn: true });
        assert_eq!(watch.look(key, &entry(9, 1), &settings(), start + Duration::from_millis(500), 0), Look::Quiet);
        assert_eq!(watch.look(key, &entry(9, 3), &settings(), start + Duration::from_millis(750), 0), Look::Probe { syn: true });
    }

    /// A map of 100,000 busy flows keeps no watch; a peer falls silent, and the silence
    /// counts from its last moving frame (`last_ns`), not from when it was first looked at.
    #[test]
    fn a_peer_heard_within_the_idle_period_needs_no_watch() {
        let mut watch = KeepaliveWatch::default();
        let start = Instant::now();
        let s = 1_000_000_000u64;
        let key = FlowKey::default();
        let heard = |last_ns: u64, syns: u16| SpliceEntry { packets: 7, syns, last_ns, ..SpliceEntry::default() };
        assert_eq!(watch.look(key, &heard(100 * s, 0), &settings(), start, 130 * s), Look::Quiet);
        assert!(watch.watches.is_empty());
        // 60 s after its last frame: silent for the idle period already, probed at once.
        let later = start + Duration::from_secs(30);
        assert_eq!(watch.look(key, &heard(100 * s, 0), &settings(), later, 160 * s), Look::Probe { syn: false });
        // It answers (a frame that moves the flow): the watch goes.
        assert_eq!(watch.look(key, &heard(161 * s, 0), &settings(), later + Duration::from_secs(1), 161 * s), Look::Quiet);
        assert!(watch.watches.is_empty());
        // A SYN that meets a talking peer's flow is probed all the same.
        assert_eq!(watch.look(key, &heard(161 * s, 1), &settings(), later + Duration::from_secs(2), 162 * s), Look::Probe { syn: true });
        assert_eq!(watch.look(key, &heard(162 * s, 1), &settings(), later + Duration::from_secs(3), 163 * s), Look::Quiet);
    }
}
