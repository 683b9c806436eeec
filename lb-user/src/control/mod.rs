//! The control plane behind the API: staged objects (create, read, update, delete, each one
//! store transaction, validated, counted as a pending change of its zone), refreshes that
//! compile a zone's staged configuration and apply it to traffic, and the tasks that follow
//! them. Traffic only ever follows an applied configuration.
pub mod config_file;
mod farms;
mod frontends;
mod refresh;
mod reload;
mod routes;
mod staged;

use std::{net::SocketAddr, sync::Arc};

use serde::Serialize;
use utoipa::ToSchema;

use crate::cluster::node::{Membership, NodeRecord};
use crate::dataplane::server_state::HealthReport;
use crate::{
    daemon::apply::{Applier, ApplyError},
    store::{Read, Store, StoreError, WriteTx},
};
use lb_core::{error::ConfigError, model::ServiceConfig, validate::ALL_ZONES};

pub use refresh::{blocking, REFRESH_ACTION};
pub use routes::{RouteStatus, RouteView};

/// Where applied configurations go: the daemon's [`Applier`], or a stand-in in tests.
pub trait Traffic: Send + Sync + 'static {
    fn apply(&self, config: &ServiceConfig) -> Result<(), ApplyError>;
    fn listening(&self) -> Vec<SocketAddr>;
    /// The health verdict of an applied server, when the daemon serves it.
    fn server_health(&self, _server_id: u32) -> Option<HealthReport> {
        None
    }
    /// Servers of the applied farms seen up, and down.
    fn servers_up_down(&self) -> (usize, usize) {
        (0, 0)
    }
}

impl Traffic for Applier {
    fn apply(&self, config: &ServiceConfig) -> Result<(), ApplyError> {
        Applier::apply(self, config)
    }
    fn listening(&self) -> Vec<SocketAddr> {
        Applier::listening(self)
    }
    fn server_health(&self, server_id: u32) -> Option<HealthReport> {
        let snapshot = self.current();
        snapshot.farms.values().flat_map(|f| &f.servers).find(|s| s.id == server_id).map(|s| s.runtime.report())
    }
    fn servers_up_down(&self) -> (usize, usize) {
        let snapshot = self.current();
        let up = snapshot.farms.values().flat_map(|f| &f.servers).filter(|s| s.runtime.is_up()).count();
        (up, snapshot.farms.values().map(|f| f.servers.len()).sum::<usize>() - up)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Invalid input, naming the object, its id and the field.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(Box<StoreError>),
    /// The shared store did not answer; nothing changed.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(_) => ControlError::Conflict(e.to_string()),
            StoreError::Unavailable(_) => ControlError::Unavailable(e.to_string()),
            e => ControlError::Store(Box::new(e)),
        }
    }
}

impl ControlError {
    pub(crate) fn missing(object: &str, id: u32) -> Self {
        ControlError::NotFound(format!("{object} {id} does not exist"))
    }
}

/// `GET /pendingChanges`: staged changes not yet applied, per zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PendingChange {
    pub zone: String,
    pub number: u64,
}

/// Counts of what a zone's applied configuration holds.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct AppliedCounts {
    pub frontends: usize,
    pub farms: usize,
    pub servers: usize,
    pub routes: usize,
    pub rules: usize,
}

/// `GET /status`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    pub service_name: String,
    /// The zone this daemon serves.
    pub zone: String,
    /// `ok` when traffic follows the staged configuration, `pendingChanges` otherwise,
    /// `storeUnreachable` while the shared store (etcd) does not answer.
    pub state: String,
    /// Staged changes of this daemon's zone not yet applied.
    pub pending_changes: u64,
    /// What traffic follows now.
    pub applied: AppliedCounts,
    /// Addresses the frontends listen on.
    pub listeners: Vec<String>,
    /// This node (`--node`).
    pub node: String,
    /// Where the configuration is kept, and whether it answers.
    pub store: StoreStatus,
}

/// `GET /status`'s `store`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreStatus {
    /// `embedded` (redb in --data-dir) or `etcd` (shared by the zone's nodes).
    pub kind: String,
    pub location: String,
    /// False while etcd does not answer: the node serves its last applied configuration and
    /// refuses changes (503).
    pub reachable: bool,
    /// The etcd revision of the applied configuration this node serves (etcd only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_revision: Option<i64>,
}

pub struct Control {
    store: Store,
    traffic: Arc<dyn Traffic>,
    service: String,
    /// The zones this service knows; the first is the daemon's own, the one it applies.
    zones: Vec<String>,
    /// One refresh at a time; the others wait in `todo`.
    refresh_lock: tokio::sync::Mutex<()>,
    /// Refresh tasks finished since start, by result (metrics).
    refreshes: RefreshCounts,
    /// This node's name (`--node`).
    node: String,
    /// This node's registration, when the store is shared by several nodes.
    membership: Option<Arc<Membership>>,
}

/// Refresh tasks finished since start.
#[derive(Debug, Default)]
pub struct RefreshCounts {
    pub done: std::sync::atomic::AtomicU64,
    pub error: std::sync::atomic::AtomicU64,
}

impl Control {
    /// A control plane over `store`; tasks a previous run left unfinished end in `error`.
    pub fn new(store: Store, traffic: Arc<dyn Traffic>, service: &str, zone: &str) -> Result<Self, ControlError> {
        Self::on_node(store, traffic, service, zone, "local", None)
    }

    /// The control plane of node `node`; with `membership`, one of several nodes sharing the
    /// store (etcd): refreshes are applied by every node of the zone (see `cluster::node`).
    pub fn on_node(
        store: Store,
        traffic: Arc<dyn Traffic>,
        service: &str,
        zone: &str,
        node: &str,
        membership: Option<Arc<Membership>>,
    ) -> Result<Self, ControlError> {
        let control = Self {
            store,
            traffic,
            service: service.to_string(),
            zones: vec![zone.to_string()],
            refresh_lock: tokio::sync::Mutex::new(()),
            refreshes: RefreshCounts::default(),
            node: node.to_string(),
            membership,
        };
        match control.end_interrupted_tasks() {
            // A node starting while etcd is down: its tasks stay as they are until a restart
            // that reaches etcd; nobody can read them meanwhile anyway.
            Err(ControlError::Unavailable(e)) => tracing::warn!(error = %e, "etcd is unreachable: tasks this node left unfinished stay so"),
            other => other?,
        }
        Ok(control)
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn membership(&self) -> Option<&Arc<Membership>> {
        self.membership.as_ref()
    }

    /// The etcd behind the store, when several nodes share it.
    pub fn store_shared(&self) -> Option<&crate::store::etcd::SharedEtcd> {
        self.store.shared()
    }

    /// The live nodes serving `zone`: those registered in etcd, or this daemon alone.
    pub fn nodes(&self, zone: &str) -> Result<Vec<NodeRecord>, ControlError> {
        let zones = self.zone_names()?;
        if !zones.iter().any(|z| z == zone) {
            return Err(ControlError::NotFound(format!("zone {zone:?} is not a zone of this service; it has {}", zones.join(", "))));
        }
        match &self.membership {
            Some(membership) => Ok(membership.nodes(zone)?),
            None => {
                let (up, down) = self.traffic.servers_up_down();
                Ok(vec![NodeRecord {
                    name: self.node.clone(),
                    zone: zone.to_string(),
                    state: "serving".into(),
                    applied_revision: 0,
                    failed: None,
                    servers_up: up,
                    servers_down: down,
                    since: String::new(),
                }])
            }
        }
    }

    /// Where the configuration is kept and whether it answers.
    pub fn store_status(&self) -> StoreStatus {
        match (self.store.shared(), &self.membership) {
            (Some(etcd), membership) => StoreStatus {
                kind: "etcd".into(),
                location: etcd.options().describe(),
                reachable: etcd.reachable() && !membership.as_ref().is_some_and(|m| m.lost()),
                applied_revision: membership.as_ref().map(|m| m.applied_revision()),
            },
            (None, _) => StoreStatus { kind: "embedded".into(), location: self.store.path().display().to_string(), reachable: true, applied_revision: None },
        }
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    /// The daemon's own zone.
    pub fn zone(&self) -> &str {
        &self.zones[0]
    }

    pub fn zones(&self) -> &[String] {
        &self.zones
    }

    /// `GET /zone`: this daemon's zone first, then (several nodes sharing etcd) the other
    /// zones that have live nodes.
    pub fn zone_names(&self) -> Result<Vec<String>, ControlError> {
        let mut names = self.zones.clone();
        if let Some(etcd) = self.store.shared() {
            for zone in crate::cluster::node::list_zones(etcd)? {
                if !names.contains(&zone) {
                    names.push(zone);
                }
            }
        }
        Ok(names)
    }

    /// Refresh tasks finished since start, by result.
    pub fn refreshes(&self) -> &RefreshCounts {
        &self.refreshes
    }

    /// Store write transactions since start (committed, aborted).
    pub fn store_writes(&self) -> &crate::store::WriteCounts {
        self.store.writes()
    }

    /// Health of a server in the daemon's own zone (`serverState`), if it is applied here.
    pub fn server_health(&self, server_id: u32) -> Option<HealthReport> {
        self.traffic.server_health(server_id)
    }

    /// Addresses the applied frontends listen on.
    pub fn listening(&self) -> Vec<SocketAddr> {
        self.traffic.listening()
    }

    pub fn pending_changes(&self) -> Result<Vec<PendingChange>, ControlError> {
        let counts = self.store.read(|tx| tx.pending())?;
        Ok(self.zones.iter().map(|zone| PendingChange { zone: zone.clone(), number: counts.get(zone).copied().unwrap_or(0) }).collect())
    }

    pub fn status(&self) -> Result<ServiceStatus, ControlError> {
        let applied = self.applied_config()?;
        let (pending, state) = match self.store.read(|tx| tx.pending()) {
            Ok(pending) => {
                let pending = pending.get(self.zone()).copied().unwrap_or(0);
                (pending, if pending == 0 { "ok" } else { "pendingChanges" })
            }
            // The node still serves: say why nothing else is known.
            Err(StoreError::Unavailable(_)) => (0, "storeUnreachable"),
            Err(e) => return Err(e.into()),
        };
        Ok(ServiceStatus {
            service_name: self.service.clone(),
            zone: self.zone().to_string(),
            state: state.to_string(),
            pending_changes: pending,
            applied: AppliedCounts {
                frontends: applied.frontends.len(),
                farms: applied.farms.len(),
                servers: applied.farms.iter().map(|f| f.servers.len()).sum(),
                routes: applied.routes.len(),
                rules: applied.routes.iter().map(|r| r.rules.len()).sum(),
            },
            listeners: self.traffic.listening().iter().map(ToString::to_string).collect(),
            node: self.node.clone(),
            store: self.store_status(),
        })
    }

    /// Counts a staged change of an object in `zone` (`all` counts in every zone).
    fn bump(&self, tx: &mut WriteTx, zone: &str) -> Result<(), StoreError> {
        if zone == ALL_ZONES {
            for z in &self.zones {
                tx.bump_pending(z)?;
            }
            Ok(())
        } else {
            tx.bump_pending(zone)
        }
    }
}

#[cfg(test)]
mod tests;
