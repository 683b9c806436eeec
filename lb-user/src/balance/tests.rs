use std::collections::HashMap;

use super::*;
use crate::server_state::ServerRuntime;

fn server(id: u32, weight: u32, backup: bool) -> Arc<ServerPlan> {
    Arc::new(ServerPlan {
        id,
        name: format!("s{id}"),
        address: format!("10.0.0.{id}:443").parse().unwrap(),
        weight,
        backup,
        active: true,
        maxconn: None,
        runtime: Arc::new(ServerRuntime::default()),
        ..ServerPlan::test_default()
    })
}

fn client(i: u32) -> IpAddr {
    IpAddr::from((0x0a00_0000u32 + i).to_be_bytes())
}

fn counts(b: &Balancer, n: u32) -> HashMap<u32, usize> {
    let mut seen = HashMap::new();
    for i in 0..n {
        *seen.entry(b.pick(client(i), &[]).unwrap().id).or_default() += 1;
    }
    seen
}

fn mark_down(s: &ServerPlan) {
    s.runtime.record_probe(Err("test".into()));
    s.runtime.record_probe(Err("test".into()));
}

#[test]
fn round_robin_honours_weights() {
    let b = Balancer::new(Balance::Roundrobin, &[server(1, 3, false), server(2, 1, false)], None);
    let c = counts(&b, 40);
    assert_eq!((c[&1], c[&2]), (30, 10));
}

#[test]
fn a_server_that_fails_to_connect_meets_only_its_share_of_connections() {
    // Server 1 accepts nothing (a blackhole, not yet marked down): every connection that
    // picks it retries on another. It must stay first for its share only, not for all.
    for servers in [2u32, 3] {
        let b = Balancer::new(Balance::Roundrobin, &(1..=servers).map(|id| server(id, 1, false)).collect::<Vec<_>>(), None);
        let mut met_dead = 0;
        for i in 0..60 {
            let first = b.pick(client(i), &[]).unwrap().id;
            if first == 1 {
                met_dead += 1;
                assert_ne!(b.pick(client(i), &[1]).unwrap().id, 1);
            }
        }
        assert_eq!(met_dead, 60 / servers as usize, "{servers} servers");
    }
}

#[test]
fn zero_weight_inactive_and_down_servers_take_nothing() {
    let mut inactive = (*server(3, 1, false)).clone();
    inactive.active = false;
    let down = server(4, 1, false);
    mark_down(&down);
    let b = Balancer::new(Balance::Roundrobin, &[server(1, 1, false), server(2, 0, false), Arc::new(inactive), down], None);
    assert_eq!(counts(&b, 10).keys().copied().collect::<Vec<_>>(), vec![1]);
}

#[test]
fn backups_serve_only_when_every_regular_server_is_down() {
    let regular = server(1, 1, false);
    let b = Balancer::new(Balance::Roundrobin, &[Arc::clone(&regular), server(2, 1, true)], None);
    assert_eq!(b.pick(client(0), &[]).unwrap().id, 1);
    mark_down(&regular);
    assert_eq!(b.pick(client(0), &[]).unwrap().id, 2);
    regular.runtime.record_probe(Ok(()));
    assert_eq!(b.pick(client(0), &[]).unwrap().id, 1);
}

#[test]
fn retry_excludes_the_refusing_server() {
    let b = Balancer::new(Balance::Roundrobin, &[server(1, 1, false), server(2, 1, false)], None);
    for i in 0..10 {
        assert_eq!(b.pick(client(i), &[1]).unwrap().id, 2);
    }
}

#[test]
fn leastconn_prefers_fewest_connections_per_weight() {
    let a = server(1, 1, false);
    let c = server(2, 2, false);
    let b = Balancer::new(Balance::Leastconn, &[Arc::clone(&a), Arc::clone(&c)], None);
    let mut slots = Vec::new();
    for i in 0..30 {
        let s = b.pick(client(i), &[]).unwrap();
        slots.push(s.runtime.occupy());
    }
    // Weighted 1:2 → 10 and 20 live connections.
    assert_eq!((a.runtime.active_connections(), c.runtime.active_connections()), (10, 20));
}

#[test]
fn first_fills_lowest_id_up_to_maxconn() {
    let mut one = (*server(1, 1, false)).clone();
    one.maxconn = Some(2);
    let one = Arc::new(one);
    let two = server(2, 1, false);
    let b = Balancer::new(Balance::First, &[Arc::clone(&two), Arc::clone(&one)], None);
    let s1 = b.pick(client(0), &[]).unwrap().runtime.occupy();
    let s2 = b.pick(client(1), &[]).unwrap().runtime.occupy();
    assert_eq!(one.runtime.active_connections(), 2);
    assert_eq!(b.pick(client(2), &[]).unwrap().id, 2);
    drop((s1, s2));
    assert_eq!(b.pick(client(3), &[]).unwrap().id, 1);
}

#[test]
fn source_hash_is_stable_and_spreads_by_weight() {
    let servers = [server(1, 1, false), server(2, 1, false), server(3, 2, false)];
    let a = Balancer::new(Balance::Source, &servers, None);
    let b = Balancer::new(Balance::Source, &servers, None);
    for i in 0..1_000 {
        assert_eq!(a.pick(client(i * 31), &[]).unwrap().id, b.pick(client(i * 31), &[]).unwrap().id);
    }
    let c = counts(&a, 20_000);
    let share = c[&3] as f64 / 20_000.0;
    assert!((share - 0.5).abs() < 0.03, "weight-2 server share {share}");
}

#[test]
fn sticky_client_keeps_its_server_until_it_goes_down() {
    let servers = [server(1, 1, false), server(2, 1, false)];
    let b = Balancer::new(Balance::Roundrobin, &servers, Some(Arc::new(StickyTable::new())));
    let first = b.pick(client(7), &[]).unwrap().id;
    for _ in 0..10 {
        assert_eq!(b.pick(client(7), &[]).unwrap().id, first);
    }
    let chosen = servers.iter().find(|s| s.id == first).unwrap();
    mark_down(chosen);
    let moved = b.pick(client(7), &[]).unwrap().id;
    assert_ne!(moved, first);
    chosen.runtime.record_probe(Ok(()));
    assert_eq!(b.pick(client(7), &[]).unwrap().id, moved, "the new server sticks");
}
