//! [`HealthChecker`]: one probe task per server with `probe: true`, kept in step with the
//! applied snapshot. A task whose settings did not change keeps running across refreshes
//! (and so keeps its count of consecutive failures); a changed one is restarted; a removed
//! one is aborted, and a server whose probing was switched off is back to "up, unchecked".
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio::{runtime::Handle, task::JoinHandle};
use tracing::{info, warn};

use super::{
    spec::ProbeSpec,
    task::{self, Labels, Live},
};
use crate::{dataplane::server_state::ServerRuntime, dataplane::snapshot::Snapshot};
use lb_core::model::Probe;

/// What a task's probing depends on; a change restarts the task.
#[derive(Debug, Clone, PartialEq)]
struct TaskKey {
    farm_id: u32,
    probe: Probe,
    address: SocketAddr,
    ssl: bool,
    alpn: Vec<Vec<u8>>,
}

struct ProbeTask {
    key: TaskKey,
    runtime: Arc<ServerRuntime>,
    live: Live,
    join: JoinHandle<()>,
}

impl ProbeTask {
    /// Stops the task; it records nothing once this returns.
    fn stop(&self) {
        *self.live.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.join.abort();
    }
}

/// Probe tasks by server id (ids are unique across farms).
pub struct HealthChecker {
    handle: Option<Handle>,
    tasks: Mutex<HashMap<u32, ProbeTask>>,
}

impl Default for HealthChecker {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthChecker {
    /// Tasks run on the tokio runtime current here, or else on the one current at the
    /// first `reconcile`.
    pub fn new() -> Self {
        Self { handle: Handle::try_current().ok(), tasks: Mutex::default() }
    }

    /// Brings the probe tasks in line with `snapshot`.
    pub fn reconcile(&self, snapshot: &Snapshot) {
        let Some(handle) = self.handle.clone().or_else(|| Handle::try_current().ok()) else {
            warn!("no tokio runtime: health probes are not started");
            return;
        };
        let mut wanted = HashMap::new();
        for farm in snapshot.farms.values() {
            let probe = farm.probe.clone().unwrap_or_default();
            for server in farm.servers.iter().filter(|s| s.probe) {
                let key = TaskKey { farm_id: farm.id, probe: probe.clone(), address: server.address, ssl: server.ssl, alpn: farm.probe_alpn.clone() };
                let labels = Labels { farm_id: farm.id, farm: farm.name.clone(), server_id: server.id, server: server.name.clone() };
                wanted.insert(server.id, (key, labels, Arc::clone(&server.runtime), Arc::clone(server)));
            }
        }
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|id, task| {
            let keep = wanted.get(id).is_some_and(|(key, _, runtime, _)| *key == task.key && Arc::ptr_eq(runtime, &task.runtime));
            if !keep {
                task.stop();
                if !wanted.contains_key(id) {
                    task.runtime.clear_probe();
                    info!(server_id = id, "health probe stopped");
                }
            }
            keep
        });
        for (id, (key, labels, runtime, server)) in wanted {
            if tasks.contains_key(&id) {
                continue;
            }
            let spec = ProbeSpec::new(key.farm_id, &key.probe, &server, &key.alpn);
            if let Err(e) = &spec {
                warn!(farm_id = labels.farm_id, server_id = id, error = %e, "health probe can not be set up");
            }
            let live: Live = Arc::new(Mutex::new(true));
            let join = handle.spawn(task::run(spec, Arc::clone(&runtime), labels, Arc::clone(&live)));
            tasks.insert(id, ProbeTask { key, runtime, live, join });
        }
    }

    /// Stops every probe (the daemon is stopping); health states are left as they are.
    pub fn shutdown(&self) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        for task in tasks.values() {
            task.stop();
        }
        tasks.clear();
    }

    /// The id of the task probing `server_id`, to tell a kept task from a restarted one.
    pub fn task_id(&self, server_id: u32) -> Option<tokio::task::Id> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).get(&server_id).map(|t| t.join.id())
    }
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        self.shutdown();
    }
}
