//! What the daemon knows of each server at run time, beyond its configuration: whether its
//! health probes say it is up, how many connections it carries, and the last probe result.
//! This state belongs to the server id and survives refreshes: a snapshot compiled for a
//! refresh picks up the same `ServerRuntime` for a server that is still configured.
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::SystemTime,
};

use serde::Serialize;
use tokio::sync::Notify;

use crate::telemetry::counters::{FarmCounters, FrontendCounters, RouteCounters, ServerCounters};

#[derive(Debug)]
pub struct ServerRuntime {
    up: AtomicBool,
    active: AtomicU32,
    /// Woken when the server is marked down, for `onMarkedDown: shutdown-sessions`.
    marked_down: Notify,
    report: Mutex<HealthReport>,
    /// Connections, connect times and bytes, for metrics; bumped without locks.
    pub counters: ServerCounters,
}

/// The last health verdict, as `serverState` shows it.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct HealthReport {
    /// `up`, `down`, or `unchecked` when no probe runs for this server.
    pub status: &'static str,
    pub last_check: Option<SystemTime>,
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
}

impl Default for ServerRuntime {
    fn default() -> Self {
        Self {
            up: AtomicBool::new(true),
            active: AtomicU32::new(0),
            marked_down: Notify::new(),
            report: Mutex::new(HealthReport { status: "unchecked", ..Default::default() }),
            counters: ServerCounters::default(),
        }
    }
}

/// Counts a live connection to a server for as long as it is held.
pub struct ConnectionSlot(Arc<ServerRuntime>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ServerRuntime {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn active_connections(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    pub fn occupy(self: &Arc<Self>) -> ConnectionSlot {
        self.active.fetch_add(1, Ordering::Relaxed);
        ConnectionSlot(Arc::clone(self))
    }

    /// Resolves when the server is next marked down.
    pub async fn marked_down(&self) {
        self.marked_down.notified().await
    }

    /// Records a probe result. Two consecutive failures mark a server down, one success up.
    /// Returns the new up/down state when it changed.
    pub fn record_probe(&self, result: Result<(), String>) -> Option<bool> {
        let mut report = self.report.lock().unwrap_or_else(|p| p.into_inner());
        report.last_check = Some(SystemTime::now());
        let was_up = self.is_up();
        let now_up = match result {
            Ok(()) => {
                report.consecutive_failures = 0;
                report.last_error = None;
                true
            }
            Err(e) => {
                report.consecutive_failures = report.consecutive_failures.saturating_add(1);
                report.last_error = Some(e);
                report.consecutive_failures < 2
            }
        };
        report.status = if now_up { "up" } else { "down" };
        drop(report);
        self.up.store(now_up, Ordering::Relaxed);
        if was_up && !now_up {
            self.marked_down.notify_waiters();
        }
        (was_up != now_up).then_some(now_up)
    }

    /// Back to "up, unchecked" when the server's probe is switched off.
    pub fn clear_probe(&self) {
        *self.report.lock().unwrap_or_else(|p| p.into_inner()) = HealthReport { status: "unchecked", ..Default::default() };
        self.up.store(true, Ordering::Relaxed);
    }

    pub fn report(&self) -> HealthReport {
        self.report.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Run-time state by server id (and stickiness tables by farm id, counters by frontend,
/// route and farm id), shared by every snapshot compiled through it.
#[derive(Debug, Default)]
pub struct Runtimes {
    servers: Mutex<HashMap<u32, Arc<ServerRuntime>>>,
    sticky: Mutex<HashMap<u32, Arc<lb_core::balance::StickyTable>>>,
    frontends: Mutex<HashMap<u32, Arc<FrontendCounters>>>,
    routes: Mutex<HashMap<u32, Arc<RouteCounters>>>,
    farms: Mutex<HashMap<u32, Arc<FarmCounters>>>,
}

fn shared<T: Default>(map: &Mutex<HashMap<u32, Arc<T>>>, id: u32) -> Arc<T> {
    Arc::clone(map.lock().unwrap_or_else(|p| p.into_inner()).entry(id).or_default())
}

impl Runtimes {
    pub fn sticky_table(&self, farm_id: u32) -> Arc<lb_core::balance::StickyTable> {
        let mut tables = self.sticky.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(tables.entry(farm_id).or_insert_with(|| Arc::new(lb_core::balance::StickyTable::new())))
    }

    pub fn frontend_counters(&self, frontend_id: u32) -> Arc<FrontendCounters> {
        shared(&self.frontends, frontend_id)
    }

    pub fn route_counters(&self, route_id: u32) -> Arc<RouteCounters> {
        shared(&self.routes, route_id)
    }

    pub fn farm_counters(&self, farm_id: u32) -> Arc<FarmCounters> {
        shared(&self.farms, farm_id)
    }

    pub fn get_or_create(&self, server_id: u32) -> Arc<ServerRuntime> {
        let mut servers = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(servers.entry(server_id).or_default())
    }

    pub fn get(&self, server_id: u32) -> Option<Arc<ServerRuntime>> {
        self.servers.lock().unwrap_or_else(|p| p.into_inner()).get(&server_id).cloned()
    }

    /// Forgets servers and farms that are no longer configured. A removed server counts as
    /// marked down for the connections it still carries: those whose `onMarkedDown` is
    /// `shutdown-sessions` end now, the others keep their server.
    pub fn retain(&self, keep_server: impl Fn(u32) -> bool, keep_farm: impl Fn(u32) -> bool) {
        self.servers.lock().unwrap_or_else(|p| p.into_inner()).retain(|id, runtime| {
            let keep = keep_server(*id);
            if !keep {
                runtime.marked_down.notify_waiters();
            }
            keep
        });
        self.sticky.lock().unwrap_or_else(|p| p.into_inner()).retain(|id, _| keep_farm(*id));
        self.farms.lock().unwrap_or_else(|p| p.into_inner()).retain(|id, _| keep_farm(*id));
    }

    /// Forgets the counters of frontends and routes that are no longer configured.
    pub fn retain_listeners(&self, keep_frontend: impl Fn(u32) -> bool, keep_route: impl Fn(u32) -> bool) {
        self.frontends.lock().unwrap_or_else(|p| p.into_inner()).retain(|id, _| keep_frontend(*id));
        self.routes.lock().unwrap_or_else(|p| p.into_inner()).retain(|id, _| keep_route(*id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_failures_mark_down_and_one_success_up() {
        let s = ServerRuntime::default();
        assert!(s.is_up());
        assert_eq!(s.record_probe(Err("refused".into())), None);
        assert!(s.is_up());
        assert_eq!(s.record_probe(Err("refused".into())), Some(false));
        assert!(!s.is_up());
        assert_eq!(s.report().last_error.as_deref(), Some("refused"));
        assert_eq!(s.record_probe(Err("refused".into())), None);
        assert_eq!(s.record_probe(Ok(())), Some(true));
        assert!(s.is_up());
        assert_eq!(s.report().status, "up");
    }

    #[tokio::test]
    async fn removing_a_server_wakes_its_shutdown_sessions() {
        let runtimes = Runtimes::default();
        let (kept, removed) = (runtimes.get_or_create(1), runtimes.get_or_create(2));
        let waiting = tokio::spawn(async move { removed.marked_down().await });
        let kept_waiting = tokio::spawn(async move { kept.marked_down().await });
        tokio::task::yield_now().await;
        runtimes.retain(|id| id == 1, |_| true);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await.expect("the removed server's sessions were not woken").unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!kept_waiting.is_finished(), "a kept server's sessions were woken");
        kept_waiting.abort();
        assert!(runtimes.get(2).is_none() && runtimes.get(1).is_some());
    }

    #[test]
    fn slots_count_live_connections() {
        let s = Arc::new(ServerRuntime::default());
        let a = s.occupy();
        let b = s.occupy();
        assert_eq!(s.active_connections(), 2);
        drop(a);
        drop(b);
        assert_eq!(s.active_connections(), 0);
    }
}
