//! The routed-cluster kit: BIRD 2 routers and node speakers in namespaces, ECMP over nodes, and
//! what happens to flows of surviving nodes when one node leaves (hash-threshold vs resilient
//! nexthop groups). Figures are printed (`--nocapture`) and written up in docs/cluster-kit.md.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use lb_tests::bgp::config::Timers;
use lb_tests::bgp::resilient::ResilientRoutes;
use lb_tests::bgp::{spread, Cluster, EcmpMode, Probe, STAGING_TABLE, VIP4, VIP6};
use lb_tests::require_root;

const ROUTE_WAIT: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs `body`; on failure, the cluster's routes, sessions and BIRD logs join the error.
fn with_diagnostics(cluster: &mut Cluster, body: impl FnOnce(&mut Cluster) -> Result<()>) -> Result<()> {
    body(cluster).map_err(|e| {
        let diag = cluster.diagnostics();
        e.context(diag)
    })
}

#[test]
fn vip_learnt_from_two_nodes_and_connections_spread_over_both() -> Result<()> {
    require_root!();
    let mut cluster = Cluster::start(2, EcmpMode::HashThreshold, Timers::default())?;
    with_diagnostics(&mut cluster, |cluster| {
        let took = cluster.wait_nexthops(IpAddr::V4(VIP4), 2, ROUTE_WAIT)?;
        eprintln!("kit_bgp: router BIRD config:\n{}", cluster.router.config_text());
        eprintln!("kit_bgp: node 1 BIRD config:\n{}", cluster.nodes[0].speaker.bird.config_text());
        eprintln!("kit_bgp: both nodes' routes to {VIP4} installed {took:?} after the BIRD daemons started");
        cluster.wait_nexthops(IpAddr::V6(VIP6), 2, ROUTE_WAIT)?;

        let routes = cluster.router.birdc(&["show", "route", "for", &VIP4.to_string(), "all"])?;
        for node in &cluster.nodes {
            ensure!(routes.contains(&node.addr4().to_string()), "birdc show route lacks node {}:\n{routes}", node.index);
        }
        let mut gateways = cluster.nexthops(IpAddr::V4(VIP4), None)?;
        gateways.sort();
        ensure!(gateways == ["10.78.1.2".parse::<IpAddr>()?, "10.78.2.2".parse()?], "ip route: {gateways:?}");

        for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
            let conns = cluster.connect_many(vip, 64, CONNECT_TIMEOUT)?;
            let by_node = spread(&conns);
            eprintln!("kit_bgp: 64 connections to {vip} by node: {by_node:?}");
            ensure!(by_node.len() == 2 && by_node.values().all(|&n| n > 0), "connections to {vip} did not spread over both nodes: {by_node:?}");
        }
        let accepted: Vec<usize> = cluster.nodes.iter().map(|n| n.echo.accepted()).collect();
        ensure!(accepted.iter().sum::<usize>() == 128 && accepted.iter().all(|&a| a > 0), "nodes accepted {accepted:?}");
        Ok(())
    })
}

/// What became of the connections of the nodes that stayed, after one node withdrew.
struct Survivors {
    total: usize,
    outcomes: BTreeMap<Probe, usize>,
}

impl Survivors {
    fn broken(&self) -> usize {
        self.total - self.outcomes.get(&Probe::Echoed).copied().unwrap_or(0)
    }
}

/// Opens `conns` long-lived connections to each VIP (IPv4 and IPv6) over `nodes` nodes,
/// withdraws the node that the router's IPv4 route lists first (with hash-threshold, the one
/// whose leaving shifts the most ranges), then probes every connection held by the other nodes;
/// then the node announces again and the connections that survived are probed once more.
/// Returns, per VIP, what became of the survivors on the leave and on the return.
fn survivors_after_withdraw(mode: EcmpMode, nodes: u8, conns: usize) -> Result<BTreeMap<IpAddr, (Survivors, Survivors)>> {
    let mut cluster = Cluster::start(nodes, mode, Timers::default())?;
    let mut resilient = ResilientRoutes::new(&cluster.router_ns.clone(), STAGING_TABLE, 128);
    let vips = [IpAddr::V4(VIP4), IpAddr::V6(VIP6)];
    let mut results = BTreeMap::new();
    with_diagnostics(&mut cluster, |cluster| {
        for vip in vips {
            cluster.wait_nexthops(vip, nodes as usize, ROUTE_WAIT)?;
            if mode == EcmpMode::Resilient {
                let members = resilient.sync(vip)?;
                ensure!(members.len() == nodes as usize, "resilient group members for {vip}: {members:?}");
                eprintln!("kit_bgp: {vip}: resilient buckets per member: {:?}", resilient.bucket_counts(vip)?);
            }
        }
        let first_gateway = *cluster.nexthops(vips[0], cluster.bird_table())?.first().context("no nexthop")?;
        let leaving = cluster.nodes.iter().find(|n| IpAddr::V4(n.addr4()) == first_gateway).context("first gateway is no node")?.index;

        let mut held = BTreeMap::new();
        for vip in vips {
            let mut conns = cluster.connect_many(vip, conns, CONNECT_TIMEOUT)?;
            let by_node = spread(&conns);
            ensure!(by_node.len() == nodes as usize, "connections to {vip} did not reach every node: {by_node:?}");
            // Every connection works before anything changes.
            for c in conns.iter_mut() {
                ensure!(c.probe() == Probe::Echoed, "connection to {vip} on {} failed before the withdrawal", c.node);
            }
            eprintln!("kit_bgp [{mode:?}]: {vip}: connections by node {by_node:?}");
            held.insert(vip, conns);
        }

        cluster.node(leaving)?.speaker.withdraw()?;
        for vip in vips {
            let took = cluster.wait_nexthops(vip, nodes as usize - 1, ROUTE_WAIT)?;
            if mode == EcmpMode::Resilient {
                let members = resilient.sync(vip)?;
                ensure!(members.len() == nodes as usize - 1, "resilient group members for {vip} after the withdrawal: {members:?}");
                eprintln!("kit_bgp: {vip}: resilient buckets per member after the withdrawal: {:?}", resilient.bucket_counts(vip)?);
            }
            eprintln!("kit_bgp [{mode:?}]: node {leaving} withdrew; router's route to {vip} updated after {took:?}");
        }

        let leaving_name = format!("nd{leaving}");
        let mut alive: BTreeMap<IpAddr, Vec<usize>> = BTreeMap::new();
        for (vip, conns) in held.iter_mut() {
            let mut outcomes = BTreeMap::new();
            let mut total = 0;
            for (i, c) in conns.iter_mut().enumerate().filter(|(_, c)| c.node != leaving_name) {
                total += 1;
                let probe = c.probe();
                if probe == Probe::Echoed {
                    alive.entry(*vip).or_default().push(i);
                }
                *outcomes.entry(probe).or_insert(0) += 1;
            }
            results.insert(*vip, (Survivors { total, outcomes }, Survivors { total: 0, outcomes: BTreeMap::new() }));
        }

        // The node comes back: do the connections that survived its leaving survive its return?
        let all = [IpAddr::V4(VIP4), IpAddr::V6(VIP6)];
        cluster.node(leaving)?.speaker.announce(&all)?;
        for vip in vips {
            let took = cluster.wait_nexthops(vip, nodes as usize, ROUTE_WAIT)?;
            if mode == EcmpMode::Resilient {
                resilient.sync(vip)?;
                eprintln!("kit_bgp: {vip}: resilient buckets per member after node {leaving} came back: {:?}", resilient.bucket_counts(vip)?);
            }
            eprintln!("kit_bgp [{mode:?}]: node {leaving} announced again; router's route to {vip} updated after {took:?}");
        }
        for (vip, conns) in held.iter_mut() {
            let rejoin = &mut results.get_mut(vip).context("no result")?.1;
            for &i in alive.get(vip).map(Vec::as_slice).unwrap_or_default() {
                rejoin.total += 1;
                *rejoin.outcomes.entry(conns[i].probe()).or_insert(0) += 1;
            }
        }
        Ok(())
    })?;
    Ok(results)
}

#[test]
fn surviving_flows_when_a_node_leaves_hash_threshold_vs_resilient() -> Result<()> {
    require_root!();
    const NODES: u8 = 3;
    const CONNS: usize = 96;
    for (mode, label) in [(EcmpMode::HashThreshold, "hash-threshold ECMP"), (EcmpMode::Resilient, "resilient nexthop group (128 buckets)")] {
        let results = survivors_after_withdraw(mode, NODES, CONNS)?;
        for (vip, (leave, rejoin)) in &results {
            eprintln!(
                "kit_bgp: {label}, {vip}, {NODES} nodes, {CONNS} connections, first-listed node withdrawn: {} of {} surviving-node connections broke ({:?}); when it came back: {} of {} broke ({:?})",
                leave.broken(),
                leave.total,
                leave.outcomes,
                rejoin.broken(),
                rejoin.total,
                rejoin.outcomes
            );
            if mode == EcmpMode::Resilient {
                ensure!(leave.total > 0 && rejoin.total > 0, "{vip}: no surviving connections were probed");
                ensure!(
                    leave.broken() == 0,
                    "{vip}: with a resilient group {} of {} surviving connections broke: {:?}",
                    leave.broken(),
                    leave.total,
                    leave.outcomes
                );
                ensure!(
                    rejoin.broken() == 0,
                    "{vip}: with a resilient group {} of {} connections broke when the node came back: {:?}",
                    rejoin.broken(),
                    rejoin.total,
                    rejoin.outcomes
                );
            }
        }
    }
    Ok(())
}

/// Waits for `count` nexthops and returns the time since `since`.
fn converged(cluster: &Cluster, count: usize, since: Instant) -> Result<Duration> {
    cluster.wait_nexthops(IpAddr::V4(VIP4), count, ROUTE_WAIT)?;
    Ok(since.elapsed())
}

#[test]
fn convergence_after_withdraw_kill9_and_hang() -> Result<()> {
    require_root!();
    let timers = Timers::default();
    let mut cluster = Cluster::start(2, EcmpMode::HashThreshold, timers)?;
    with_diagnostics(&mut cluster, |cluster| {
        converged(cluster, 2, Instant::now())?;

        let t = Instant::now();
        cluster.node(2)?.speaker.withdraw()?;
        let withdraw = converged(cluster, 1, t)?;
        let t = Instant::now();
        let vips = [IpAddr::V4(VIP4), IpAddr::V6(VIP6)];
        cluster.node(2)?.speaker.announce(&vips)?;
        let announce = converged(cluster, 2, t)?;

        let t = Instant::now();
        cluster.node(2)?.speaker.bird.kill9();
        let kill9 = converged(cluster, 1, t)?;
        let t = Instant::now();
        cluster.node(2)?.speaker.bird.restart()?;
        let restart = converged(cluster, 2, t)?;

        let t = Instant::now();
        cluster.node(2)?.speaker.bird.freeze()?;
        let hang = converged(cluster, 1, t);
        cluster.node(2)?.speaker.bird.thaw()?;
        let hang = hang?;

        eprintln!(
            "kit_bgp: router route update (hold {} s, keepalive {} s, connect retry {} s): withdraw {withdraw:?}, re-announce {announce:?}, kill -9 {kill9:?}, restart {restart:?}, SIGSTOP (hold timer) {hang:?}",
            timers.hold, timers.keepalive, timers.connect_retry
        );
        ensure!(hang >= Duration::from_secs(timers.hold as u64) - Duration::from_millis(1100), "a hung node was dropped before its hold time: {hang:?}");
        ensure!(hang <= Duration::from_secs(timers.hold as u64 + 2), "a hung node outlived its hold time by over 2 s: {hang:?}");
        Ok(())
    })
}

/// The generated configs are accepted by BIRD's own parser (`bird -p`), not only by the
/// string checks of the unit tests.
#[test]
fn generated_configs_parse_with_bird() -> Result<()> {
    use lb_tests::bgp::config::{bird_config, bird_config_with_include, router_config, KernelTable, Neighbour};
    ensure!(std::path::Path::new("/usr/sbin/bird").is_file(), "BIRD 2 is not installed: `apt-get install -y bird2`");
    let dir = tempfile::tempdir()?;
    let vips: Vec<IpAddr> = vec![IpAddr::V4(VIP4), IpAddr::V6(VIP6)];
    let routers = [Neighbour::new("rtr_v4", "10.78.1.1".parse()?, 65000), Neighbour::new("rtr_v6", "fd78:1::1".parse()?, 65000)];
    let nodes = [Neighbour::new("nd1_v4", "10.78.1.2".parse()?, 65001), Neighbour::new("nd1_v6", "fd78:1::2".parse()?, 65001)];
    let log = dir.path().join("bird.log");
    // The operator's config including the daemon's file, with VIPs and without.
    let include = dir.path().join("lb-vips.conf");
    let empty_include = dir.path().join("lb-vips-empty.conf");
    std::fs::write(&include, lb_user::cluster::bgp::vip_protocols(&vips))?;
    std::fs::write(&empty_include, lb_user::cluster::bgp::vip_protocols(&[]))?;
    let configs = [
        bird_config("10.78.1.2".parse()?, 65001, &routers, &vips, Timers::default(), None),
        bird_config("10.78.1.2".parse()?, 65001, &routers, &[], Timers::default(), Some(&log)),
        bird_config_with_include("10.78.1.2".parse()?, 65001, &routers, &include, Timers::default(), None),
        bird_config_with_include("10.78.1.2".parse()?, 65001, &routers, &empty_include, Timers::default(), None),
        router_config("10.78.0.1".parse()?, 65000, &nodes, KernelTable::Main, Timers::default(), None),
        router_config("10.78.0.1".parse()?, 65000, &nodes, KernelTable::Staging(STAGING_TABLE), Timers::default(), None),
    ];
    for (i, text) in configs.iter().enumerate() {
        let path = dir.path().join(format!("{i}.conf"));
        std::fs::write(&path, text)?;
        let out = lb_tests::proc::output_with_timeout(std::process::Command::new("/usr/sbin/bird").arg("-p").arg("-c").arg(&path), Duration::from_secs(10))?;
        ensure!(
            out.status.success() && out.stderr.is_empty(),
            "bird -p rejected config {i} ({}):\n{}\n{text}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
