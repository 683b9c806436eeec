//! Loading and attaching the kernel programs (tc on the ingress and egress of every interface, XDP where it fits:
//! attach.rs), and the maps the daemon keeps of them: the flow map (flow_table.rs), the
//! frontends' ACL policy (kernel_policy.rs), the counters, and the splice map (taken by the
//! hand-off). Every map is opened through its declaration in `lb_common::maps`.
//!
//! Dropping the [`Dataplane`] detaches the programs from every interface (aya removes its
//! links on drop); links are bpf_link file descriptors, so even a killed daemon leaves no
//! program attached.
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use aya::{
    maps::{MapData, MapError, RingBuf},
    programs::{Program, ProgramError, SchedClassifier, Xdp},
    Ebpf, EbpfError, EbpfLoader,
};
use lb_common::{
    acl_mode,
    maps::{CountersMap, EgressMap, FlowsMap, MapDecl, SpliceMap, SpliceNotesMap},
    Counter, PROGRAM_TC, PROGRAM_TC_EGRESS, PROGRAM_XDP,
};
use serde::{Deserialize, Serialize};

use crate::{
    dataplane::snapshot::{AclMode, Snapshot},
    kernel::attach::{self, AttachError},
    kernel::kernel_map::{self, Handle, KernelMapError},
    kernel::kernel_policy::{FrontendAcl, KernelPolicy, KernelPolicyMaps, PolicyError},
    kernel::pin::{self, PinError},
    kernel::xdp_egress,
};

// Where other modules have always found them (serve.rs, proxy.rs, handoff/translate.rs).
pub use crate::kernel::attach::{Attachment, XdpModeChoice, XdpUse};
pub use crate::kernel::flow_table::{Endpoint, FlowPin, FlowTable};
pub use lb_common::addr::{addr_bytes, bytes_addr};

/// The XDP object built by build.rs; public so that the packet fixture tests
/// (tests/xdp_fixtures.rs) load the very program the daemon attaches.
pub static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-xdp.o"));

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("loading the kernel object")]
    Load(#[source] EbpfError),
    #[error("program {name} missing from the object")]
    MissingProgram { name: &'static str },
    #[error("program {name}")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    /// The verifier's log is in the message: it is what says why.
    #[error("the verifier refused the {hook} program: {source:#?}")]
    Verifier {
        hook: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error(transparent)]
    Map(#[from] KernelMapError),
    #[error(transparent)]
    Attach(#[from] AttachError),
    /// Boxed: pinning errors carry the most context and would make every result large.
    #[error(transparent)]
    Pin(Box<PinError>),
    #[error("interface {iface}")]
    Interface {
        iface: String,
        #[source]
        source: nix::Error,
    },
}

impl From<PinError> for BpfError {
    fn from(e: PinError) -> Self {
        BpfError::Pin(Box::new(e))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("reading counter {counter} of map {map}", map = CountersMap::NAME)]
pub struct CounterReadError {
    pub counter: &'static str,
    #[source]
    pub source: MapError,
}

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
    /// The devmap of the interfaces XDP may send handed-off frames out of.
    #[serde(default)]
    pub egress: u32,
}

pub struct Dataplane {
    ebpf: Ebpf,
    pub flows: Arc<FlowTable>,
    policy_maps: KernelPolicyMaps,
    policy: KernelPolicy,
    counters: Handle<CountersMap>,
    /// Taken by the hand-off (`take_splice`).
    splice: Option<Handle<SpliceMap>>,
    /// Taken by the reaper (`take_splice_notes`).
    splice_notes: Option<RingBuf<MapData>>,
    /// The interfaces XDP may redirect handed-off frames to.
    egress: Handle<EgressMap>,
    /// Keeps `egress` equal to the XDP interfaces that can take XDP frames now.
    _egress_watch: Option<xdp_egress::EgressWatch>,
    pub attachments: Vec<Attachment>,
    pub ids: KernelIds,
    pin_dir: Option<PathBuf>,
    _pinned_links: Vec<aya::programs::links::PinnedLink>,
}

/// The program `name` of the object, as the type it must have.
fn program<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P, BpfError>
where
    &'a mut P: TryFrom<&'a mut Program, Error = ProgramError>,
{
    let program = ebpf.program_mut(name).ok_or(BpfError::MissingProgram { name })?;
    program.try_into().map_err(|source| BpfError::Program { name, source })
}

/// Loads a tc program (ingress, or with `egress` the egress one) and attaches it to every
/// interface, adopting the links a previous daemon pinned; returns the program's id.
fn attach_tc_everywhere(
    ebpf: &mut Ebpf,
    attachments: &mut [Attachment],
    pin_dir: Option<&Path>,
    pinned_links: &mut Vec<aya::programs::links::PinnedLink>,
    egress: bool,
) -> Result<u32, BpfError> {
    let (name, direction) = if egress { (PROGRAM_TC_EGRESS, "egress") } else { (PROGRAM_TC, "ingress") };
    let tc: &mut SchedClassifier = program(ebpf, name)?;
    tc.load().map_err(|source| BpfError::Verifier { hook: if egress { "tc egress" } else { "tc" }, source })?;
    let id = tc.info().map_err(|source| BpfError::Program { name, source })?.id();
    for attachment in attachments {
        let iface = attachment.iface.as_str();
        attachment.tc = true;
        if let Some(dir) = pin_dir {
            if pin::adopt_tc_link(tc, dir, iface, egress)? {
                tracing::info!(iface, direction, "tc program swapped into the link a previous daemon pinned");
                continue;
            }
        }
        let link = attach::attach_tc(tc, iface, egress)?;
        tracing::info!(iface, direction, "tc program attached");
        if let Some(dir) = pin_dir {
            pinned_links.push(pin::pin_tc_link(tc, link, dir, iface, egress)?);
        }
    }
    Ok(id)
}

impl Dataplane {
    /// With `pin_dir`, the splice map and the links are pinned there (and adopted from there
    /// when a previous daemon left them): handed-off flows survive a restart.
    pub fn load_and_attach(ifaces: &[String], xdp_use: XdpUse, mode: XdpModeChoice, pin_dir: Option<&Path>) -> Result<Self, BpfError> {
        let mut loader = EbpfLoader::new();
        let splice_pin = pin_dir.map(|dir| dir.join(SpliceMap::NAME));
        if let (Some(dir), Some(path)) = (pin_dir, &splice_pin) {
            pin::prepare(dir)?;
            loader.map_pin_path(SpliceMap::NAME, path.as_path());
        }
        let mut ebpf = loader.load(XDP_OBJECT).map_err(BpfError::Load)?;
        let mut attachments: Vec<Attachment> = ifaces
            .iter()
            .map(|iface| Attachment { iface: iface.clone(), ifindex: nix::net::if_::if_nametoindex(iface.as_str()).unwrap_or(0), tc: false, xdp: None })
            .collect();
        let mut pinned_links = Vec::new();

        // tc first: XDP leaves to it every frame it does not splice.
        let tc_program_id = attach_tc_everywhere(&mut ebpf, &mut attachments, pin_dir, &mut pinned_links, false)?;
        attach_tc_everywhere(&mut ebpf, &mut attachments, pin_dir, &mut pinned_links, true)?;

        let xdp: &mut Xdp = program(&mut ebpf, PROGRAM_XDP)?;
        xdp.load().map_err(|source| BpfError::Verifier { hook: "XDP", source })?;
        let program_id = xdp.info().map_err(|source| BpfError::Program { name: PROGRAM_XDP, source })?.id();
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
        let flows = kernel_map::take::<FlowsMap>(&mut ebpf)?;
        let policy_maps = KernelPolicyMaps::take(&mut ebpf)?;
        let counters = kernel_map::take::<CountersMap>(&mut ebpf)?;
        let splice = kernel_map::take::<SpliceMap>(&mut ebpf)?;
        let splice_notes = kernel_map::take_ring::<SpliceNotesMap>(&mut ebpf)?;
        let mut egress = kernel_map::take::<EgressMap>(&mut ebpf)?;
        let xdp_ifaces = ifaces
            .iter()
            .filter(|iface| xdp_use.on(iface))
            .map(|iface| {
                Ok((iface.clone(), nix::net::if_::if_nametoindex(iface.as_str()).map_err(|source| BpfError::Interface { iface: iface.clone(), source })?))
            })
            .collect::<Result<Vec<_>, BpfError>>()?;
        let egress_watch = xdp_egress::admit(&mut egress, &xdp_ifaces)?;
        let [frontends, acl_v4, acl_v6] = policy_maps.ids()?;
        let ids = KernelIds {
            program: program_id,
            tc_program: tc_program_id,
            flows: kernel_map::id::<FlowsMap>(&flows)?,
            counters: kernel_map::id::<CountersMap>(&counters)?,
            frontends,
            acl_v4,
            acl_v6,
            splice: kernel_map::id::<SpliceMap>(&splice)?,
            egress: kernel_map::id::<EgressMap>(&egress)?,
        };
        Ok(Self {
            ebpf,
            flows: Arc::new(FlowTable::new(flows)?),
            policy_maps,
            policy: KernelPolicy::default(),
            counters,
            splice: Some(splice),
            splice_notes: Some(splice_notes),
            egress,
            _egress_watch: egress_watch,
            attachments,
            ids,
            pin_dir: pin_dir.map(Path::to_path_buf),
            _pinned_links: pinned_links,
        })
    }

    /// Writes the frontends' listening addresses and source ACLs of a snapshot; on error
    /// the previous ones stay in force (kernel_policy.rs).
    pub fn apply(&mut self, snapshot: &Snapshot) -> Result<(), PolicyError> {
        let frontends: Vec<FrontendAcl<'_>> = snapshot
            .frontends
            .iter()
            .map(|frontend| FrontendAcl {
                id: frontend.id,
                addresses: &frontend.addresses,
                ports: &frontend.ports,
                mode: match frontend.acl.mode {
                    AclMode::None => acl_mode::NONE,
                    AclMode::Allow => acl_mode::ALLOW,
                    AclMode::Deny => acl_mode::DENY,
                },
                nets: &frontend.acl.nets,
            })
            .collect();
        self.policy.apply(&mut self.policy_maps, &frontends)
    }

    /// The splice map, for the hand-off (once).
    pub fn take_splice(&mut self) -> Option<Handle<SpliceMap>> {
        self.splice.take()
    }

    /// The program's notes on splice entries, for the reaper (once).
    pub fn take_splice_notes(&mut self) -> Option<RingBuf<MapData>> {
        self.splice_notes.take()
    }

    pub fn counters(&self) -> Result<Counters, CounterReadError> {
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
        for name in [PROGRAM_TC, PROGRAM_TC_EGRESS] {
            if let Some(program) = self.ebpf.program_mut(name) {
                if let Ok(tc) = <&mut SchedClassifier>::try_from(program) {
                    if let Err(e) = tc.unload() {
                        tracing::warn!(program = name, error = %e, "detaching a tc program");
                    }
                }
            }
        }
        tracing::info!("kernel programs detached");
    }
}

macro_rules! counters_struct {
    ($($(#[$doc:meta])* $variant:ident $name:ident $help:literal,)*) => {
        /// The kernel programs' counters summed over the CPUs, one field per
        /// `lb_common::Counter`, named as the table names it (the `counters` object of
        /// `lb-user stats` and of the status page).
        #[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
        pub struct Counters {
            $($(#[$doc])* #[serde(default)] pub $name: u64,)*
        }

        impl Counters {
            pub fn get(&self, counter: Counter) -> u64 {
                match counter {
                    $(Counter::$variant => self.$name,)*
                }
            }

            fn set(&mut self, counter: Counter, value: u64) {
                match counter {
                    $(Counter::$variant => self.$name = value,)*
                }
            }
        }
    };
}

lb_common::with_counters!(counters_struct);

impl Counters {
    /// Every counter of `array`, summed over the CPUs.
    pub fn read(array: &Handle<CountersMap>) -> Result<Self, CounterReadError> {
        let mut counters = Self::default();
        for counter in Counter::ALL {
            counters.set(counter, summed(array, counter)?);
        }
        Ok(counters)
    }
}

fn summed(array: &Handle<CountersMap>, counter: Counter) -> Result<u64, CounterReadError> {
    let values = array.get(&counter.index(), 0).map_err(|source| CounterReadError { counter: counter.name(), source })?;
    Ok(values.iter().sum())
}

/// What the kernel programs report, for reading at any time (scrapes, stats): their counter
/// array and the devmap of the interfaces XDP sends out of.
pub struct KernelReadout(Handle<CountersMap>, Handle<EgressMap>);

impl KernelReadout {
    /// A second handle on the loaded array, through a duplicated descriptor: reopening it by
    /// id would need CAP_SYS_ADMIN, which the systemd unit does not grant.
    pub fn of(dataplane: &Dataplane) -> Result<Self, KernelMapError> {
        Ok(Self(kernel_map::duplicate::<CountersMap>(&dataplane.counters)?, kernel_map::duplicate::<EgressMap>(&dataplane.egress)?))
    }

    /// Every counter summed over the CPUs.
    pub fn read(&self) -> Result<Counters, CounterReadError> {
        Counters::read(&self.0)
    }

    /// One counter summed over the CPUs.
    pub fn get(&self, counter: Counter) -> Result<u64, CounterReadError> {
        summed(&self.0, counter)
    }

    /// The interfaces XDP sends handed-off frames out of now.
    pub fn xdp_egress(&self) -> Vec<String> {
        let name = |ifindex| nix::net::if_::if_indextoname(ifindex).ok().map(|name| name.to_string_lossy().into_owned());
        super::kernel_stats::xdp_egress(&self.1, name)
    }
}

#[cfg(test)]
mod tests {
    use lb_common::Counter;

    use super::Counters;

    #[test]
    fn counters_serialize_under_the_table_names_in_slot_order() {
        let mut counters = Counters::default();
        for counter in Counter::ALL {
            counters.set(counter, u64::from(counter.index()) + 1);
        }
        let json = serde_json::to_value(&counters).unwrap();
        let object = json.as_object().unwrap();
        assert_eq!(object.len(), Counter::NAMES.len());
        for counter in Counter::ALL {
            assert_eq!(object[counter.name()], u64::from(counter.index()) + 1, "{}", counter.name());
            assert_eq!(counters.get(counter), u64::from(counter.index()) + 1);
        }
        assert_eq!(serde_json::to_string(&counters).unwrap().find("\"passed\""), Some(1), "the first slot comes first");
    }

    #[test]
    fn counters_missing_from_older_output_read_as_zero() {
        let counters: Counters = serde_json::from_str(r#"{"passed": 3, "acl_dropped": 1}"#).unwrap();
        assert_eq!((counters.passed, counters.acl_dropped, counters.neigh_resolved), (3, 1, 0));
    }
}
