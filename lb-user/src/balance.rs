//! Weighted round robin over a farm's servers.
//!
//! The smooth weighted order (nginx's algorithm: servers interleaved, never bursts of one) is
//! computed once when the snapshot is compiled; picking is an atomic increment of a cursor
//! into it, so the per-connection path takes no lock and allocates nothing.
use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use crate::snapshot::ServerPlan;

#[derive(Debug)]
pub struct RoundRobin {
    servers: Vec<Arc<ServerPlan>>,
    /// Indices into `servers`, in smooth weighted order. Backups come into play only when
    /// no regular server can take connections.
    order: Vec<u32>,
    cursor: AtomicUsize,
}

impl RoundRobin {
    pub fn new(servers: Vec<Arc<ServerPlan>>) -> Self {
        let eligible = |backup: bool| -> Vec<(u32, u32)> {
            servers
                .iter()
                .enumerate()
                .filter(|(_, s)| s.active && s.weight > 0 && s.backup == backup)
                .map(|(i, s)| (i as u32, s.weight))
                .collect()
        };
        let mut order = smooth_weighted_order(&eligible(false));
        if order.is_empty() {
            order = smooth_weighted_order(&eligible(true));
        }
        Self { servers, order, cursor: AtomicUsize::new(0) }
    }

    /// The next server in weighted order, or None if the farm has no server to offer.
    pub fn pick(&self) -> Option<&Arc<ServerPlan>> {
        self.pick_excluding(None)
    }

    /// The next server that is not `excluded` (used to retry a refused connect elsewhere).
    pub fn pick_excluding(&self, excluded: Option<u32>) -> Option<&Arc<ServerPlan>> {
        let len = self.order.len();
        if len == 0 {
            return None;
        }
        for _ in 0..len {
            let slot = self.cursor.fetch_add(1, Ordering::Relaxed) % len;
            let server = &self.servers[self.order[slot] as usize];
            if Some(server.id) != excluded {
                return Some(server);
            }
        }
        None
    }

    pub fn servers(&self) -> &[Arc<ServerPlan>] {
        &self.servers
    }
}

/// One full cycle of smooth weighted round robin: each server appears `weight / gcd` times.
fn smooth_weighted_order(weights: &[(u32, u32)]) -> Vec<u32> {
    let divisor = weights.iter().fold(0, |g, &(_, w)| gcd(g, w)).max(1);
    let weights: Vec<(u32, i64)> = weights.iter().map(|&(i, w)| (i, (w / divisor) as i64)).collect();
    let total: i64 = weights.iter().map(|&(_, w)| w).sum();
    let mut current = vec![0i64; weights.len()];
    let mut order = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (k, &(_, w)) in weights.iter().enumerate() {
            current[k] += w;
            if current[k] > current[best] {
                best = k;
            }
        }
        current[best] -= total;
        order.push(weights[best].0);
    }
    order
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(id: u32, weight: u32, backup: bool) -> Arc<ServerPlan> {
        Arc::new(ServerPlan {
            id,
            name: format!("s{id}"),
            address: format!("10.0.0.{id}:443").parse().unwrap(),
            weight,
            backup,
            active: true,
        })
    }

    fn picks(rr: &RoundRobin, n: usize) -> Vec<u32> {
        (0..n).map(|_| rr.pick().unwrap().id).collect()
    }

    #[test]
    fn weights_are_honoured_and_interleaved() {
        let rr = RoundRobin::new(vec![server(1, 3, false), server(2, 1, false)]);
        let p = picks(&rr, 40);
        assert_eq!(p.iter().filter(|&&id| id == 1).count(), 30);
        // Smooth: server 2 never waits more than 3 picks.
        assert!(p.windows(4).all(|w| w.contains(&2)));
    }

    #[test]
    fn zero_weight_and_inactive_servers_take_nothing() {
        let mut inactive = (*server(3, 1, false)).clone();
        inactive.active = false;
        let rr = RoundRobin::new(vec![server(1, 1, false), server(2, 0, false), Arc::new(inactive)]);
        assert!(picks(&rr, 10).iter().all(|&id| id == 1));
    }

    #[test]
    fn backups_serve_only_without_regular_servers() {
        let rr = RoundRobin::new(vec![server(1, 1, false), server(2, 1, true)]);
        assert!(picks(&rr, 10).iter().all(|&id| id == 1));
        let rr = RoundRobin::new(vec![server(1, 0, false), server(2, 1, true)]);
        assert!(picks(&rr, 10).iter().all(|&id| id == 2));
    }

    #[test]
    fn retry_skips_the_refusing_server() {
        let rr = RoundRobin::new(vec![server(1, 1, false), server(2, 1, false)]);
        for _ in 0..10 {
            assert_eq!(rr.pick_excluding(Some(1)).unwrap().id, 2);
        }
        let alone = RoundRobin::new(vec![server(1, 1, false)]);
        assert!(alone.pick_excluding(Some(1)).is_none());
    }

    #[test]
    fn empty_farm_picks_nothing() {
        assert!(RoundRobin::new(vec![]).pick().is_none());
    }
}
