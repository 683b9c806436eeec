//! The flow map (`LB_FLOWS`): the connections the daemon pinned, which the kernel programs
//! count and whose peers' last TSval (and delivered data) the hand-off reads.
use std::{net::SocketAddr, sync::Arc};

use aya::maps::MapError;
use lb_common::{maps::FlowsMap, FlowKey, FlowValue};
use lb_core::splice::endpoints_key;

use crate::{
    kernel::kernel_map::{Handle, KernelMapError},
    kernel::map_handles::MapHandles,
};

/// Writing a connection's entries failed.
#[derive(Debug, thiserror::Error)]
#[error("writing the flow map")]
pub struct FlowWriteError(#[source] pub MapError);

/// The connections the daemon pinned, shared by every connection task.
pub struct FlowTable {
    // Written by every classified connection: several handles, no lock they all share.
    map: MapHandles<FlowsMap>,
}

/// One end of a proxied connection, as the host sees it.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    pub remote: SocketAddr,
    pub local: SocketAddr,
}

impl Endpoint {
    fn key(&self) -> FlowKey {
        endpoints_key(self.remote, self.local)
    }
}

impl FlowTable {
    /// One handle per CPU (twice over) on the loaded flow map.
    pub fn new(map: Handle<FlowsMap>) -> Result<Self, KernelMapError> {
        Ok(Self { map: MapHandles::per_cpu(map)? })
    }

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
    pub fn pin(self: &Arc<Self>, client: Endpoint, server: Endpoint, value: FlowValue) -> Result<FlowPin, FlowWriteError> {
        let keys = [client.key(), server.key()];
        let sides = [lb_common::side::CLIENT, lb_common::side::SERVER];
        self.map.with(|map| {
            for (key, side) in keys.iter().zip(sides) {
                map.insert(key, FlowValue { side, ..value }, 0).map_err(FlowWriteError)?;
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
