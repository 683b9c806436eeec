//! Hand-off counters: flows handed to the XDP program, and why others stayed in user space.
//! The daemon publishes them as `handoff.json` in its data directory (`lb-user stats` reads it).
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Mutex,
};

use serde::{Deserialize, Serialize};

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
    /// No pipe for splice(2): the connection is copied, and a copy cannot be paused.
    NoPipe,
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
            Self::NoPipe => "no pipe",
            Self::Error => "error",
        }
    }

    /// Worth another attempt later in the same connection.
    pub fn retryable(self) -> bool {
        matches!(self, Self::NotQuiescent | Self::NoTimestamp | Self::MapFull)
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
    /// Connections that stayed in user space, by reason.
    pub fallbacks: BTreeMap<String, u64>,
    /// Connections relayed per frontend and mode (`copy`, `splice`, `xdp`).
    pub by_frontend: BTreeMap<u32, BTreeMap<String, u64>>,
}

#[derive(Default)]
pub struct HandoffStats {
    report: Mutex<HandoffReport>,
}

impl HandoffStats {
    pub fn update(&self, change: impl FnOnce(&mut HandoffReport)) {
        change(&mut self.report.lock().unwrap_or_else(|p| p.into_inner()));
    }

    pub fn fallback(&self, reason: Fallback) {
        self.update(|r| *r.fallbacks.entry(reason.label().to_string()).or_default() += 1);
    }

    /// Counts a connection's final mode on its frontend (allocating only the first time a
    /// frontend or mode shows up).
    pub fn relayed(&self, frontend: u32, mode: &str) {
        self.update(|r| {
            let modes = r.by_frontend.entry(frontend).or_default();
            match modes.get_mut(mode) {
                Some(n) => *n += 1,
                None => {
                    modes.insert(mode.to_string(), 1);
                }
            }
        });
    }

    pub fn report(&self) -> HandoffReport {
        self.report.lock().unwrap_or_else(|p| p.into_inner()).clone()
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
