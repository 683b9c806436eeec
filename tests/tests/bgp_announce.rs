//! The daemon's side of BGP (docs/cluster-kit.md): `lb_user::cluster::bgp::BirdAnnouncer` writes
//! the include file of each node's BIRD, running the operator's config
//! ([`bird_config_with_include`](lb_tests::bgp::config::bird_config_with_include)), and the
//! kit's router learns the VIPs from every node that announces them. Needs root (namespaces).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use lb_tests::bgp::config::Timers;
use lb_tests::bgp::{spread, Announcing, Cluster, EcmpMode, Node, VIP4, VIP6};
use lb_tests::netns::in_netns;
use lb_tests::require_root;
use lb_user::cluster::bgp::{run, vip_protocols, BirdAnnouncer};
use tokio::sync::watch;

const ROUTE_WAIT: Duration = Duration::from_secs(20);

/// Runs `body` on a runtime of its own in `node`'s namespace, where the daemon would run (BIRD's
/// control socket is a path, so birdc reaches it from any namespace).
fn in_node<T: Send, E: Into<anyhow::Error>, F: Future<Output = Result<T, E>>>(node: &Node, body: impl FnOnce() -> F + Send) -> Result<T> {
    in_netns(&node.ns, || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("tokio runtime")?;
        runtime.block_on(body()).map_err(Into::into)
    })
}

fn announcer(node: &Node) -> Result<BirdAnnouncer> {
    let include = node.include_file().context("the node's BIRD has no include file")?;
    Ok(BirdAnnouncer::new(include.to_path_buf(), node.speaker.bird.socket()))
}

/// The router's nexthops for `vip`, sorted.
fn gateways(cluster: &Cluster, vip: IpAddr) -> Result<Vec<IpAddr>> {
    let mut hops = cluster.nexthops(vip, cluster.bird_table())?;
    hops.sort();
    Ok(hops)
}

#[test]
fn bird_announcer_on_two_nodes_gives_the_router_two_nexthops_and_withdraws_one() -> Result<()> {
    require_root!();
    let cluster = Cluster::start_announcing(2, EcmpMode::HashThreshold, Timers::default(), Announcing::Daemon)?;
    let result = scenario(&cluster);
    result.map_err(|e| e.context(cluster.diagnostics()))
}

fn scenario(cluster: &Cluster) -> Result<()> {
    let vips = vec![IpAddr::V4(VIP4), IpAddr::V6(VIP6)];
    let (nd1, nd2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let (ann1, ann2) = (announcer(nd1)?, announcer(nd2)?);

    // Nothing is announced until the daemon says so: the include file starts empty.
    let took = cluster.wait_established(ROUTE_WAIT)?;
    eprintln!("bgp_announce: the router's sessions to both nodes established {took:?} after the check started");
    for vip in &vips {
        ensure!(gateways(cluster, *vip)?.is_empty(), "the router has a route to {vip} before any announcement");
    }
    let sessions = sessions_since(cluster)?;

    in_node(nd1, || ann1.announce(&vips))?;
    in_node(nd2, || ann2.announce(&[IpAddr::V6(VIP6), IpAddr::V4(VIP4), IpAddr::V4(VIP4)]))?;
    for vip in &vips {
        let took = cluster.wait_nexthops(*vip, 2, ROUTE_WAIT)?;
        eprintln!("bgp_announce: {vip} reached through both nodes {took:?} after the second announcement");
        let mut expected = vec![nd1.addr_for(*vip), nd2.addr_for(*vip)];
        expected.sort();
        ensure!(gateways(cluster, *vip)? == expected, "router's nexthops for {vip}: {:?}, expected {expected:?}", gateways(cluster, *vip)?);
    }
    let text = std::fs::read_to_string(nd1.include_file().context("include")?)?;
    ensure!(text == vip_protocols(&vips), "node 1's include file:\n{text}");
    let conns = cluster.connect_many(IpAddr::V4(VIP4), 32, Duration::from_secs(3))?;
    let by_node = spread(&conns);
    ensure!(by_node.len() == 2, "32 connections to {VIP4} did not reach both nodes: {by_node:?}");
    drop(conns);

    // The same set again: nothing to do, still accepted.
    in_node(nd1, || ann1.announce(&vips))?;

    in_node(nd2, || ann2.withdraw())?;
    for vip in &vips {
        let took = cluster.wait_nexthops(*vip, 1, ROUTE_WAIT)?;
        eprintln!("bgp_announce: node 2 withdrew {vip}; router updated after {took:?}");
        ensure!(gateways(cluster, *vip)? == [nd1.addr_for(*vip)], "router's nexthop for {vip} after node 2 withdrew: {:?}", gateways(cluster, *vip)?);
    }
    ensure!(ann1.announced() == vips, "node 1 announced {:?}", ann1.announced());
    ensure!(ann2.announced().is_empty(), "node 2 announced {:?} after withdrawing", ann2.announced());
    let text = std::fs::read_to_string(nd2.include_file().context("include")?)?;
    ensure!(text == vip_protocols(&[]), "node 2's include file after withdrawing:\n{text}");
    // Announcing and withdrawing changed routes, not sessions: none went down and up again.
    sessions_unchanged(cluster, &sessions)?;
    let protocols = nd2.speaker.bird.birdc(&["show", "protocols"])?;
    ensure!(protocols.contains("lb_vips4") && protocols.contains("lb_vips6"), "node 2's BIRD lost its (empty) VIP protocols:\n{protocols}");

    // The supervising task on node 2: one family, then both, then the channel closes.
    in_node(nd2, || async {
        let (tx, rx) = watch::channel(vec![IpAddr::V4(VIP4)]);
        let task = tokio::spawn(run(announcer(nd2)?, rx));
        wait_async(cluster, IpAddr::V4(VIP4), 2).await?;
        ensure!(gateways(cluster, IpAddr::V6(VIP6))?.len() == 1, "node 2 announced {VIP6} too early");
        tx.send(vips.clone())?;
        wait_async(cluster, IpAddr::V6(VIP6), 2).await?;
        drop(tx);
        tokio::time::timeout(Duration::from_secs(10), task).await.context("run did not return once the channel closed")??;
        Ok::<_, anyhow::Error>(())
    })?;
    for vip in &vips {
        cluster.wait_nexthops(*vip, 1, ROUTE_WAIT).with_context(|| format!("{vip} still announced by node 2 after run returned"))?;
    }
    Ok(())
}

/// The router's BGP sessions and when each last changed state (`birdc show protocols`: name,
/// protocol, table, state, since, info).
fn sessions_since(cluster: &Cluster) -> Result<BTreeMap<String, String>> {
    let text = cluster.router.birdc(&["show", "protocols"])?;
    let sessions: BTreeMap<String, String> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.get(1) == Some(&"BGP"))
        .map(|f| (f[0].to_string(), f.get(4).map_or(String::new(), |s| s.to_string())))
        .collect();
    ensure!(sessions.len() == 2 * cluster.nodes.len(), "the router's sessions:\n{text}");
    Ok(sessions)
}

/// Fails when a session's "since" time moved. A session that went down and up again keeps its
/// new time, so one read that differs and a second that matches the first is a transient read
/// (seen once in a new-user run: both later reads matched), logged rather than failed.
fn sessions_unchanged(cluster: &Cluster, before: &BTreeMap<String, String>) -> Result<()> {
    let first = sessions_since(cluster)?;
    if first == *before {
        return Ok(());
    }
    std::thread::sleep(Duration::from_millis(500));
    let second = sessions_since(cluster)?;
    ensure!(second == *before, "the router's sessions changed state: {before:?}, then {first:?}, then {second:?}");
    eprintln!("bgp_announce: one read of the router's sessions differed and the next matched: {first:?} against {before:?}");
    Ok(())
}

/// [`Cluster::wait_nexthops`] for async code: polls without blocking the runtime between probes.
async fn wait_async(cluster: &Cluster, vip: IpAddr, count: usize) -> Result<()> {
    let deadline = tokio::time::Instant::now() + ROUTE_WAIT;
    loop {
        let hops = gateways(cluster, vip)?;
        if hops.len() == count {
            return Ok(());
        }
        ensure!(tokio::time::Instant::now() < deadline, "route to {vip} did not reach {count} nexthops within {ROUTE_WAIT:?} (last {hops:?})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
