//! The soak's configuration, seeded through the API, and the changes made to it during the
//! run: every step stages one or two changes (a server leaves or comes back, a route is
//! added and the previous one removed) and applies them with `POST /refresh`.
//!
//! Farms: 1 `h2` (h2 backends on 10.77.2.2-3:8443), 2 `h1` (http/1.1 backends on
//! 10.77.2.4-5:8443), 3 `echo` (lb-echo backends on 10.77.2.2-4:9443). Frontend 1 on 443,
//! `fastpath: auto` (the default), default farm `h1`; route 1 sends `protocol is http/2.0`
//! to `h2`, route 2 sends ALPN `lb-echo` to `echo`. The churned servers are never a farm's
//! last, and churned routes match an SNI no client sends, so that no legitimate client may
//! fail because of a change: a failure during a refresh is a daemon bug.

use std::collections::{HashMap, HashSet};

use anyhow::{ensure, Context, Result};
use serde_json::json;

use crate::api::ApiClient;
use crate::daemon::Stats;
use crate::soak::rng::Rng;

/// A backend process: where it listens, what it offers, its name, its farm.
#[derive(Debug, Clone, Copy)]
pub struct Backend {
    pub listen: &'static str,
    pub alpn: &'static [&'static str],
    pub name: &'static str,
    pub farm: u64,
}

impl Backend {
    pub fn address(&self) -> &'static str {
        self.listen.split(':').next().unwrap_or(self.listen)
    }
}

pub const BACKENDS: [Backend; 7] = [
    Backend { listen: "10.77.2.2:8443", alpn: &["h2"], name: "farm h2 (server 1)", farm: 1 },
    Backend { listen: "10.77.2.3:8443", alpn: &["h2"], name: "farm h2 (server 2)", farm: 1 },
    Backend { listen: "10.77.2.4:8443", alpn: &["http/1.1"], name: "farm h1 (server 1)", farm: 2 },
    Backend { listen: "10.77.2.5:8443", alpn: &["http/1.1"], name: "farm h1 (server 2)", farm: 2 },
    Backend { listen: "10.77.2.2:9443", alpn: &["lb-echo"], name: "farm echo (server 1)", farm: 3 },
    Backend { listen: "10.77.2.3:9443", alpn: &["lb-echo"], name: "farm echo (server 2)", farm: 3 },
    Backend { listen: "10.77.2.4:9443", alpn: &["lb-echo"], name: "farm echo (server 3)", farm: 3 },
];

/// (farm, address) of the servers that come and go; each farm keeps another server.
const CHURNED: [(u64, &str); 3] = [(1, "10.77.2.3"), (2, "10.77.2.5"), (3, "10.77.2.4")];

/// Creates the configuration above and applies it.
pub fn seed(api: &ApiClient) -> Result<()> {
    api.create("/tcp/farm", json!({"displayName": "h2", "port": 8443}))?;
    api.create("/tcp/farm", json!({"displayName": "h1", "port": 8443}))?;
    api.create("/tcp/farm", json!({"displayName": "echo", "port": 9443}))?;
    for b in BACKENDS {
        api.create(&format!("/tcp/farm/{}/server", b.farm), json!({"address": b.address(), "displayName": b.name}))?;
    }
    api.create("/tcp/frontend", json!({"port": "443", "defaultFarmId": 2, "inspectTimeout": 3, "displayName": "soak"}))?;
    api.create("/tcp/route", json!({"action": {"type": "farm", "target": "1"}, "frontendId": 1}))?;
    api.create("/tcp/route/1/rule", json!({"field": "protocol", "match": "is", "pattern": "http/2.0"}))?;
    api.create("/tcp/route", json!({"action": {"type": "farm", "target": "3"}, "frontendId": 1, "weight": 1}))?;
    api.create("/tcp/route/2/rule", json!({"field": "alpn", "match": "is", "pattern": "lb-echo"}))?;
    api.refresh_done()
}

/// The ids of `farm`'s servers at `address`.
pub fn server_ids(api: &ApiClient, farm: u64, address: &str) -> Result<Vec<u64>> {
    let reply = api.get(&format!("/tcp/farm/{farm}/server"))?;
    let ids: Vec<u64> = serde_json::from_value(reply.json.clone()).with_context(|| format!("servers of farm {farm}: {}", reply.text))?;
    let mut found = Vec::new();
    for id in ids {
        if api.get(&format!("/tcp/farm/{farm}/server/{id}"))?.json["address"] == address {
            found.push(id);
        }
    }
    Ok(found)
}

/// The clients (`ip:port`) the daemon has on `backend` now, by its flow table: on the
/// servers of its address configured now, and on those the churn removed before (their
/// connections go on after the removal; a soak missed one at a kill that way).
pub fn clients_on(api: &ApiClient, stats: &Stats, backend: &Backend, churn: &Churn) -> Result<HashSet<String>> {
    let mut ids: HashSet<u64> = server_ids(api, backend.farm, backend.address())?.into_iter().collect();
    ids.extend(churn.known.get(&(backend.farm, backend.address().to_string())).into_iter().flatten());
    Ok(stats.flows.iter().filter(|f| u64::from(f.farm_id) == backend.farm && ids.contains(&u64::from(f.server_id))).map(|f| f.client.clone()).collect())
}

/// The clients of the flows handed to the kernel now, with the state of their entry
/// (`live`, or `frozen` while the hand-off is being made).
pub fn handed_off_clients(stats: &Stats) -> HashMap<String, String> {
    stats.spliced.iter().flat_map(|s| [(s.from.clone(), s.state.clone()), (s.to.clone(), s.state.clone())]).collect()
}

/// The state of the churn between steps.
#[derive(Debug, Default)]
pub struct Churn {
    /// The churn route in place, if any.
    route: Option<u64>,
    steps: u64,
    pub servers_added: u64,
    pub servers_removed: u64,
    pub routes_added: u64,
    pub routes_removed: u64,
    /// Every server id the churn saw or made, by farm and address (ids are never reused).
    known: HashMap<(u64, String), HashSet<u64>>,
}

impl Churn {
    /// One step: one or two staged changes, then a refresh that must end `done`. Returns what
    /// changed.
    pub fn step(&mut self, api: &ApiClient, rng: &mut Rng) -> Result<String> {
        let mut changes = Vec::new();
        let server_change = rng.chance(60);
        if server_change {
            let (farm, address) = *rng.pick(&CHURNED);
            let ids = server_ids(api, farm, address)?;
            self.known.entry((farm, address.to_string())).or_default().extend(&ids);
            if let Some(id) = ids.first() {
                api.delete(&format!("/tcp/farm/{farm}/server/{id}"))?;
                self.servers_removed += 1;
                changes.push(format!("-server {id} ({address}) of farm {farm}"));
            } else {
                let s =
                    api.create(&format!("/tcp/farm/{farm}/server"), json!({"address": address, "displayName": format!("churned {address} of farm {farm}")}))?;
                self.servers_added += 1;
                if let Some(id) = s["serverId"].as_u64() {
                    self.known.entry((farm, address.to_string())).or_default().insert(id);
                }
                changes.push(format!("+server {} ({address}) of farm {farm}", s["serverId"]));
            }
        }
        if !server_change || rng.chance(50) {
            if let Some(old) = self.route.take() {
                api.delete(&format!("/tcp/route/{old}"))?;
                self.routes_removed += 1;
                changes.push(format!("-route {old}"));
            } else {
                let action = if rng.chance(50) { json!({"type": "reject"}) } else { json!({"type": "farm", "target": "2"}) };
                let route = api.create("/tcp/route", json!({"action": action, "frontendId": 1, "weight": rng.range(0, 10)}))?;
                let id = route["routeId"].as_u64().context("the new route has no routeId")?;
                api.create(&format!("/tcp/route/{id}/rule"), json!({"field": "sni", "match": "is", "pattern": format!("churn-{}.lb.test", self.steps)}))?;
                self.route = Some(id);
                self.routes_added += 1;
                changes.push(format!("+route {id}"));
            }
        }
        self.steps += 1;
        let task = api.refresh(None)?;
        ensure!(task["status"] == "done", "refresh after {changes:?} ended {}: {task}", task["status"]);
        Ok(changes.join(", "))
    }

    pub fn refreshes(&self) -> u64 {
        self.steps
    }
}
