//! `lb-user stats`: the kernel programs' counters and maps of a running daemon, read through
//! the kernel ids it published, with the hand-off statistics it wrote to its data directory.
use std::net::SocketAddr;

use lb_common::{
    addr::bytes_addr,
    maps::{CountersMap, EgressMap, FlowsMap, SpliceMap},
};
use serde::{Deserialize, Serialize};

use crate::{
    dataplane::handoff::stats::HandoffReport,
    kernel::attach::Attachment,
    kernel::bpf::{CounterReadError, Counters, KernelIds},
    kernel::kernel_map::{self, Handle, KernelMapError},
};

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error(transparent)]
    Map(#[from] KernelMapError),
    #[error(transparent)]
    Counters(#[from] CounterReadError),
    #[error("no program id published")]
    NoProgram,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowReport {
    /// The connection's remote end: the client for client-side entries.
    pub client: String,
    pub frontend: String,
    pub side: String,
    pub frontend_id: u32,
    pub farm_id: u32,
    pub server_id: u32,
    pub packets: u64,
    pub bytes: u64,
}

/// One direction of a flow the XDP program carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SplicedReport {
    /// Where its frames come from and go to, as the wire shows them before the rewrite.
    pub from: String,
    pub to: String,
    /// Where they are sent after the rewrite.
    pub rewritten_from: String,
    pub rewritten_to: String,
    pub state: String,
    pub fin_seen: bool,
    pub rst_seen: bool,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatsReport {
    pub counters: Counters,
    pub flows: Vec<FlowReport>,
    #[serde(default)]
    pub spliced: Vec<SplicedReport>,
    /// Published by the daemon in its data directory (absent without XDP).
    #[serde(default)]
    pub handoff: Option<HandoffReport>,
    /// The interfaces XDP sends handed-off frames out of now (those of its interfaces that
    /// take XDP frames); tc sends the frames leaving by any other.
    #[serde(default)]
    pub xdp_egress: Vec<String>,
}

/// Reads counters and flows of a running daemon through the kernel ids and attachments it
/// published.
pub fn read(ids: &KernelIds, attachments: &[Attachment]) -> Result<StatsReport, StatsError> {
    let counters = kernel_map::open_by_id::<CountersMap>(ids.counters)?;
    let flows = kernel_map::open_by_id::<FlowsMap>(ids.flows)?;
    let mut report = Vec::new();
    for entry in flows.iter() {
        let (key, value) = match entry {
            Ok(kv) => kv,
            // An entry removed while we iterate is not an error.
            Err(_) => continue,
        };
        let remote = SocketAddr::new(bytes_addr(&key.remote_addr, key.family), u16::from_be(key.remote_port));
        let local = SocketAddr::new(bytes_addr(&key.local_addr, key.family), u16::from_be(key.local_port));
        report.push(FlowReport {
            client: remote.to_string(),
            frontend: local.to_string(),
            side: if value.side == lb_common::side::CLIENT { "client" } else { "server" }.to_string(),
            frontend_id: value.frontend_id,
            farm_id: value.farm_id,
            server_id: value.server_id,
            packets: value.packets,
            bytes: value.bytes,
        });
    }
    if ids.program == 0 {
        return Err(StatsError::NoProgram);
    }
    let spliced = if ids.splice == 0 { Vec::new() } else { read_spliced(ids.splice)? };
    let name = |ifindex| attachments.iter().find(|a| a.ifindex == ifindex).map(|a| a.iface.clone());
    let xdp_egress = if ids.egress == 0 { Vec::new() } else { xdp_egress(&kernel_map::open_by_id::<EgressMap>(ids.egress)?, name) };
    Ok(StatsReport { counters: Counters::read(&counters)?, flows: report, spliced, handoff: None, xdp_egress })
}

/// The names of the interfaces in the XDP egress devmap, by `name` of their index (the
/// index itself, as `#N`, where it has none).
pub fn xdp_egress(devmap: &Handle<EgressMap>, name: impl Fn(u32) -> Option<String>) -> Vec<String> {
    devmap.keys().filter_map(Result::ok).map(|ifindex| name(ifindex).unwrap_or_else(|| format!("#{ifindex}"))).collect()
}

fn read_spliced(id: u32) -> Result<Vec<SplicedReport>, KernelMapError> {
    let map = kernel_map::open_by_id::<SpliceMap>(id)?;
    let socket = |addr: &[u8; 16], port: u16, family: u8| SocketAddr::new(bytes_addr(addr, family), u16::from_be(port)).to_string();
    Ok(map
        .iter()
        .filter_map(Result::ok)
        .map(|(key, e)| SplicedReport {
            from: socket(&key.remote_addr, key.remote_port, key.family),
            to: socket(&key.local_addr, key.local_port, key.family),
            rewritten_from: socket(&e.src_addr, e.src_port, e.family),
            rewritten_to: socket(&e.dst_addr, e.dst_port, e.family),
            state: match e.state {
                lb_common::splice_state::LIVE => "live",
                lb_common::splice_state::HELD => "held",
                _ => "frozen",
            }
            .to_string(),
            fin_seen: e.seen & lb_common::splice_seen::FIN != 0,
            rst_seen: e.seen & lb_common::splice_seen::RST != 0,
            packets: e.packets,
            bytes: e.bytes,
        })
        .collect())
}
