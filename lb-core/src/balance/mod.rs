//! Choosing a farm's server for a new connection: the farm's algorithm over the servers
//! that can take connections now (active, weight > 0, up by their probes), backups only when
//! no regular server can, and `stickiness: sourceIp` on top.
//!
//! Everything an algorithm precomputes (weighted orders, Maglev tables) is built when the
//! snapshot is compiled; a pick reads atomics and never allocates.
mod maglev;
mod round_robin;
mod sticky;

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

pub use maglev::{Maglev, TABLE_SIZE as MAGLEV_TABLE_SIZE};
pub use round_robin::RoundRobin;
pub use sticky::{StickyTable, STICKY_CAPACITY, STICKY_IDLE};

use crate::model::Balance;

/// A farm's server as balancing sees it: its identity and the configuration that orders it.
/// Neutral on purpose (as `pingora-load-balancing`'s `Backend`): the daemon's per-server
/// state stays with the daemon and is read through [`Live`] at pick time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// The server id; stickiness remembers it and retries exclude by it.
    pub id: u32,
    /// Part of the server's identity in the Maglev table, so a changed address moves it.
    pub address: SocketAddr,
    /// Share of new connections, 0..=256; 0 takes none.
    pub weight: u32,
    /// Serves only when no regular server can.
    pub backup: bool,
    /// `status: active`; an inactive server takes no connection.
    pub active: bool,
    /// Concurrent connections before `first` moves on to the next server.
    pub maxconn: Option<u32>,
}

/// The live state of a farm's servers, which the daemon keeps (health probes, connection
/// counts). `index` is a position in the backends given to [`Balancer::new`].
pub trait Live {
    /// Whether the server can take connections by its probes (always, when not probed).
    fn is_up(&self, index: usize) -> bool;
    /// Connections the server carries now.
    fn active_connections(&self, index: usize) -> u32;
}

/// A farm's algorithm with everything it precomputes, over the farm's backends.
#[derive(Debug)]
pub struct Balancer {
    backends: Vec<Backend>,
    primary: Group,
    backup: Group,
    sticky: Option<Arc<StickyTable>>,
}

/// Regular or backup servers of a farm, with the algorithm's precomputed state.
#[derive(Debug)]
struct Group {
    /// Positions in the balancer's backends, in id order.
    members: Vec<usize>,
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
    /// Precomputes the farm's groups; `backends` are every configured server of the farm,
    /// inactive and zero-weight ones included (they are left out here).
    pub fn new(balance: Balance, backends: &[Backend], sticky: Option<Arc<StickyTable>>) -> Self {
        let group = |backup: bool| {
            let mut members: Vec<usize> =
                (0..backends.len()).filter(|&i| backends[i].backup == backup && backends[i].active && backends[i].weight > 0).collect();
            // `first` fills servers in id order; a stable order also keeps tables reproducible.
            members.sort_by_key(|&i| backends[i].id);
            Group::new(balance, backends, members)
        };
        Self { primary: group(false), backup: group(true), sticky, backends: backends.to_vec() }
    }

    /// A server for a new connection from `client`, as its position in the backends, or
    /// None when none can take it. `excluded` are ids of servers that just failed to accept
    /// this connection.
    pub fn pick(&self, client: IpAddr, excluded: &[u32], live: &impl Live) -> Option<usize> {
        let usable = |i: usize| live.is_up(i) && !excluded.contains(&self.backends[i].id);
        if let Some(table) = &self.sticky {
            if let Some(id) = table.get(client) {
                if let Some(&i) = self.group_in_use(&usable).members.iter().find(|&&i| self.backends[i].id == id && usable(i)) {
                    return Some(i);
                }
            }
        }
        let group = self.group_in_use(&usable);
        let index = group.pick(&self.backends, client, &usable, live, !excluded.is_empty())?;
        if let Some(table) = &self.sticky {
            table.set(client, self.backends[index].id);
        }
        Some(index)
    }

    /// Regular servers while any can serve; backups only when none can.
    fn group_in_use(&self, usable: &impl Fn(usize) -> bool) -> &Group {
        if self.primary.members.iter().any(|&i| usable(i)) {
            &self.primary
        } else {
            &self.backup
        }
    }
}

impl Group {
    fn new(balance: Balance, backends: &[Backend], members: Vec<usize>) -> Self {
        let weights: Vec<u32> = members.iter().map(|&i| backends[i].weight).collect();
        let algorithm = match balance {
            Balance::Roundrobin => Algorithm::RoundRobin(RoundRobin::new(&weights)),
            Balance::Leastconn => Algorithm::LeastConn(RoundRobin::new(&vec![1; members.len()])),
            Balance::First => Algorithm::First,
            Balance::Source => {
                let identities: Vec<(Vec<u8>, u32)> =
                    members.iter().map(|&i| (format!("{}#{}", backends[i].id, backends[i].address).into_bytes(), backends[i].weight)).collect();
                Algorithm::Source(Maglev::new(&identities))
            }
        };
        Self { members, algorithm }
    }

    /// A position in `backends`. `retry`: the connection's first pick failed to connect;
    /// the rotation is not advanced again for it.
    fn pick(&self, backends: &[Backend], client: IpAddr, usable: &impl Fn(usize) -> bool, live: &impl Live, retry: bool) -> Option<usize> {
        let ok = |k: usize| usable(self.members[k]);
        let k = match &self.algorithm {
            Algorithm::RoundRobin(rr) if retry => rr.peek(ok)?,
            Algorithm::RoundRobin(rr) => rr.pick(ok)?,
            Algorithm::LeastConn(rotation) => self.least_loaded(backends, rotation, &ok, live)?,
            Algorithm::First => self.first_with_capacity(backends, &ok, live)?,
            Algorithm::Source(maglev) => match maglev.pick(client, ok) {
                Some(k) => k,
                // Every probed slot is down: any usable server beats refusing the client.
                None => (0..self.members.len()).find(|&k| ok(k))?,
            },
        };
        Some(self.members[k])
    }

    /// Fewest live connections relative to weight; ties broken by a rotating start so equal
    /// servers share new connections.
    fn least_loaded(&self, backends: &[Backend], rotation: &RoundRobin, ok: &impl Fn(usize) -> bool, live: &impl Live) -> Option<usize> {
        let start = rotation.pick(|_| true)?;
        let n = self.members.len();
        let load = |k: usize| (live.active_connections(self.members[k]), backends[self.members[k]].weight);
        let mut best: Option<usize> = None;
        for j in 0..n {
            let k = (start + j) % n;
            if !ok(k) {
                continue;
            }
            best = match best {
                Some(b) if !lighter(load(k), load(b)) => Some(b),
                _ => Some(k),
            };
        }
        best
    }

    /// The lowest-id server below its `maxconn`; when all are full, the least loaded.
    fn first_with_capacity(&self, backends: &[Backend], ok: &impl Fn(usize) -> bool, live: &impl Live) -> Option<usize> {
        let backend = |k: usize| &backends[self.members[k]];
        let active = |k: usize| live.active_connections(self.members[k]);
        let has_room = |k: usize| backend(k).maxconn.is_none_or(|max| active(k) < max);
        if let Some(k) = (0..self.members.len()).find(|&k| ok(k) && has_room(k)) {
            return Some(k);
        }
        (0..self.members.len()).filter(|&k| ok(k)).min_by(|&a, &b| {
            let load = |k: usize| f64::from(active(k)) / f64::from(backend(k).maxconn.unwrap_or(u32::MAX).max(1));
            load(a).total_cmp(&load(b))
        })
    }
}

/// a carries less load per unit of weight than b: active_a / w_a < active_b / w_b; each is
/// (active connections, weight).
fn lighter((active_a, weight_a): (u32, u32), (active_b, weight_b): (u32, u32)) -> bool {
    u64::from(active_a) * u64::from(weight_b) < u64::from(active_b) * u64::from(weight_a)
}

#[cfg(test)]
mod tests;
