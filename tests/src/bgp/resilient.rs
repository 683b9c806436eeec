//! Resilient nexthop groups for the router's VIP routes.
//!
//! # Mechanism chosen, and why
//! Linux forwards a multipath route by hash-threshold: the hash space is cut into one range per
//! nexthop, so when a nexthop leaves, the ranges of the others shift and some flows of
//! *surviving* nodes land on another node, which resets them. A resilient nexthop group
//! (kernel 5.13+, `ip nexthop add id G group a/b type resilient buckets 128`) maps the hash to a
//! table of buckets instead; removing a member reassigns only that member's buckets, so flows
//! on the survivors keep their node.
//!
//! BIRD 2 (2.0.12 in Debian 12) installs routes with inline nexthops only, never through
//! nexthop objects, and its kernel protocol rewrites a route it owns when it finds it changed.
//! Replacing BIRD's route in place would be a fight with BIRD. So the router's BIRD exports its
//! merged BGP routes into a staging table (`kernel table 100`) that no packet looks up, and
//! [`ResilientRoutes::sync`] mirrors each VIP's staging route into the main table as a route via
//! a resilient group whose members are the staging route's gateways (`ip nexthop replace` keeps
//! the buckets of members that stay). BGP stays the only source of truth for which nodes serve
//! a VIP; the sync only changes how the kernel spreads flows over them.
//!
//! `idle_timer` stays at the kernel default (120 s) and `unbalanced_timer` at 0: removing a node
//! moves only its own buckets whatever the timers; adding one takes over only buckets idle for
//! 120 s, so established flows are not moved when a node comes back either. (`idle_timer 0`
//! would call every bucket idle and move live flows to a returning node.)
//!
//! # What a production router must do
//! The same, driven by events rather than by a test: watch the staging table (netlink route
//! notifications, `ip monitor route table 100`) and resync each changed VIP at once; or run a
//! routing suite whose FIB manager installs BGP multipath through resilient nexthop groups.
//! Flows of the node that left are lost either way (its sockets are gone); a node that leaves
//! on purpose should withdraw its VIPs and drain before stopping.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::proc::run_ok;

const CMD_TIMEOUT: Duration = Duration::from_secs(10);

/// The main-table routes of some VIPs, each through a resilient group mirroring the gateways of
/// the VIP's route in the staging table.
pub struct ResilientRoutes {
    ns: String,
    staging_table: u32,
    buckets: u16,
    /// Nexthop object id per (gateway, device).
    members: BTreeMap<(IpAddr, String), u32>,
    /// Group id per VIP.
    groups: BTreeMap<IpAddr, u32>,
    next_id: u32,
}

impl ResilientRoutes {
    pub fn new(ns: &str, staging_table: u32, buckets: u16) -> Self {
        Self { ns: ns.to_string(), staging_table, buckets, members: BTreeMap::new(), groups: BTreeMap::new(), next_id: 1 }
    }

    fn ip(&self, args: &[&str]) -> Result<String> {
        let out = run_ok(Command::new("ip").arg("-n").arg(&self.ns).args(args), CMD_TIMEOUT)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn fresh_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The (gateway, device) pairs of the staging route to `vip`.
    fn staging_members(&self, vip: IpAddr) -> Result<Vec<(IpAddr, String)>> {
        let family = if vip.is_ipv4() { "-4" } else { "-6" };
        let out = self.ip(&["-j", family, "route", "show", "table", &self.staging_table.to_string(), &vip.to_string()])?;
        let routes: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap_or_default();
        let hop =
            |h: &serde_json::Value| -> Option<(IpAddr, String)> { Some((h.get("gateway")?.as_str()?.parse().ok()?, h.get("dev")?.as_str()?.to_string())) };
        let mut members = Vec::new();
        for route in &routes {
            match route.get("nexthops").and_then(|v| v.as_array()) {
                Some(list) => members.extend(list.iter().filter_map(hop)),
                None => members.extend(hop(route)),
            }
        }
        Ok(members)
    }

    /// Makes the main-table route to `vip` go through a resilient group of the staging route's
    /// gateways (or removes it when the staging table has none). Returns the gateways.
    pub fn sync(&mut self, vip: IpAddr) -> Result<Vec<IpAddr>> {
        let wanted = self.staging_members(vip)?;
        let family = if vip.is_ipv4() { "-4" } else { "-6" };
        let prefix = format!("{vip}/{}", if vip.is_ipv4() { 32 } else { 128 });
        if wanted.is_empty() {
            if let Some(group) = self.groups.remove(&vip) {
                let _ = self.ip(&[family, "route", "del", &prefix]);
                self.ip(&["nexthop", "del", "id", &group.to_string()])?;
            }
            self.drop_unused()?;
            return Ok(Vec::new());
        }
        let mut ids = Vec::new();
        for member in &wanted {
            let id = match self.members.get(member) {
                Some(&id) => id,
                None => {
                    let id = self.fresh_id();
                    self.ip(&["nexthop", "add", "id", &id.to_string(), "via", &member.0.to_string(), "dev", &member.1])
                        .with_context(|| format!("nexthop object for {} dev {}", member.0, member.1))?;
                    self.members.insert(member.clone(), id);
                    id
                }
            };
            ids.push(id.to_string());
        }
        let group_list = ids.join("/");
        let group = match self.groups.get(&vip) {
            Some(&id) => {
                // Replacing a resilient group keeps the buckets of members present in both.
                self.ip(&["nexthop", "replace", "id", &id.to_string(), "group", &group_list, "type", "resilient"])
                    .with_context(|| format!("updating resilient group {id} to {group_list}"))?;
                id
            }
            None => {
                let id = self.fresh_id();
                let buckets = self.buckets.to_string();
                self.ip(&["nexthop", "add", "id", &id.to_string(), "group", &group_list, "type", "resilient", "buckets", &buckets, "unbalanced_timer", "0"])
                    .with_context(|| format!("creating resilient group {id} of {group_list}"))?;
                self.groups.insert(vip, id);
                id
            }
        };
        self.ip(&[family, "route", "replace", &prefix, "nhid", &group.to_string(), "proto", "static"])
            .with_context(|| format!("route {prefix} via group {group}"))?;
        self.drop_unused()?;
        Ok(wanted.into_iter().map(|(gw, _)| gw).collect())
    }

    /// Deletes nexthop objects no group uses any more.
    fn drop_unused(&mut self) -> Result<()> {
        let out = self.ip(&["-j", "nexthop", "show"])?;
        let objects: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap_or_default();
        let mut in_use = std::collections::BTreeSet::new();
        for object in &objects {
            for member in object.get("group").and_then(|g| g.as_array()).into_iter().flatten() {
                if let Some(id) = member.get("id").and_then(|v| v.as_u64()) {
                    in_use.insert(id as u32);
                }
            }
        }
        let unused: Vec<_> = self.members.iter().filter(|(_, id)| !in_use.contains(id)).map(|(k, &id)| (k.clone(), id)).collect();
        for (key, id) in unused {
            self.ip(&["nexthop", "del", "id", &id.to_string()])?;
            self.members.remove(&key);
        }
        Ok(())
    }

    /// `ip nexthop bucket show id <group>`: which member each bucket points to, by member id.
    pub fn bucket_counts(&self, vip: IpAddr) -> Result<BTreeMap<u32, usize>> {
        let group = self.groups.get(&vip).context("no group for this VIP")?;
        let out = self.ip(&["-j", "nexthop", "bucket", "show", "id", &group.to_string()])?;
        let buckets: Vec<serde_json::Value> = serde_json::from_str(&out).context("parsing ip nexthop bucket show")?;
        let mut counts = BTreeMap::new();
        for bucket in &buckets {
            if let Some(id) = bucket.pointer("/bucket/nhid").and_then(|v| v.as_u64()) {
                *counts.entry(id as u32).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }
}
