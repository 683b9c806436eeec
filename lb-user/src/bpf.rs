//! Loading and attaching the kernel programs (tc on every interface, XDP where it fits:
//! attach.rs), and every access to their maps.
//!
//! Dropping the [`Dataplane`] detaches the programs from every interface (aya removes its
//! links on drop); links are bpf_link file descriptors, so even a killed daemon leaves no
//! program attached.
use std::{
    os::fd::AsFd,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{anyhow, bail, Context, Result};
use aya::{
    maps::{lpm_trie::Key, DevMapHash, HashMap, IterableMap, LpmTrie, Map, MapData, PerCpuArray},
    programs::{SchedClassifier, Xdp},
    Ebpf, EbpfLoader,
};
use lb_common::{
    acl_mode, counter, AclV4, AclV6, FlowKey, FlowValue, FrontendKey, FrontendPolicy, SpliceEntry,
    ACL_ID_BITS, FAMILY_V4, FAMILY_V6, MAP_ACL_V4, MAP_ACL_V6, MAP_COUNTERS, MAP_EGRESS, MAP_FLOWS,
    MAP_FRONTENDS, MAP_SPLICE, PROGRAM_TC, PROGRAM_XDP,
};
use serde::{Deserialize, Serialize};

pub use crate::attach::{Attachment, XdpModeChoice, XdpUse};
use crate::{
    map_handles::MapHandles,
    attach, pin,
    snapshot::{AclMode, Snapshot},
};

/// The XDP object built by build.rs; public so that the packet fixture tests
/// (tests/xdp_fixtures.rs) load the very program the daemon attaches.
pub static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-xdp.o"));

/// Kernel ids of the program and maps, so that other processes (`lb-user stats`) can open
/// them from any namespace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KernelIds {
    /// The XDP program's id (0 when no interface has XDP).
    pub program: u32,
    #[serde(default)]
    pub tc_program: u32,
    pub flows: u32,
    pub counters: u32,
    pub frontends: u32,
    pub acl_v4: u32,
    pub acl_v6: u32,
    #[serde(default)]
    pub splice: u32,
}

pub struct Dataplane {
    ebpf: Ebpf,
    pub flows: Arc<FlowTable>,
    frontends: HashMap<MapData, FrontendKey, FrontendPolicy>,
    acl_v4: LpmTrie<MapData, AclV4, u8>,
    acl_v6: LpmTrie<MapData, AclV6, u8>,
    counters: PerCpuArray<MapData, u64>,
    /// Taken by the hand-off (`take_splice`).
    splice: Option<HashMap<MapData, FlowKey, SpliceEntry>>,
    /// The interfaces XDP may redirect handed-off frames to.
    _egress: DevMapHash<MapData>,
    applied: AppliedPolicy,
    next_acl_id: u32,
    pub attachments: Vec<Attachment>,
    pub ids: KernelIds,
    pin_dir: Option<PathBuf>,
    _pinned_links: Vec<aya::programs::links::PinnedLink>,
}

#[derive(Default)]
struct AppliedPolicy {
    frontends: std::collections::HashMap<FrontendKey, FrontendPolicy>,
    acl_v4: Vec<Key<AclV4>>,
    acl_v6: Vec<Key<AclV6>>,
}

impl Dataplane {
    /// With `pin_dir`, the splice map and the links are pinned there (and adopted from there
    /// when a previous daemon left them): handed-off flows survive a restart.
    pub fn load_and_attach(ifaces: &[String], xdp_use: XdpUse, mode: XdpModeChoice, pin_dir: Option<&Path>) -> Result<Self> {
        let mut loader = EbpfLoader::new();
        let splice_pin = pin_dir.map(|dir| dir.join(MAP_SPLICE));
        if let (Some(dir), Some(path)) = (pin_dir, &splice_pin) {
            pin::prepare(dir)?;
            loader.map_pin_path(MAP_SPLICE, path.as_path());
        }
        let mut ebpf = loader.load(XDP_OBJECT).context("loading the kernel object")?;
        let mut attachments: Vec<Attachment> = ifaces.iter().map(|iface| Attachment { iface: iface.clone(), tc: false, xdp: None }).collect();
        let mut pinned_links = Vec::new();

        // tc first: XDP leaves to it every frame it does not splice.
        let tc: &mut SchedClassifier = ebpf
            .program_mut(PROGRAM_TC)
            .ok_or_else(|| anyhow!("program {PROGRAM_TC} missing from the object"))?
            .try_into()?;
        tc.load().map_err(|e| anyhow!("the verifier refused the tc program: {e:#?}"))?;
        let tc_program_id = tc.info()?.id();
        for attachment in &mut attachments {
            let iface = attachment.iface.as_str();
            attachment.tc = true;
            if let Some(dir) = pin_dir {
                if pin::adopt_tc_link(tc, dir, iface)? {
                    tracing::info!(iface, "tc program swapped into the link a previous daemon pinned");
                    continue;
                }
            }
            let link = attach::attach_tc(tc, iface)?;
            tracing::info!(iface, "tc program attached (ingress)");
            if let Some(dir) = pin_dir {
                pinned_links.push(pin::pin_tc_link(tc, link, dir, iface)?);
            }
        }

        let xdp: &mut Xdp = ebpf
            .program_mut(PROGRAM_XDP)
            .ok_or_else(|| anyhow!("program {PROGRAM_XDP} missing from the object"))?
            .try_into()?;
        xdp.load().map_err(|e| anyhow!("the verifier refused the XDP program: {e:#?}"))?;
        let program_id = xdp.info()?.id();
        for attachment in &mut attachments {
            let iface = attachment.iface.as_str();
            if !xdp_use.on(iface) {
                if let Some(dir) = pin_dir {
                    // An XDP link an older daemon pinned here: tc now serves the interface.
                    std::fs::remove_file(pin::link_path(dir, iface)).ok();
                }
                tracing::info!(iface, "no XDP on this interface (virtual, or --xdp never): tc alone");
                continue;
            }
            if let Some(dir) = pin_dir {
                if pin::adopt_link(xdp, dir, iface)? {
                    tracing::info!(iface, "XDP program swapped into the link a previous daemon pinned");
                    attachment.xdp = Some(mode);
                    continue;
                }
            }
            let (used, link) = attach::attach_xdp(xdp, iface, mode)?;
            tracing::info!(iface, mode = ?used, "XDP program attached");
            attachment.xdp = Some(used);
            if let Some(dir) = pin_dir {
                pinned_links.push(pin::pin_link(xdp, link, dir, iface)?);
            }
        }
        let mut take = |name: &str| ebpf.take_map(name).ok_or_else(|| anyhow!("map {name} missing from the object"));
        let flows: HashMap<MapData, FlowKey, FlowValue> = take(MAP_FLOWS)?.try_into()?;
        let frontends: HashMap<MapData, FrontendKey, FrontendPolicy> = take(MAP_FRONTENDS)?.try_into()?;
        let acl_v4: LpmTrie<MapData, AclV4, u8> = take(MAP_ACL_V4)?.try_into()?;
        let acl_v6: LpmTrie<MapData, AclV6, u8> = take(MAP_ACL_V6)?.try_into()?;
        let counters: PerCpuArray<MapData, u64> = take(MAP_COUNTERS)?.try_into()?;
        let splice: HashMap<MapData, FlowKey, SpliceEntry> = take(MAP_SPLICE)?.try_into()?;
        let mut egress: DevMapHash<MapData> = take(MAP_EGRESS)?.try_into()?;
        for iface in ifaces.iter().filter(|iface| xdp_use.on(iface)) {
            let index = nix::net::if_::if_nametoindex(iface.as_str()).with_context(|| format!("interface {iface}"))?;
            egress.insert(index, index, None, 0).with_context(|| format!("adding {iface} to the egress devmap"))?;
        }
        let ids = KernelIds {
            program: program_id,
            tc_program: tc_program_id,
            flows: map_id(flows.map())?,
            counters: map_id(counters.map())?,
            frontends: map_id(frontends.map())?,
            acl_v4: map_id(acl_v4.map())?,
            acl_v6: map_id(acl_v6.map())?,
            splice: map_id(splice.map())?,
        };
        Ok(Self {
            ebpf,
            flows: Arc::new(FlowTable { map: MapHandles::per_cpu(flows)? }),
            frontends,
            acl_v4,
            acl_v6,
            counters,
            splice: Some(splice),
            _egress: egress,
            applied: AppliedPolicy::default(),
            next_acl_id: 1,
            attachments,
            ids,
            pin_dir: pin_dir.map(Path::to_path_buf),
            _pinned_links: pinned_links,
        })
    }

    /// Writes the frontends' listening addresses and source ACLs of a snapshot.
    ///
    /// Each apply writes its ACL entries under fresh ACL ids before switching the frontends
    /// to them, then deletes the previous entries: a SYN is always judged by one whole
    /// configuration, never a mix.
    pub fn apply(&mut self, snapshot: &Snapshot) -> Result<()> {
        let mut next = AppliedPolicy::default();
        let written = self.write_policy(snapshot, &mut next);
        if let Err(e) = written {
            self.roll_back(&next);
            return Err(e);
        }
        let previous = std::mem::replace(&mut self.applied, next);
        for key in previous.frontends.keys().filter(|k| !self.applied.frontends.contains_key(k)) {
            self.frontends.remove(key).ok();
        }
        self.remove_acl_entries(&previous);
        Ok(())
    }

    /// Writes the ACL entries of every frontend, then the frontends' policies, recording in
    /// `next` what it wrote so far.
    fn write_policy(&mut self, snapshot: &Snapshot, next: &mut AppliedPolicy) -> Result<()> {
        let mut policies = Vec::new();
        for frontend in &snapshot.frontends {
            if frontend.ports.is_empty() {
                continue;
            }
            let acl_id = self.next_acl_id;
            self.next_acl_id = self.next_acl_id.wrapping_add(1).max(1);
            let mode = match frontend.acl.mode {
                AclMode::None => acl_mode::NONE,
                AclMode::Allow => acl_mode::ALLOW,
                AclMode::Deny => acl_mode::DENY,
            };
            for net in &frontend.acl.nets {
                let id = acl_id.to_be_bytes();
                match net {
                    ipnet::IpNet::V4(v4) => {
                        let key = Key::new(ACL_ID_BITS + u32::from(v4.prefix_len()), AclV4 { acl_id: id, addr: v4.network().octets() });
                        self.acl_v4.insert(&key, 1, 0).with_context(|| format!("ACL entry {net} of frontend {}", frontend.id))?;
                        next.acl_v4.push(key);
                    }
                    ipnet::IpNet::V6(v6) => {
                        let key = Key::new(ACL_ID_BITS + u32::from(v6.prefix_len()), AclV6 { acl_id: id, addr: v6.network().octets() });
                        self.acl_v6.insert(&key, 1, 0).with_context(|| format!("ACL entry {net} of frontend {}", frontend.id))?;
                        next.acl_v6.push(key);
                    }
                }
            }
            let policy = FrontendPolicy { frontend_id: frontend.id, acl_id, acl_mode: mode, _pad: [0; 7] };
            policies.extend(frontend_keys(&frontend.addresses, &frontend.ports).into_iter().map(|key| (key, policy, frontend.id)));
        }
        // Only now, with every ACL entry in place, do frontends switch to the new ones.
        for (key, policy, frontend_id) in policies {
            next.frontends.insert(key, policy);
            self.frontends.insert(key, policy, 0).with_context(|| format!("frontend {frontend_id} policy"))?;
        }
        Ok(())
    }

    /// Undoes a partly written `next`: the previous policies come back, so a SYN is never
    /// judged by half a configuration.
    fn roll_back(&mut self, next: &AppliedPolicy) {
        for key in next.frontends.keys() {
            match self.applied.frontends.get(key) {
                Some(previous) => self.frontends.insert(key, previous, 0).ok(),
                None => self.frontends.remove(key).ok(),
            };
        }
        self.remove_acl_entries(next);
    }

    fn remove_acl_entries(&mut self, policy: &AppliedPolicy) {
        for key in &policy.acl_v4 {
            self.acl_v4.remove(key).ok();
        }
        for key in &policy.acl_v6 {
            self.acl_v6.remove(key).ok();
        }
    }

    /// The splice map, for the hand-off (once).
    pub fn take_splice(&mut self) -> Option<HashMap<MapData, FlowKey, SpliceEntry>> {
        self.splice.take()
    }

    pub fn counters(&self) -> Result<Counters> {
        Counters::read(&self.counters)
    }

    /// Detaches from every interface now (dropping does the same, silently). With
    /// `keep_flows` and a pin directory, the pinned links and splice map stay: the flows the
    /// XDP program carries go on, and the next daemon adopts them.
    pub fn detach(mut self, keep_flows: bool) {
        if let Some(dir) = &self.pin_dir {
            if keep_flows {
                tracing::info!(dir = %dir.display(), "handed-off flows stay with the XDP program (pinned) until the next daemon adopts them");
                return;
            }
            pin::remove_all(dir);
        }
        if let Some(program) = self.ebpf.program_mut(PROGRAM_XDP) {
            if let Ok(xdp) = <&mut Xdp>::try_from(program) {
                if let Err(e) = xdp.unload() {
                    tracing::warn!(error = %e, "detaching the XDP program");
                }
            }
        }
        if let Some(program) = self.ebpf.program_mut(PROGRAM_TC) {
            if let Ok(tc) = <&mut SchedClassifier>::try_from(program) {
                if let Err(e) = tc.unload() {
                    tracing::warn!(error = %e, "detaching the tc program");
                }
            }
        }
        tracing::info!("kernel programs detached");
    }
}

fn map_id(map: &MapData) -> Result<u32> {
    Ok(map.info()?.id())
}

fn frontend_keys(addresses: &[IpAddr], ports: &[u16]) -> Vec<FrontendKey> {
    let wildcard = [IpAddr::from([0u8; 4]), IpAddr::from([0u8; 16])];
    let addrs: &[IpAddr] = if addresses.is_empty() { &wildcard } else { addresses };
    let mut keys = Vec::with_capacity(addrs.len() * ports.len());
    for addr in addrs {
        let (bytes, family) = addr_bytes(*addr);
        for port in ports {
            keys.push(FrontendKey { addr: bytes, port: port.to_be(), family, _pad: 0 });
        }
    }
    keys
}

/// Our 16-byte address form: IPv4 in the first four bytes (IPv4-mapped IPv6 counts as IPv4,
/// since that is what the packet carries).
pub fn addr_bytes(addr: IpAddr) -> ([u8; 16], u8) {
    let mut out = [0u8; 16];
    match lb_core::routing::canonical(addr) {
        IpAddr::V4(v4) => {
            out[..4].copy_from_slice(&v4.octets());
            (out, FAMILY_V4)
        }
        IpAddr::V6(v6) => (v6.octets(), FAMILY_V6),
    }
}

pub fn bytes_addr(bytes: &[u8; 16], family: u8) -> IpAddr {
    if family == FAMILY_V4 {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        IpAddr::from(*bytes)
    }
}

/// The connections the daemon pinned, shared by every connection task.
pub struct FlowTable {
    // Written by every classified connection: several handles, no lock they all share.
    map: MapHandles<FlowKey, FlowValue>,
}

/// One end of a proxied connection, as the host sees it.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    pub remote: std::net::SocketAddr,
    pub local: std::net::SocketAddr,
}

impl Endpoint {
    fn key(&self) -> FlowKey {
        let (remote_addr, family) = addr_bytes(self.remote.ip());
        let (local_addr, _) = addr_bytes(self.local.ip());
        FlowKey { remote_addr, local_addr, remote_port: self.remote.port().to_be(), local_port: self.local.port().to_be(), family, _pad: [0; 3] }
    }
}

impl FlowTable {
    /// The last TSval the XDP program saw from the remote end of `key`.
    pub fn peer_tsval(&self, key: &FlowKey) -> Option<u32> {
        self.map.with(|map| map.get(key, 0).ok()).filter(|v| v.tsval_seen != 0).map(|v| v.peer_tsval)
    }

    /// How far (sequence number just past the payload) the program let data through to
    /// the socket of this flow; None before any data.
    pub fn delivered_end(&self, key: &FlowKey) -> Option<u32> {
        self.map.with(|map| map.get(key, 0).ok()).filter(|v| v.data_seen != 0).map(|v| v.data_end)
    }

    /// Records a classified connection from both ends; the entries go when the guard drops.
    pub fn pin(self: &Arc<Self>, client: Endpoint, server: Endpoint, value: FlowValue) -> Result<FlowPin> {
        let keys = [client.key(), server.key()];
        let sides = [lb_common::side::CLIENT, lb_common::side::SERVER];
        self.map.with(|map| -> Result<()> {
            for (key, side) in keys.iter().zip(sides) {
                map.insert(key, FlowValue { side, ..value }, 0).context("writing the flow map")?;
            }
            Ok(())
        })?;
        Ok(FlowPin { table: Arc::clone(self), keys })
    }
}

pub struct FlowPin {
    table: Arc<FlowTable>,
    keys: [FlowKey; 2],
}

impl Drop for FlowPin {
    fn drop(&mut self) {
        self.table.map.with(|map| {
            for key in &self.keys {
                // Already gone only if the LRU evicted it; nothing to undo then.
                map.remove(key).ok();
            }
        });
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counters {
    pub passed: u64,
    pub acl_dropped: u64,
    pub flow_packets: u64,
    pub flow_bytes: u64,
    pub unparsed: u64,
    #[serde(default)]
    pub spliced_packets: u64,
    #[serde(default)]
    pub spliced_bytes: u64,
    #[serde(default)]
    pub frozen_dropped: u64,
    #[serde(default)]
    pub fib_failed: u64,
    #[serde(default)]
    pub splice_errors: u64,
    #[serde(default)]
    pub xdp_deferred: u64,
    #[serde(default)]
    pub rst_out_of_window: u64,
    #[serde(default)]
    pub neigh_resolved: u64,
}

impl Counters {
    fn read(array: &PerCpuArray<MapData, u64>) -> Result<Self> {
        let sum = |index: u32| -> Result<u64> { Ok(array.get(&index, 0)?.iter().sum()) };
        Ok(Self {
            passed: sum(counter::PASSED)?,
            acl_dropped: sum(counter::ACL_DROPPED)?,
            flow_packets: sum(counter::FLOW_PACKETS)?,
            flow_bytes: sum(counter::FLOW_BYTES)?,
            unparsed: sum(counter::UNPARSED)?,
            spliced_packets: sum(counter::SPLICED_PACKETS)?,
            spliced_bytes: sum(counter::SPLICED_BYTES)?,
            frozen_dropped: sum(counter::FROZEN_DROPPED)?,
            fib_failed: sum(counter::FIB_FAILED)?,
            splice_errors: sum(counter::SPLICE_ERRORS)?,
            xdp_deferred: sum(counter::XDP_DEFERRED)?,
            rst_out_of_window: sum(counter::RST_OUT_OF_WINDOW)?,
            neigh_resolved: sum(counter::NEIGH_RESOLVED)?,
        })
    }
}

/// The kernel programs' counter array, for reading at any time (scrapes).
pub struct KernelCounters(PerCpuArray<MapData, u64>);

impl KernelCounters {
    /// A second handle on the loaded array, through a duplicated descriptor: reopening it by
    /// id would need CAP_SYS_ADMIN, which the systemd unit does not grant.
    pub fn of(dataplane: &Dataplane) -> Result<Self> {
        let fd = dataplane.counters.map().fd().as_fd().try_clone_to_owned().context("duplicating the counters map's descriptor")?;
        let map = MapData::from_fd(fd).context("opening the counters map")?;
        Ok(Self(Map::PerCpuArray(map).try_into()?))
    }

    /// Every counter summed over the CPUs.
    pub fn read(&self) -> Result<Counters> {
        Counters::read(&self.0)
    }

    /// Every counter summed over the CPUs, under its name in `lb_common::counter::NAMES`.
    pub fn by_name(&self) -> Result<Vec<(&'static str, u64)>> {
        (0..counter::COUNT).map(|index| Ok((counter::NAMES[index as usize], self.0.get(&index, 0)?.iter().sum()))).collect()
    }
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
    pub handoff: Option<crate::handoff::stats::HandoffReport>,
}

/// Reads counters and flows of a running daemon through the kernel ids it published.
pub fn read_stats(ids: &KernelIds) -> Result<StatsReport> {
    let counters: PerCpuArray<MapData, u64> = Map::PerCpuArray(MapData::from_id(ids.counters).context("opening the counters map")?).try_into()?;
    let flows: HashMap<MapData, FlowKey, FlowValue> = Map::LruHashMap(MapData::from_id(ids.flows).context("opening the flow map")?).try_into()?;
    let mut report = Vec::new();
    for entry in flows.iter() {
        let (key, value) = match entry {
            Ok(kv) => kv,
            // An entry removed while we iterate is not an error.
            Err(_) => continue,
        };
        let remote = std::net::SocketAddr::new(bytes_addr(&key.remote_addr, key.family), u16::from_be(key.remote_port));
        let local = std::net::SocketAddr::new(bytes_addr(&key.local_addr, key.family), u16::from_be(key.local_port));
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
        bail!("no program id published");
    }
    let spliced = if ids.splice == 0 { Vec::new() } else { read_spliced(ids.splice)? };
    Ok(StatsReport { counters: Counters::read(&counters)?, flows: report, spliced, handoff: None })
}

fn read_spliced(id: u32) -> Result<Vec<SplicedReport>> {
    let map: HashMap<MapData, FlowKey, SpliceEntry> = Map::HashMap(MapData::from_id(id).context("opening the splice map")?).try_into()?;
    let socket = |addr: &[u8; 16], port: u16, family: u8| std::net::SocketAddr::new(bytes_addr(addr, family), u16::from_be(port)).to_string();
    Ok(map
        .iter()
        .filter_map(Result::ok)
        .map(|(key, e)| SplicedReport {
            from: socket(&key.remote_addr, key.remote_port, key.family),
            to: socket(&key.local_addr, key.local_port, key.family),
            rewritten_from: socket(&e.src_addr, e.src_port, e.family),
            rewritten_to: socket(&e.dst_addr, e.dst_port, e.family),
            state: if e.state == lb_common::splice_state::LIVE { "live" } else { "frozen" }.to_string(),
            fin_seen: e.seen & lb_common::splice_seen::FIN != 0,
            rst_seen: e.seen & lb_common::splice_seen::RST != 0,
            packets: e.packets,
            bytes: e.bytes,
        })
        .collect())
}
