//! Choosing a farm's server for a new connection: the farm's algorithm over the servers
//! that can take connections now (active, weight > 0, up by their probes), backups only when
//! no regular server can, and `stickiness: sourceIp` on top.
//!
//! Everything an algorithm precomputes (weighted orders, Maglev tables) is built when the
//! snapshot is compiled; a pick reads atomics and never allocates.
mod maglev;
mod round_robin;
mod sticky;

use std::{net::IpAddr, sync::Arc};

pub use maglev::{Maglev, TABLE_SIZE as MAGLEV_TABLE_SIZE};
pub use round_robin::RoundRobin;
pub use sticky::StickyTable;

use crate::{model::Balance, snapshot::ServerPlan};

#[derive(Debug)]
pub struct Balancer {
    primary: Group,
    backup: Group,
    sticky: Option<Arc<StickyTable>>,
}

/// Regular or backup servers of a farm, with the algorithm's precomputed state.
#[derive(Debug)]
struct Group {
    servers: Vec<Arc<ServerPlan>>,
    algorithm: Algorithm,
}

#[derive(Debug)]
enum Algorithm {
    RoundRobin(RoundRobin),
    LeastConn(RoundRobin),
    First,
    Source(Maglev),
}

impl Balancer {
    pub fn new(balance: Balance, servers: &[Arc<ServerPlan>], sticky: Option<Arc<StickyTable>>) -> Self {
        let group = |backup: bool| {
            let mut members: Vec<Arc<ServerPlan>> = servers.iter().filter(|s| s.backup == backup && s.active && s.weight > 0).cloned().collect();
            // `first` fills servers in id order; a stable order also keeps tables reproducible.
            members.sort_by_key(|s| s.id);
            Group::new(balance, members)
        };
        Self { primary: group(false), backup: group(true), sticky }
    }

    /// A server for a new connection from `client`, or None when none can take it.
    /// `excluded` are servers that just failed to accept this connection.
    pub fn pick(&self, client: IpAddr, excluded: &[u32]) -> Option<&Arc<ServerPlan>> {
        let usable = |s: &ServerPlan| s.runtime.is_up() && !excluded.contains(&s.id);
        if let Some(table) = &self.sticky {
            if let Some(id) = table.get(client) {
                if let Some(server) = self.group_in_use(&usable).servers.iter().find(|s| s.id == id && usable(s)) {
                    return Some(server);
                }
            }
        }
        let group = self.group_in_use(&usable);
        let server = group.pick(client, &usable, !excluded.is_empty())?;
        if let Some(table) = &self.sticky {
            table.set(client, server.id);
        }
        Some(server)
    }

    /// Regular servers while any can serve; backups only when none can.
    fn group_in_use(&self, usable: &impl Fn(&ServerPlan) -> bool) -> &Group {
        if self.primary.servers.iter().any(|s| usable(s)) { &self.primary } else { &self.backup }
    }
}

impl Group {
    fn new(balance: Balance, servers: Vec<Arc<ServerPlan>>) -> Self {
        let weights: Vec<u32> = servers.iter().map(|s| s.weight).collect();
        let algorithm = match balance {
            Balance::Roundrobin => Algorithm::RoundRobin(RoundRobin::new(&weights)),
            Balance::Leastconn => Algorithm::LeastConn(RoundRobin::new(&vec![1; servers.len()])),
            Balance::First => Algorithm::First,
            Balance::Source => {
                let identities: Vec<(Vec<u8>, u32)> = servers.iter().map(|s| (format!("{}#{}", s.id, s.address).into_bytes(), s.weight)).collect();
                Algorithm::Source(Maglev::new(&identities))
            }
        };
        Self { servers, algorithm }
    }

    /// `retry`: the connection's first pick failed to connect; the rotation is not advanced
    /// again for it.
    fn pick(&self, client: IpAddr, usable: &impl Fn(&ServerPlan) -> bool, retry: bool) -> Option<&Arc<ServerPlan>> {
        let ok = |i: usize| usable(&self.servers[i]);
        let index = match &self.algorithm {
            Algorithm::RoundRobin(rr) if retry => rr.peek(ok)?,
            Algorithm::RoundRobin(rr) => rr.pick(ok)?,
            Algorithm::LeastConn(rotation) => self.least_loaded(rotation, &ok)?,
            Algorithm::First => self.first_with_capacity(&ok)?,
            Algorithm::Source(maglev) => match maglev.pick(client, ok) {
                Some(i) => i,
                // Every probed slot is down: any usable server beats refusing the client.
                None => (0..self.servers.len()).find(|&i| ok(i))?,
            },
        };
        Some(&self.servers[index])
    }

    /// Fewest live connections relative to weight; ties broken by a rotating start so equal
    /// servers share new connections.
    fn least_loaded(&self, rotation: &RoundRobin, ok: &impl Fn(usize) -> bool) -> Option<usize> {
        let start = rotation.pick(|_| true)?;
        let n = self.servers.len();
        let mut best: Option<usize> = None;
        for k in 0..n {
            let i = (start + k) % n;
            if !ok(i) {
                continue;
            }
            best = match best {
                Some(b) if !lighter(&self.servers[i], &self.servers[b]) => Some(b),
                _ => Some(i),
            };
        }
        best
    }

    /// The lowest-id server below its `maxconn`; when all are full, the least loaded.
    fn first_with_capacity(&self, ok: &impl Fn(usize) -> bool) -> Option<usize> {
        let has_room = |s: &ServerPlan| s.maxconn.is_none_or(|max| s.runtime.active_connections() < max);
        if let Some(i) = (0..self.servers.len()).find(|&i| ok(i) && has_room(&self.servers[i])) {
            return Some(i);
        }
        (0..self.servers.len()).filter(|&i| ok(i)).min_by(|&a, &b| {
            let load = |s: &ServerPlan| f64::from(s.runtime.active_connections()) / f64::from(s.maxconn.unwrap_or(u32::MAX).max(1));
            load(&self.servers[a]).total_cmp(&load(&self.servers[b]))
        })
    }
}

/// a carries less load per unit of weight than b: active_a / w_a < active_b / w_b.
fn lighter(a: &ServerPlan, b: &ServerPlan) -> bool {
    u64::from(a.runtime.active_connections()) * u64::from(b.weight) < u64::from(b.runtime.active_connections()) * u64::from(a.weight)
}

#[cfg(test)]
mod tests;
