//! Applying a configuration to traffic: validate and compile it, bind its listeners, write
//! its kernel policy, then swap the snapshot atomically. Either all of it takes effect or,
//! on the first error, none of it does. Connections already established keep the snapshot
//! they started with, so a refresh never moves them; it ends them only when it removes their
//! server and that server's `onMarkedDown` is `shutdown-sessions`.
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::{
    dataplane::listeners::{ListenError, Listeners},
    dataplane::proxy::Proxy,
    dataplane::server_state::Runtimes,
    dataplane::snapshot::Snapshot,
    health::HealthChecker,
    kernel::bpf::Dataplane,
    kernel::kernel_policy::PolicyError,
};
use lb_core::{error::ConfigError, model::ServiceConfig};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// The message carries the causes (the bind's error): callers show only `{e}`.
    #[error("{}", with_causes(.0))]
    Listen(ListenError),
    /// The message carries the causes too.
    #[error("writing the XDP policy: {}", with_causes(.0))]
    Kernel(PolicyError),
}

/// `error: cause: cause…`, the way anyhow's `{:#}` shows a chain.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

pub struct Applier {
    snapshot: Arc<ArcSwap<Snapshot>>,
    /// Health, live connections and stickiness by server and farm id, kept across applies.
    runtimes: Arc<Runtimes>,
    /// Probes the servers of the applied snapshot and marks them up or down.
    health: HealthChecker,
    proxy: Arc<Proxy>,
    // One apply at a time; the lock is never taken on the connection path.
    state: Mutex<ApplierState>,
    /// The configuration last applied, for those who follow it (the BGP announcer).
    applied: tokio::sync::watch::Sender<Arc<ServiceConfig>>,
}

struct ApplierState {
    listeners: Listeners,
    dataplane: Option<Dataplane>,
}

impl Applier {
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, proxy: Arc<Proxy>, dataplane: Option<Dataplane>) -> Self {
        Self {
            snapshot,
            runtimes: Arc::default(),
            health: HealthChecker::new(),
            proxy,
            state: Mutex::new(ApplierState { listeners: Listeners::default(), dataplane }),
            applied: tokio::sync::watch::Sender::new(Arc::default()),
        }
    }

    /// Follows the applied configuration: the current one, then each one applied after.
    pub fn applied(&self) -> tokio::sync::watch::Receiver<Arc<ServiceConfig>> {
        self.applied.subscribe()
    }

    /// Checks a configuration without applying it.
    pub fn validate(config: &ServiceConfig) -> Result<(), ConfigError> {
        lb_core::validate::validate(config)
    }

    pub fn apply(&self, config: &ServiceConfig) -> Result<(), ApplyError> {
        let snapshot = Arc::new(Snapshot::compile_in(config, &self.runtimes)?);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let prepared = state.listeners.prepare(&snapshot).map_err(ApplyError::Listen)?;
        if let Some(dp) = state.dataplane.as_mut() {
            dp.apply(&snapshot).map_err(ApplyError::Kernel)?;
        }
        self.snapshot.store(Arc::clone(&snapshot));
        state.listeners.commit(prepared, &self.proxy);
        let servers: std::collections::HashSet<u32> = snapshot.farms.values().flat_map(|f| f.servers.iter().map(|s| s.id)).collect();
        self.runtimes.retain(|id| servers.contains(&id), |id| snapshot.farms.contains_key(&id));
        let routes: std::collections::HashSet<u32> = snapshot.frontends.iter().flat_map(|f| f.routes.iter().map(|r| r.id)).collect();
        self.runtimes.retain_listeners(|id| snapshot.frontends.iter().any(|f| f.id == id), |id| routes.contains(&id));
        self.health.reconcile(&snapshot);
        self.applied.send_replace(Arc::new(config.clone()));
        Ok(())
    }

    pub fn listening(&self) -> Vec<std::net::SocketAddr> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).listeners.addresses()
    }

    pub fn current(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Closes every listener (the drain at shutdown); established connections go on.
    pub fn stop_listening(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).listeners.stop_all();
    }

    /// Stops listening and detaches the XDP program; with `keep_flows`, handed-off flows are
    /// left running in the XDP program (pinned) for the next daemon.
    pub fn shutdown(&self, keep_flows: bool) {
        self.health.shutdown();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.listeners.stop_all();
        if let Some(dp) = state.dataplane.take() {
            dp.detach(keep_flows);
        }
    }
}
