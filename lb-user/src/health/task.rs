//! The life of one probed server: probe every interval, record the result in its
//! [`ServerRuntime`], log when it goes down or comes back up.
use std::sync::{Arc, Mutex};

use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};

use super::{check::probe_once, spec::ProbeSpec};
use crate::dataplane::server_state::ServerRuntime;

/// Names for the logs.
#[derive(Debug, Clone)]
pub struct Labels {
    pub farm_id: u32,
    pub farm: String,
    pub server_id: u32,
    pub server: String,
}

/// Whether a task may still record results. The checker clears it, under the lock, before
/// it resets the server's health, so an aborted task never records after that.
pub type Live = Arc<Mutex<bool>>;

/// Runs until aborted. `spec` is `Err` when the probe could not be set up: every interval
/// then records that error, so the server shows why it is not checked.
pub async fn run(spec: Result<ProbeSpec, String>, runtime: Arc<ServerRuntime>, labels: Labels, live: Live) {
    let interval = spec.as_ref().map_or(super::spec::DEFAULT_INTERVAL, |s| s.interval);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let result = match &spec {
            Ok(spec) => probe_once(spec).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.clone()),
        };
        let error = result.as_ref().err().cloned();
        let change = {
            let live = live.lock().unwrap_or_else(|p| p.into_inner());
            if !*live {
                return;
            }
            runtime.record_probe(result)
        };
        let Labels { farm_id, farm, server_id, server } = &labels;
        let address = spec.as_ref().map(|s| s.addr.to_string()).unwrap_or_default();
        match (change, error) {
            (Some(false), error) => warn!(farm_id, farm, server_id, server, address, error = error.unwrap_or_default(), "server marked down"),
            (Some(true), _) => info!(farm_id, farm, server_id, server, address, "server marked up"),
            (None, Some(error)) if runtime.is_up() => {
                info!(farm_id, farm, server_id, server, address, error, "probe failed; one more failure marks the server down")
            }
            (None, Some(error)) => debug!(farm_id, farm, server_id, server, address, error, "probe failed; the server stays down"),
            (None, None) => {}
        }
    }
}
