//! Hand-off counters: flows handed to the XDP program, and why others stayed in user space.
//! The daemon publishes them as `handoff.json` in its data directory (`lb-user stats` reads it).
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use serde::{Deserialize, Serialize};

use crate::telemetry::counters::LatencyHistogram;

pub const FILE_NAME: &str = "handoff.json";

/// Why a connection was not handed off (it stays on splice, or copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// ECN, TCP Fast Open or microsecond timestamps on either connection.
    Unsupported(&'static str),
    /// Timestamps or SACK negotiated on one connection only.
    OptionsDiffer(&'static str),
    /// The client and the server speak different IP families.
    Family,
    /// Timestamps are on, but the XDP program never saw the peer's TSval.
    NoTimestamp,
    /// The queues did not empty within the hand-off deadline.
    NotQuiescent,
    /// The connection does not arrive through an interface the XDP program is attached to.
    NotXdpInterface,
    /// The ingress interface does not forward this IP family (sysctl
    /// net.ipv4.conf.IF.forwarding / net.ipv6.conf.IF.forwarding): bpf_fib_lookup refuses.
    ForwardingDisabled,
    /// A side finished sending (or reset) before the hand-off.
    Closing,
    /// The splice map is full.
    MapFull,
    /// Data the program let through has not reached a socket in order yet (still in the
    /// stack's queues, or waiting behind a hole in the out-of-order queue): retired now, the
    /// socket would take it along.
    Undelivered,
    /// One side's peer may send segments larger than the other side's path takes (a
    /// smaller MTU there): translated, they would fail the FIB's MTU check for good.
    MssMismatch,
    /// A socket's sequence numbers moved between the read the translation used and going
    /// live: both connections were reset rather than risk corrupting a stream.
    SequencesMoved,
    /// A socket option or map update failed unexpectedly.
    Error,
}

impl Fallback {
    pub fn label(self) -> &'static str {
        match self {
            Self::Unsupported(what) => what,
            Self::OptionsDiffer("timestamps") => "timestamps differ",
            Self::OptionsDiffer(_) => "sack differs",
            Self::Family => "address families differ",
            Self::NoTimestamp => "no peer timestamp seen",
            Self::NotQuiescent => "not quiescent",
            Self::NotXdpInterface => "not through an XDP interface",
            Self::ForwardingDisabled => "forwarding disabled",
            Self::Closing => "closing",
            Self::MapFull => "splice map full",
            Self::Undelivered => "data not yet delivered",
            Self::MssMismatch => "segment sizes differ",
            Self::SequencesMoved => "sequences moved (reset)",
            Self::Error => "error",
        }
    }

    /// Worth another attempt later in the same connection.
    pub fn retryable(self) -> bool {
        matches!(self, Self::NotQuiescent | Self::NoTimestamp | Self::MapFull | Self::Undelivered)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoffReport {
    /// Hand-offs started (the flow was frozen).
    pub attempts: u64,
    /// Flows the XDP program carries or carried.
    pub handed_off: u64,
    /// Handed-off flows still in the splice map (including lingering ones).
    pub active: u64,
    /// Handed-off flows that ended (both FINs, an RST, or idle) and were reclaimed.
    pub ended: u64,
    /// Flows found in the pinned map at start-up (a previous daemon handed them off).
    pub adopted: u64,
    /// Directions of handed-off flows whose data kept arriving while the receiver's ACK
    /// stood still for a while (handoff/stall.rs): frames lost after the rewrite. Always 0
    /// on a healthy host.
    #[serde(default)]
    pub stalls: u64,
    /// Directions of handed-off flows that dropped frames for want of a route to the peer
    /// (`fib_failed`), each counted once: the peer is unreachable from this host now.
    #[serde(default)]
    pub unroutable: u64,
    /// Keepalive probes sent into handed-off flows (handoff/keepalive.rs): to a peer silent
    /// for the idle period, or whose flow a SYN met.
    #[serde(default)]
    pub probes: u64,
    /// Handed-off flows ended because a peer answered none of a round of probes (the other
    /// peer was sent an RST).
    #[serde(default)]
    pub dead_peers: u64,
    /// ACKs sent in a socket's name, with its real window, to a peer held at a zero window
    /// by a hand-off that was then abandoned (it would otherwise wait for its own
    /// zero-window probe, a retransmission timeout later).
    #[serde(default)]
    pub windows_reopened: u64,
    /// Attempts that held their flow (those that fail earlier, e.g. before the peer's first
    /// timestamp, hold nothing), and the microseconds they held it in all, each from the
    /// hold to going live or falling back: the pause a hand-off costs its connection.
    /// `/metrics` has their histogram, `lb_handoff_hold_seconds`.
    #[serde(default)]
    pub holds: u64,
    #[serde(default)]
    pub held_us: u64,
    /// Connections that stayed in user space, by reason.
    pub fallbacks: BTreeMap<String, u64>,
    /// Connections relayed per frontend and mode (`copy`, `splice`, `xdp`).
    pub by_frontend: BTreeMap<u32, BTreeMap<String, u64>>,
}

/// Every reason a counter is kept for, in slot order; their labels are [`Fallback::label`]'s.
const FALLBACKS: [Fallback; 15] = [
    Fallback::Unsupported("ecn"),
    Fallback::Unsupported("fast open"),
    Fallback::Unsupported("usec timestamps"),
    Fallback::OptionsDiffer("timestamps"),
    Fallback::OptionsDiffer("sack"),
    Fallback::Family,
    Fallback::NoTimestamp,
    Fallback::NotQuiescent,
    Fallback::NotXdpInterface,
    Fallback::ForwardingDisabled,
    Fallback::Closing,
    Fallback::MapFull,
    Fallback::Undelivered,
    Fallback::MssMismatch,
    Fallback::SequencesMoved,
];
/// Where a reason missing from [`FALLBACKS`] is counted (and [`Fallback::Error`]).
const OTHER: usize = FALLBACKS.len();

/// The hand-off's counters: plain atomics, so that neither a connection's end nor a
/// hand-off takes a lock to count itself. Connections relayed per frontend and path are
/// the frontends' own counters (telemetry), which [`super::Handoff::report`] adds.
#[derive(Default)]
pub struct HandoffStats {
    pub attempts: AtomicU64,
    pub handed_off: AtomicU64,
    pub active: AtomicU64,
    pub ended: AtomicU64,
    pub adopted: AtomicU64,
    pub stalls: AtomicU64,
    pub unroutable: AtomicU64,
    pub probes: AtomicU64,
    pub dead_peers: AtomicU64,
    pub windows_reopened: AtomicU64,
    /// How long each attempt held its flow, until it went live or fell back.
    pub holds: LatencyHistogram,
    fallbacks: [AtomicU64; OTHER + 1],
}

impl HandoffStats {
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A handed-off flow ended and its pair left the map: `ended` counts it, `active` moves
    /// down by one (never below zero; full scans recount it).
    pub fn ended_one(&self) {
        Self::count(&self.ended);
        self.active.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).ok();
    }

    pub fn fallback(&self, reason: Fallback) {
        let label = reason.label();
        let slot = FALLBACKS.iter().position(|f| f.label() == label).unwrap_or(OTHER);
        self.fallbacks[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// The counters as of now (`by_frontend` left empty).
    pub fn report(&self) -> HandoffReport {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut fallbacks = BTreeMap::new();
        for (slot, counter) in self.fallbacks.iter().enumerate() {
            let n = get(counter);
            if n > 0 {
                fallbacks.insert(FALLBACKS.get(slot).map_or("error", |f| f.label()).to_string(), n);
            }
        }
        let holds = self.holds.values();
        HandoffReport {
            attempts: get(&self.attempts),
            handed_off: get(&self.handed_off),
            active: get(&self.active),
            ended: get(&self.ended),
            adopted: get(&self.adopted),
            stalls: get(&self.stalls),
            unroutable: get(&self.unroutable),
            probes: get(&self.probes),
            dead_peers: get(&self.dead_peers),
            windows_reopened: get(&self.windows_reopened),
            holds: holds.count,
            held_us: (holds.sum_seconds * 1e6).round() as u64,
            fallbacks,
            by_frontend: BTreeMap::new(),
        }
    }
}

/// Writes the report atomically (temporary file, then rename).
pub fn publish(data_dir: &Path, report: &HandoffReport) -> std::io::Result<()> {
    let path = data_dir.join(FILE_NAME);
    let tmp: PathBuf = data_dir.join(format!("{FILE_NAME}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?)?;
    std::fs::rename(&tmp, &path)
}

pub fn read(data_dir: &Path) -> Option<HandoffReport> {
    serde_json::from_slice(&std::fs::read(data_dir.join(FILE_NAME)).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fallback_has_its_own_counter() {
        let all = FALLBACKS;
        let stats = HandoffStats::default();
        for reason in all {
            stats.fallback(reason);
        }
        stats.fallback(Fallback::Error);
        let report = stats.report();
        assert_eq!(report.fallbacks.len(), all.len() + 1, "{report:?}");
        assert!(report.fallbacks.values().all(|n| *n == 1), "{report:?}");
        assert_eq!(report.fallbacks.get("error"), Some(&1));
    }
}
