//! A node of a zone served by several nodes (`--store etcd://…`): it registers itself under
//! `PREFIX/nodes/ZONE/NAME` with a lease (gone a few seconds after the node is), watches its
//! zone's applied configuration and applies each new revision, and says in its record which
//! revision it serves, or why it could not apply one. A refresh is done when every live node
//! of its zone says it serves the refreshed revision (see `control/refresh.rs`).
//!
//! When etcd cannot be reached the node keeps serving what it applied, says so (`/status`,
//! metrics) and tries again every second; when etcd is back it registers anew and catches up
//! with the latest revision.
use std::{
    sync::{
        atomic::{AtomicI64, AtomicU8, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::{Duration, SystemTime},
};

use etcd_client::{Client, EventType, GetOptions, PutOptions, WatchOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};
use tracing::{error, info, warn};
use utoipa::ToSchema;

use super::cache::AppliedCache;
use crate::{
    control::Traffic,
    store::{
        etcd::{SharedEtcd, REQUEST_TIMEOUT},
        StoreError,
    },
};
use lb_core::model::ServiceConfig;

/// What a node says about itself in etcd, and what `GET /zone/{name}/node` lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeRecord {
    /// `--node`.
    pub name: String,
    pub zone: String,
    /// `serving`, or `draining` once it was told to stop.
    pub state: String,
    /// The etcd revision of the zone's applied configuration this node serves (0: none yet).
    pub applied_revision: i64,
    /// The last revision this node failed to apply, and why; it serves `appliedRevision`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<ApplyFailure>,
    /// Servers of the applied farms this node's probes see up, and down.
    pub servers_up: usize,
    pub servers_down: usize,
    /// RFC 3339, UTC: when this node started.
    pub since: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplyFailure {
    pub revision: i64,
    pub message: String,
}

/// Where the nodes of `zone` register.
pub fn nodes_prefix(prefix: &str, zone: &str) -> String {
    format!("{}{zone}/", nodes_root(prefix))
}

/// Where the nodes of every zone register.
fn nodes_root(prefix: &str) -> String {
    format!("{}/nodes/", prefix.trim_end_matches('/'))
}

/// How a node stays registered.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub name: String,
    pub zone: String,
    /// Lease time to live: how long a node that vanished (killed, cut off) stays listed.
    pub ttl: Duration,
    /// Where each applied configuration is kept for a restart while etcd is unreachable.
    pub cache: Option<AppliedCache>,
}

const STARTING: u8 = 0;
const REGISTERED: u8 = 1;
const LOST: u8 = 2;

pub struct Membership {
    etcd: SharedEtcd,
    settings: NodeSettings,
    record: Mutex<NodeRecord>,
    changed: Notify,
    /// Where the node's session with etcd stands: `STARTING`, `REGISTERED` or `LOST`.
    session_state: AtomicU8,
    /// Mirrors `record.applied_revision` for lock-free readers (metrics).
    applied_revision: AtomicI64,
    /// The configuration of `applied_revision`, what traffic follows here.
    serving: Mutex<Arc<ServiceConfig>>,
}

impl Membership {
    /// A node that serves nothing yet (see [`Membership::serves`]).
    pub fn new(etcd: SharedEtcd, settings: NodeSettings) -> Arc<Self> {
        let (applied, applied_revision) = (ServiceConfig::default(), 0);
        let record = NodeRecord {
            name: settings.name.clone(),
            zone: settings.zone.clone(),
            state: "serving".into(),
            applied_revision,
            failed: None,
            servers_up: 0,
            servers_down: 0,
            since: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        };
        Arc::new(Self {
            etcd,
            settings,
            record: Mutex::new(record),
            changed: Notify::new(),
            session_state: AtomicU8::new(STARTING),
            applied_revision: AtomicI64::new(applied_revision),
            serving: Mutex::new(Arc::new(applied)),
        })
    }

    /// Records what the node applied before it serves: `config`, revision `revision`.
    pub fn serves(&self, config: ServiceConfig, revision: i64) {
        if let Some(cache) = &self.settings.cache {
            cache.store(&self.settings.zone, revision, &config);
        }
        *self.serving.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        self.update(|r| r.applied_revision = revision);
    }

    /// The configuration this node serves.
    pub fn serving(&self) -> Arc<ServiceConfig> {
        Arc::clone(&self.serving.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// A session with etcd failed and none registered since. A node still registering is
    /// not lost: over TLS its first session takes several round trips, and calling the store
    /// unreachable meanwhile would contradict the requests that just succeeded.
    pub fn lost(&self) -> bool {
        self.session_state.load(Relaxed) == LOST
    }

    pub fn applied_revision(&self) -> i64 {
        self.applied_revision.load(Relaxed)
    }

    pub fn record(&self) -> NodeRecord {
        self.record.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn key(&self) -> String {
        format!("{}{}", nodes_prefix(&self.etcd.options().prefix, &self.settings.zone), self.settings.name)
    }

    fn update(&self, change: impl FnOnce(&mut NodeRecord)) {
        let mut record = self.record.lock().unwrap_or_else(|p| p.into_inner());
        let before = record.clone();
        change(&mut record);
        self.applied_revision.store(record.applied_revision, Relaxed);
        if *record != before {
            self.changed.notify_one();
        }
    }

    /// Stopping: other nodes and the router's operator see it before the lease ends.
    pub fn draining(&self) {
        self.update(|r| r.state = "draining".into());
    }

    /// The live nodes of `zone`, by name (blocking: call it off the async workers).
    pub fn nodes(&self, zone: &str) -> Result<Vec<NodeRecord>, StoreError> {
        list_nodes(&self.etcd, zone)
    }

    /// Keeps the node registered and its zone's configuration applied until `stop` says true;
    /// then removes its registration.
    pub async fn run(self: Arc<Self>, traffic: Arc<dyn Traffic>, mut stop: watch::Receiver<bool>) {
        // Said once per outage, not once per retry.
        let mut said = false;
        loop {
            let outcome = self.session(&traffic, &mut stop).await;
            if self.session_state.swap(LOST, Relaxed) == REGISTERED {
                said = false;
            }
            match outcome {
                Ok(()) => return,
                Err(e) if !said => {
                    warn!(store = %self.etcd.options().describe(), error = %e, "lost etcd: serving the last applied configuration, trying again every second");
                    said = true;
                }
                Err(e) => tracing::debug!(error = %e, "etcd still unreachable"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    /// One registration: lease, record, catch-up, then watch until an error or the stop.
    async fn session(&self, traffic: &Arc<dyn Traffic>, stop: &mut watch::Receiver<bool>) -> Result<(), String> {
        let mut client = self.etcd.client();
        let ttl = self.settings.ttl.as_secs().max(1) as i64;
        let lease = timed(client.lease_grant(ttl, None)).await?.id();
        let (mut keeper, mut alive) = timed(client.lease_keep_alive(lease)).await?;
        self.publish(&mut client, lease).await?;

        let applied_key = self.etcd.keys().applied(&self.settings.zone);
        let current = timed(client.get(applied_key.clone(), None)).await?;
        let from = current.header().map_or(0, |h| h.revision()) + 1;
        if let Some(kv) = current.kvs().first() {
            self.apply(traffic, kv.mod_revision(), kv.value()).await;
        }
        let mut watcher = timed(client.watch(applied_key, Some(WatchOptions::new().with_start_revision(from)))).await?;
        self.publish(&mut client, lease).await?;
        self.session_state.store(REGISTERED, Relaxed);
        info!(node = %self.settings.name, zone = %self.settings.zone, lease, revision = self.applied_revision(), "registered in etcd");

        let mut tick = tokio::time::interval(self.settings.ttl / 3);
        loop {
            tokio::select! {
                _ = stop.changed() => {
                    if *stop.borrow() {
                        // Unregisters at once rather than when the lease runs out.
                        timed(client.lease_revoke(lease)).await.ok();
                        return Ok(());
                    }
                }
                _ = tick.tick() => {
                    timed(keeper.keep_alive()).await?;
                    self.refresh_health(traffic);
                }
                answer = alive.message() => match answer.map_err(|e| e.to_string())? {
                    Some(answer) if answer.ttl() > 0 => {}
                    _ => return Err("the node's lease expired".into()),
                },
                event = watcher.message() => {
                    let Some(response) = event.map_err(|e| e.to_string())? else { return Err("etcd closed the watch".into()) };
                    if response.canceled() {
                        return Err(format!("etcd cancelled the watch: {}", response.cancel_reason()));
                    }
                    for event in response.events() {
                        match (event.event_type(), event.kv()) {
                            (EventType::Put, Some(kv)) => self.apply(traffic, kv.mod_revision(), kv.value()).await,
                            (EventType::Delete, _) => warn!(zone = %self.settings.zone, "the zone's applied configuration was deleted from etcd: serving the last one"),
                            _ => {}
                        }
                    }
                }
                _ = self.changed.notified() => self.publish(&mut client, lease).await?,
            }
        }
    }

    async fn publish(&self, client: &mut Client, lease: i64) -> Result<(), String> {
        let record = serde_json::to_vec(&self.record()).map_err(|e| e.to_string())?;
        timed(client.put(self.key(), record, Some(PutOptions::new().with_lease(lease)))).await.map(|_| ())
    }

    fn refresh_health(&self, traffic: &Arc<dyn Traffic>) {
        let (up, down) = traffic.servers_up_down();
        self.update(|r| {
            r.servers_up = up;
            r.servers_down = down;
        });
    }

    /// Applies one revision of the zone's configuration, unless it is one this node has.
    async fn apply(&self, traffic: &Arc<dyn Traffic>, revision: i64, bytes: &[u8]) {
        if revision <= self.applied_revision() {
            return;
        }
        let config: Result<ServiceConfig, String> = serde_json::from_slice(bytes).map_err(|e| format!("the stored configuration does not decode: {e}"));
        let traffic = Arc::clone(traffic);
        let outcome = match config {
            Ok(config) => tokio::task::spawn_blocking(move || {
                lb_core::validate::validate(&config).map_err(|e| e.to_string())?;
                traffic.apply(&config).map_err(|e| e.to_string())?;
                Ok(config)
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string())),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(config) => {
                info!(zone = %self.settings.zone, revision, "applied the zone's configuration");
                self.serves(config, revision);
                self.update(|r| r.failed = None);
            }
            Err(message) => {
                error!(zone = %self.settings.zone, revision, error = %message, "could not apply the zone's configuration: serving the previous one");
                self.update(|r| r.failed = Some(ApplyFailure { revision, message }));
            }
        }
    }
}

/// The live nodes of `zone` registered in the store's etcd, by name.
pub fn list_nodes(etcd: &SharedEtcd, zone: &str) -> Result<Vec<NodeRecord>, StoreError> {
    let mut client = etcd.client();
    let prefix = nodes_prefix(&etcd.options().prefix, zone);
    let response = etcd.run(async move { client.get(prefix, Some(GetOptions::new().with_prefix())).await })?;
    let mut nodes = Vec::new();
    for kv in response.kvs() {
        match serde_json::from_slice::<NodeRecord>(kv.value()) {
            Ok(node) => nodes.push(node),
            Err(e) => warn!(key = %String::from_utf8_lossy(kv.key()), error = %e, "a node record does not decode: ignored"),
        }
    }
    Ok(nodes)
}

/// The zones that have live nodes registered under the store's prefix, sorted.
pub fn list_zones(etcd: &SharedEtcd) -> Result<Vec<String>, StoreError> {
    let mut client = etcd.client();
    let prefix = nodes_root(&etcd.options().prefix);
    let from = prefix.clone();
    let response = etcd.run(async move { client.get(from, Some(GetOptions::new().with_prefix().with_keys_only())).await })?;
    let mut zones: Vec<String> = response
        .kvs()
        .iter()
        .filter_map(|kv| String::from_utf8_lossy(kv.key()).strip_prefix(&prefix).and_then(|rest| rest.split_once('/')).map(|(zone, _)| zone.to_string()))
        .collect();
    zones.sort();
    zones.dedup();
    Ok(zones)
}

/// The applied configuration of `zone` and its revision, read before the node serves.
pub fn load_applied(etcd: &SharedEtcd, zone: &str) -> Result<(ServiceConfig, i64), StoreError> {
    let mut client = etcd.client();
    let key = etcd.keys().applied(zone);
    let response = etcd.run(async move { client.get(key, None).await })?;
    match response.kvs().first() {
        Some(kv) => {
            let config = serde_json::from_slice(kv.value()).map_err(|e| StoreError::Decode {
                kind: "applied configuration of zone",
                key: zone.to_string(),
                error: e.to_string(),
            })?;
            Ok((config, kv.mod_revision()))
        }
        None => Ok((ServiceConfig::default(), 0)),
    }
}

async fn timed<T>(request: impl std::future::Future<Output = Result<T, etcd_client::Error>>) -> Result<T, String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("etcd did not answer within {REQUEST_TIMEOUT:?}")),
    }
}
