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
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> Self {
        ControlError::Store(Box::new(e))
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
    /// `ok` when traffic follows the staged configuration, `pendingChanges` otherwise.
    pub state: String,
    /// Staged changes of this daemon's zone not yet applied.
    pub pending_changes: u64,
    /// What traffic follows now.
    pub applied: AppliedCounts,
    /// Addresses the frontends listen on.
    pub listeners: Vec<String>,
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
        let control = Self {
            store,
            traffic,
            service: service.to_string(),
            zones: vec![zone.to_string()],
            refresh_lock: tokio::sync::Mutex::new(()),
            refreshes: RefreshCounts::default(),
        };
        control.end_interrupted_tasks()?;
        Ok(control)
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
        let (applied, pending) = self.store.read(|tx| -> Result<_, StoreError> { Ok((tx.applied(self.zone())?.unwrap_or_default(), tx.pending()?)) })?;
        let pending = pending.get(self.zone()).copied().unwrap_or(0);
        Ok(ServiceStatus {
            service_name: self.service.clone(),
            zone: self.zone().to_string(),
            state: if pending == 0 { "ok" } else { "pendingChanges" }.to_string(),
            pending_changes: pending,
            applied: AppliedCounts {
                frontends: applied.frontends.len(),
                farms: applied.farms.len(),
                servers: applied.farms.iter().map(|f| f.servers.len()).sum(),
                routes: applied.routes.len(),
                rules: applied.routes.iter().map(|r| r.rules.len()).sum(),
            },
            listeners: self.traffic.listening().iter().map(ToString::to_string).collect(),
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
