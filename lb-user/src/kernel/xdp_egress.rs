//! The devmap of the interfaces XDP may send handed-off frames out of (`LB_EGRESS`), kept
//! equal to those of our XDP interfaces that can take XDP frames right now (xdp_features.rs).
//! The XDP program leaves to tc every frame bound for an interface missing from it, and tc's
//! redirect takes the kernel's ordinary transmit path, which every device has: so a default
//! veth, whose peer has no GRO, still carries its flows, and a peer that turns GRO off in the
//! middle of a transfer costs that transfer the frames sent in the moment before the daemon
//! heard of it (retransmitted), never the flow.
use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use lb_common::maps::EgressMap;

use super::{
    kernel_map::{self, Handle, KernelMapError},
    xdp_features::{Change, Changes, DeviceFeatures, XdpFeatures},
};

/// How often the watcher looks at its stop flag while no notification comes.
const STOP_POLL: Duration = Duration::from_millis(500);

/// Our XDP interfaces by index, with their names for the logs and whether they are in the
/// devmap.
struct Egress {
    map: Handle<EgressMap>,
    ifaces: BTreeMap<u32, (String, bool)>,
}

impl Egress {
    /// Puts `ifindex` in the devmap or takes it out, as its features say; logs a change.
    fn follow(&mut self, device: DeviceFeatures) {
        let Some((name, admitted)) = self.ifaces.get_mut(&device.ifindex) else { return };
        let takes = device.takes_redirects();
        if takes == *admitted {
            return;
        }
        let result = if takes {
            self.map.insert(device.ifindex, device.ifindex, None, 0).map_err(|e| e.to_string())
        } else {
            self.map.remove(device.ifindex).map_err(|e| e.to_string())
        };
        match result {
            Ok(()) if takes => {
                *admitted = true;
                tracing::info!(iface = %name, "the interface now takes XDP frames (e.g. its veth peer turned GRO on): XDP sends handed-off frames out of it");
            }
            Ok(()) => {
                *admitted = false;
                tracing::warn!(iface = %name, "the interface no longer takes XDP frames (e.g. its veth peer turned GRO off): tc sends its handed-off frames");
            }
            Err(e) => tracing::warn!(iface = %name, error = %e, "updating the XDP egress devmap"),
        }
    }

    /// Asks the kernel for every interface's features again (after lost notifications).
    fn resync(&mut self, features: &mut XdpFeatures) {
        let indexes: Vec<u32> = self.ifaces.keys().copied().collect();
        for ifindex in indexes {
            match features.of(ifindex) {
                Ok(device) => self.follow(device),
                Err(e) => tracing::warn!(ifindex, error = %e, "reading an interface's XDP features"),
            }
        }
    }
}

/// Keeps the devmap in step with the kernel's notifications, on a thread of its own, until
/// dropped.
pub struct EgressWatch {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for EgressWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().ok();
        }
    }
}

/// Fills the devmap with those of `ifaces` (our XDP interfaces) that take XDP frames, and
/// keeps it so while the returned watch lives. A kernel without the netdev family (before
/// Linux 6.3) cannot tell: every XDP interface goes in, as it did before this check.
pub fn admit(map: &mut Handle<EgressMap>, ifaces: &[(String, u32)]) -> Result<Option<EgressWatch>, KernelMapError> {
    let mut features = match XdpFeatures::open() {
        Ok(Some(features)) => features,
        Ok(None) | Err(_) => {
            tracing::info!("the kernel does not report XDP features (netdev netlink family): every XDP interface may receive XDP-redirected frames");
            for (iface, index) in ifaces {
                if let Err(e) = map.insert(*index, *index, None, 0) {
                    tracing::warn!(iface, error = %e, "adding the interface to the XDP egress devmap: tc sends its handed-off frames");
                }
            }
            return Ok(None);
        }
    };
    let mut egress = Egress { map: kernel_map::duplicate::<EgressMap>(map)?, ifaces: BTreeMap::new() };
    for (iface, index) in ifaces {
        egress.ifaces.insert(*index, (iface.clone(), false));
        match features.of(*index) {
            Ok(device) if device.takes_redirects() => egress.follow(device),
            Ok(_) => tracing::warn!(
                iface,
                "the interface cannot take XDP frames (a veth whose peer has neither GRO nor an XDP program, a bridge, or a driver without ndo_xdp_xmit): tc sends the handed-off frames leaving through it"
            ),
            Err(e) => tracing::warn!(iface, error = %e, "reading the interface's XDP features: tc sends the handed-off frames leaving through it"),
        }
    }
    let changes = match features.changes(STOP_POLL) {
        Ok(Some(changes)) => changes,
        Ok(None) | Err(_) => {
            tracing::warn!("no notification of XDP feature changes: the XDP egress devmap keeps the interfaces' features of the start");
            return Ok(None);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let spawned = std::thread::Builder::new().name("lb-xdp-egress".into()).spawn({
        let stop = Arc::clone(&stop);
        move || watch(egress, features, changes, &stop)
    });
    match spawned {
        Ok(thread) => Ok(Some(EgressWatch { stop, thread: Some(thread) })),
        Err(e) => {
            tracing::warn!(error = %e, "starting the watch of XDP feature changes: the XDP egress devmap keeps the interfaces' features of the start");
            Ok(None)
        }
    }
}

fn watch(mut egress: Egress, mut features: XdpFeatures, mut changes: Changes, stop: &AtomicBool) {
    // A change between the first reading and the subscription would go unseen: read once more.
    egress.resync(&mut features);
    while !stop.load(Ordering::Relaxed) {
        match changes.wait() {
            Ok(Change::Devices(devices)) => devices.into_iter().for_each(|device| egress.follow(device)),
            Ok(Change::Nothing) => {}
            Ok(Change::Lost) => egress.resync(&mut features),
            Err(e) => {
                tracing::warn!(error = %e, "reading XDP feature notifications: the XDP egress devmap stays as it is");
                return;
            }
        }
    }
}
