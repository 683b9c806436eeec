//! `cargo xtask demo --cluster`: one zone served by three load-balancer nodes, end to end, in
//! throw-away network namespaces (the kit's `lb_tests::lb_cluster`).
//!
//! etcd, a BGP router (BIRD) and the TLS backends run in the router namespace; each of three
//! node namespaces runs BIRD and `lb-user serve --store etcd://… --bgp-include …`, and the router
//! spreads the VIP over the nodes that announce it (resilient nexthop group). Real
//! `curl --http2` / `--http1.1` requests through the VIP print the farm and server that answered
//! and the node that relayed them (the backend's `x-lb-peer`). Then node 1's API adds a route and
//! one refresh reaches the three nodes; then node 2 crashes (`kill -9` of its daemon and its
//! BIRD) and new requests still succeed through nodes 1 and 3. Exits non-zero if anything is off.
//! Binaries: `LB_USER_BIN`, `LB_BACKEND_BIN` (default: next to this binary, else `target/debug`).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use lb_tests::bgp::{EcmpMode, VIP4};
use lb_tests::is_root;
use lb_tests::lb_cluster::{node_name, LbCluster, LbClusterOpts, BACKENDS, BACKEND_PORT, SERVICE};
use serde_json::json;

fn main() -> ExitCode {
    if !is_root() {
        eprintln!("lb-demo-cluster needs root (network namespaces)");
        return ExitCode::FAILURE;
    }
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("demo FAILED: see the lines marked UNEXPECTED");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("demo FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One request through the VIP: prints a line, returns whether it landed as expected.
fn request(lb: &LbCluster, flag: &str, host: &str, farm: &str, nodes: &[u8]) -> Result<bool> {
    let (result, node) = lb.curl(flag, host)?;
    let via = node.map_or("an unknown node".to_string(), node_name);
    let ok = result.exit_ok && result.code == 200 && result.backend().starts_with(farm) && node.is_some_and(|n| nodes.contains(&n));
    let mark = if ok { "" } else { "   <-- UNEXPECTED" };
    if result.exit_ok {
        println!("  curl {flag:<9} https://{host:<15} -> {} from {} via {via}{mark}", result.status_line(), result.backend());
    } else {
        println!("  curl {flag:<9} https://{host:<15} -> failed: {}{mark}", result.stderr);
    }
    Ok(ok)
}

fn run() -> Result<bool> {
    let started = Instant::now();
    let mut opts = LbClusterOpts::new(3, EcmpMode::Resilient);
    opts.print_logs = false;
    opts.drain_timeout = Duration::from_secs(2);
    let mut lb = LbCluster::start(opts).context("starting the cluster")?;
    let ok = scenario(&mut lb, started);
    if !matches!(ok, Ok(true)) {
        eprintln!("--- diagnostics ---\n{}", lb.diagnostics());
    }
    ok
}

fn scenario(lb: &mut LbCluster, started: Instant) -> Result<bool> {
    let ns = lb.cluster.namespaces();
    println!("namespaces: {}", ns.join(", "));
    let backends: Vec<String> = BACKENDS.iter().map(|(addr, _, name)| format!("{name} {addr}:{BACKEND_PORT}")).collect();
    println!("router namespace: BIRD (AS 65000), etcd on port {}, backends {}", lb.etcd.port(), backends.join(", "));
    println!(
        "nodes nd1, nd2, nd3: lb-user (--store etcd, --bgp-include) and BIRD (AS 65001) each; VIP {VIP4} via {} ({:.1} s to set up)\n",
        lb.nexthop_nodes()?.into_iter().map(node_name).collect::<Vec<_>>().join(", "),
        started.elapsed().as_secs_f64()
    );

    let all = [1, 2, 3];
    let mut ok = true;
    println!("the seed (frontend 443 on the VIP, http/2.0 -> farm h2, default farm h1), through the VIP:");
    for _ in 0..3 {
        ok &= request(lb, "--http2", "h2.lb.test", "farm h2", &all)?;
        ok &= request(lb, "--http1.1", "h1.lb.test", "farm h1", &all)?;
    }
    ok &= request(lb, "--http2", "legacy.lb.test", "farm h2", &all)?;

    let api = lb.api(1);
    println!("\nnode 1's API: a route sending SNI legacy.lb.test to farm h1, evaluated first; one refresh");
    let route = api.create(
        "/tcp/route",
        json!({"action": {"type": "farm", "target": lb.seeded.h1_farm.to_string()}, "frontendId": lb.seeded.frontend, "weight": 0, "displayName": "legacy"}),
    )?;
    let route_id = route["routeId"].as_u64().context("no routeId")?;
    api.create(&format!("/tcp/route/{route_id}/rule"), json!({"field": "sni", "match": "is", "pattern": "legacy.lb.test"}))?;
    let asked = Instant::now();
    let task = api.refresh(None)?;
    println!(
        "  POST /ipLoadbalancing/{SERVICE}/refresh -> task {} {} after {} ms",
        task["id"],
        task["status"].as_str().unwrap_or("?"),
        asked.elapsed().as_millis()
    );
    ok &= task["status"] == "done";
    let nodes = lb.zone_nodes(1)?;
    let revisions: Vec<i64> = nodes.iter().map(|n| n["appliedRevision"].as_i64().unwrap_or(-1)).collect();
    let same = nodes.len() == 3 && revisions.iter().all(|r| *r > 0 && *r == revisions[0]);
    println!("  GET /ipLoadbalancing/{SERVICE}/zone/local/node:{}", if same { "" } else { "   <-- UNEXPECTED" });
    for node in &nodes {
        println!("    {} appliedRevision {} ({})", node["name"].as_str().unwrap_or("?"), node["appliedRevision"], node["state"].as_str().unwrap_or("?"));
    }
    ok &= same;
    for _ in 0..3 {
        ok &= request(lb, "--http2", "legacy.lb.test", "farm h1", &all)?;
    }
    ok &= request(lb, "--http2", "h2.lb.test", "farm h2", &all)?;

    println!("\nnode 2 crashes: kill -9 of its lb-user and its BIRD");
    let crashed = Instant::now();
    lb.crash(2)?;
    lb.wait_nexthops(2, Duration::from_secs(10))?;
    let via: Vec<String> = lb.nexthop_nodes()?.into_iter().map(node_name).collect();
    println!("  router: VIP {VIP4} via {} {} ms after the crash", via.join(", "), crashed.elapsed().as_millis());
    for _ in 0..3 {
        ok &= request(lb, "--http2", "h2.lb.test", "farm h2", &[1, 3])?;
        ok &= request(lb, "--http1.1", "h1.lb.test", "farm h1", &[1, 3])?;
    }
    ok &= request(lb, "--http2", "legacy.lb.test", "farm h1", &[1, 3])?;
    println!("\n{}", if ok { "every request landed where expected" } else { "some requests did not land where expected" });
    Ok(ok)
}
