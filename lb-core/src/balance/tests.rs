use std::{
    collections::HashMap,
    sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed},
};

use super::*;

fn server(id: u32, weight: u32, backup: bool) -> Backend {
    Backend { id, address: format!("10.0.0.{id}:443").parse().unwrap(), weight, backup, active: true, maxconn: None }
}

/// What the daemon keeps per server, reduced to what a pick reads.
struct Farm {
    backends: Vec<Backend>,
    up: Vec<AtomicBool>,
    connections: Vec<AtomicU32>,
}

impl Farm {
    fn new(backends: Vec<Backend>) -> Self {
        let n = backends.len();
        Self { backends, up: (0..n).map(|_| AtomicBool::new(true)).collect(), connections: (0..n).map(|_| AtomicU32::new(0)).collect() }
    }

    fn balancer(&self, balance: Balance, sticky: Option<Arc<StickyTable>>) -> Balancer {
        Balancer::new(balance, &self.backends, sticky)
    }

    fn index(&self, id: u32) -> usize {
        self.backends.iter().position(|b| b.id == id).unwrap()
    }

    fn set_up(&self, id: u32, up: bool) {
        self.up[self.index(id)].store(up, Relaxed);
    }

    fn connections(&self, id: u32) -> u32 {
        self.connections[self.index(id)].load(Relaxed)
    }

    /// The picked server's id.
    fn pick(&self, b: &Balancer, client: IpAddr, excluded: &[u32]) -> Option<u32> {
        b.pick(client, excluded, self).map(|i| self.backends[i].id)
    }

    /// Picks and holds a connection on the server, as the daemon's slot does.
    fn occupy(&self, b: &Balancer, client: IpAddr) -> u32 {
        let i = b.pick(client, &[], self).unwrap();
        self.connections[i].fetch_add(1, Relaxed);
        self.backends[i].id
    }

    fn release(&self, id: u32) {
        self.connections[self.index(id)].fetch_sub(1, Relaxed);
    }
}

impl Live for Farm {
    fn is_up(&self, index: usize) -> bool {
        self.up[index].load(Relaxed)
    }

    fn active_connections(&self, index: usize) -> u32 {
        self.connections[index].load(Relaxed)
    }
}

fn client(i: u32) -> IpAddr {
    IpAddr::from((0x0a00_0000u32 + i).to_be_bytes())
}

fn counts(farm: &Farm, b: &Balancer, n: u32) -> HashMap<u32, usize> {
    let mut seen = HashMap::new();
    for i in 0..n {
        *seen.entry(farm.pick(b, client(i), &[]).unwrap()).or_default() += 1;
    }
    seen
}

#[test]
fn round_robin_honours_weights() {
    let farm = Farm::new(vec![server(1, 3, false), server(2, 1, false)]);
    let b = farm.balancer(Balance::Roundrobin, None);
    let c = counts(&farm, &b, 40);
    assert_eq!((c[&1], c[&2]), (30, 10));
}

#[test]
fn a_server_that_fails_to_connect_meets_only_its_share_of_connections() {
    // Server 1 accepts nothing (a blackhole, not yet marked down): every connection that
    // picks it retries on another. It must stay first for its share only, not for all.
    for servers in [2u32, 3] {
        let farm = Farm::new((1..=servers).map(|id| server(id, 1, false)).collect());
        let b = farm.balancer(Balance::Roundrobin, None);
        let mut met_dead = 0;
        for i in 0..60 {
            let first = farm.pick(&b, client(i), &[]).unwrap();
            if first == 1 {
                met_dead += 1;
                assert_ne!(farm.pick(&b, client(i), &[1]).unwrap(), 1);
            }
        }
        assert_eq!(met_dead, 60 / servers as usize, "{servers} servers");
    }
}

#[test]
fn zero_weight_inactive_and_down_servers_take_nothing() {
    let mut inactive = server(3, 1, false);
    inactive.active = false;
    let farm = Farm::new(vec![server(1, 1, false), server(2, 0, false), inactive, server(4, 1, false)]);
    farm.set_up(4, false);
    let b = farm.balancer(Balance::Roundrobin, None);
    assert_eq!(counts(&farm, &b, 10).keys().copied().collect::<Vec<_>>(), vec![1]);
}

#[test]
fn backups_serve_only_when_every_regular_server_is_down() {
    let farm = Farm::new(vec![server(1, 1, false), server(2, 1, true)]);
    let b = farm.balancer(Balance::Roundrobin, None);
    assert_eq!(farm.pick(&b, client(0), &[]), Some(1));
    farm.set_up(1, false);
    assert_eq!(farm.pick(&b, client(0), &[]), Some(2));
    farm.set_up(1, true);
    assert_eq!(farm.pick(&b, client(0), &[]), Some(1));
}

#[test]
fn retry_excludes_the_refusing_server() {
    let farm = Farm::new(vec![server(1, 1, false), server(2, 1, false)]);
    let b = farm.balancer(Balance::Roundrobin, None);
    for i in 0..10 {
        assert_eq!(farm.pick(&b, client(i), &[1]), Some(2));
    }
}

#[test]
fn leastconn_prefers_fewest_connections_per_weight() {
    let farm = Farm::new(vec![server(1, 1, false), server(2, 2, false)]);
    let b = farm.balancer(Balance::Leastconn, None);
    for i in 0..30 {
        farm.occupy(&b, client(i));
    }
    // Weighted 1:2 → 10 and 20 live connections.
    assert_eq!((farm.connections(1), farm.connections(2)), (10, 20));
}

#[test]
fn first_fills_lowest_id_up_to_maxconn() {
    let mut one = server(1, 1, false);
    one.maxconn = Some(2);
    let farm = Farm::new(vec![server(2, 1, false), one]);
    let b = farm.balancer(Balance::First, None);
    let s1 = farm.occupy(&b, client(0));
    let s2 = farm.occupy(&b, client(1));
    assert_eq!(farm.connections(1), 2);
    assert_eq!(farm.pick(&b, client(2), &[]), Some(2));
    farm.release(s1);
    farm.release(s2);
    assert_eq!(farm.pick(&b, client(3), &[]), Some(1));
}

#[test]
fn source_hash_is_stable_and_spreads_by_weight() {
    let farm = Farm::new(vec![server(1, 1, false), server(2, 1, false), server(3, 2, false)]);
    let a = farm.balancer(Balance::Source, None);
    let b = farm.balancer(Balance::Source, None);
    for i in 0..1_000 {
        assert_eq!(farm.pick(&a, client(i * 31), &[]), farm.pick(&b, client(i * 31), &[]));
    }
    let c = counts(&farm, &a, 20_000);
    let share = c[&3] as f64 / 20_000.0;
    assert!((share - 0.5).abs() < 0.03, "weight-2 server share {share}");
}

#[test]
fn sticky_client_keeps_its_server_until_it_goes_down() {
    let farm = Farm::new(vec![server(1, 1, false), server(2, 1, false)]);
    let b = farm.balancer(Balance::Roundrobin, Some(Arc::new(StickyTable::new())));
    let first = farm.pick(&b, client(7), &[]).unwrap();
    for _ in 0..10 {
        assert_eq!(farm.pick(&b, client(7), &[]), Some(first));
    }
    farm.set_up(first, false);
    let moved = farm.pick(&b, client(7), &[]).unwrap();
    assert_ne!(moved, first);
    farm.set_up(first, true);
    assert_eq!(farm.pick(&b, client(7), &[]), Some(moved), "the new server sticks");
}
