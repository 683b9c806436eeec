//! Balancing on real connections through the daemon, measured against weights; and the
//! Maglev source hash's agreement between independent processes.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use lb_tests::client::{https_get, TlsClient};
use lb_tests::config::{Config, Farm, Frontend, Server};
use lb_tests::lab::standard::*;
use lb_tests::{require_root, Lab};

const CONNECTIONS: usize = 1_000;

/// The h1 farm's two servers (ids 3 and 4) with the given weights and algorithm.
fn h1_config(balance: &str, weights: (u16, u16), tweak: impl Fn(Farm) -> Farm) -> Config {
    let farm = Farm::new(H1_FARM, "h1")
        .port(8443)
        .balance(balance)
        .server(Server::new(3, "10.77.2.4", 8443).weight(weights.0))
        .server(Server::new(4, "10.77.2.5", 8443).weight(weights.1));
    Config::new().frontend(Frontend::new(1, "443").default_farm(H1_FARM)).farm(tweak(farm))
}

/// Opens `n` TLS connections and keeps them; returns them with the server each was pinned to
/// (read from the daemon's flow map).
fn hold_connections(lab: &Lab, n: usize) -> Result<(Vec<TlsClient>, HashMap<u32, usize>)> {
    let opts = lab.client("h1.lb.test").alpn(&["http/1.1"]);
    let clients = lab.in_cli(|| (0..n).map(|_| TlsClient::connect(&opts)).collect::<Result<Vec<_>>>())?;
    let stats = lab.stats()?;
    let mut per_server = HashMap::new();
    for client in &clients {
        let local = client.local_addr()?.to_string();
        let flow = stats.flows_of(&local).into_iter().next().with_context(|| format!("no flow for {local}"))?;
        *per_server.entry(flow.server_id).or_insert(0) += 1;
    }
    Ok((clients, per_server))
}

#[test]
fn round_robin_over_1000_connections_matches_weights_exactly() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    lab.start(&h1_config("roundrobin", (3, 1), |f| f))?;
    let opts = lab.client("h1.lb.test").alpn(&["http/1.1"]);
    let backends = lab.in_cli(|| (0..CONNECTIONS).map(|_| Ok(https_get(&opts, "/")?.backend())).collect::<Result<Vec<_>>>())?;
    let on_first = backends.iter().filter(|b| b.starts_with("farm h1 (server 1)")).count();
    // Smooth WRR cycles exactly: 3 of every 4 connections.
    ensure!(on_first == CONNECTIONS * 3 / 4, "weight 3:1 gave {on_first}/{CONNECTIONS} to the weight-3 server");
    Ok(())
}

#[test]
fn leastconn_over_1000_held_connections_follows_weights() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    lab.start(&h1_config("leastconn", (3, 1), |f| f))?;
    let (_clients, per_server) = hold_connections(&lab, CONNECTIONS)?;
    let heavy = per_server.get(&3).copied().unwrap_or(0);
    // Live connections per unit of weight are kept equal: 750 / 250, within 1%.
    ensure!(heavy.abs_diff(750) <= 10, "leastconn 3:1 held {per_server:?}");
    Ok(())
}

#[test]
fn first_fills_the_lowest_id_server_up_to_maxconn() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    let config = Config::new().frontend(Frontend::new(1, "443").default_farm(H1_FARM)).farm(
        Farm::new(H1_FARM, "h1").port(8443).balance("first").server(Server::new(4, "10.77.2.5", 8443)).server(Server::new(3, "10.77.2.4", 8443).maxconn(400)),
    );
    lab.start(&config)?;
    let (clients, per_server) = hold_connections(&lab, CONNECTIONS)?;
    ensure!(per_server.get(&3) == Some(&400) && per_server.get(&4) == Some(&600), "first: {per_server:?}");
    drop(clients);
    Ok(())
}

#[test]
fn source_hash_keeps_each_client_address_on_one_server() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    lab.start(&h1_config("source", (1, 1), |f| f))?;
    // 100 extra client addresses on the client's link.
    let addresses: Vec<String> = (100..200).map(|i| format!("10.77.1.{i}")).collect();
    for a in &addresses {
        let status = Command::new("ip").args(["-n", lab.topo.cli(), "addr", "add", &format!("{a}/24"), "dev", "c0"]).status()?;
        ensure!(status.success(), "adding {a}");
    }
    let mut per_server: HashMap<String, usize> = HashMap::new();
    for a in &addresses {
        let ip: std::net::IpAddr = a.parse()?;
        let opts = lab.client("h1.lb.test").alpn(&["http/1.1"]).bind(ip).timeout(Duration::from_secs(5));
        let seen = lab.in_cli(|| (0..10).map(|_| Ok(https_get(&opts, "/")?.backend())).collect::<Result<Vec<_>>>())?;
        ensure!(seen.iter().all(|b| *b == seen[0]), "client {a} moved between servers: {seen:?}");
        *per_server.entry(seen[0].clone()).or_insert(0) += 1;
    }
    ensure!(per_server.len() == 2 && per_server.values().all(|&n| n >= 30), "100 clients over two equal servers: {per_server:?}");
    Ok(())
}

#[test]
fn sticky_source_ip_keeps_round_robin_clients_on_their_server() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    lab.start(&h1_config("roundrobin", (1, 1), |f| f.sticky()))?;
    let opts = lab.client("h1.lb.test").alpn(&["http/1.1"]);
    let seen = lab.in_cli(|| (0..20).map(|_| Ok(https_get(&opts, "/")?.backend())).collect::<Result<Vec<_>>>())?;
    ensure!(seen.iter().all(|b| *b == seen[0]), "a sticky client moved: {seen:?}");
    Ok(())
}

fn pick(config: &std::path::Path, count: u32) -> Result<Vec<String>> {
    let out = Command::new(lb_tests::lb_user_bin())
        .args(["pick", "--config"])
        .arg(config)
        .args(["--farm", "1", "--clients", "10.200.0.0/16", "--count", &count.to_string()])
        .output()?;
    ensure!(out.status.success(), "lb-user pick: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?.lines().map(str::to_string).collect())
}

#[test]
fn maglev_agrees_across_processes_and_a_removal_moves_about_one_nth() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let write = |name: &str, servers: &[u32]| -> Result<std::path::PathBuf> {
        let servers: Vec<String> = servers.iter().map(|i| format!(r#"{{"serverId":{i},"address":"10.9.0.{i}"}}"#)).collect();
        let path = dir.path().join(name);
        std::fs::write(&path, format!(r#"{{"farms":[{{"farmId":1,"port":443,"balance":"source","servers":[{}]}}]}}"#, servers.join(",")))?;
        Ok(path)
    };
    let all: Vec<u32> = (1..=10).collect();
    let full = write("full.json", &all)?;
    let without_4 = write("without4.json", &all.iter().copied().filter(|&i| i != 4).collect::<Vec<_>>())?;
    let a = pick(&full, 10_000)?;
    let b = pick(&full, 10_000)?;
    ensure!(a.len() == 10_000 && a == b, "two processes disagree");
    let c = pick(&without_4, 10_000)?;
    let moved = a.iter().zip(&c).filter(|(x, y)| x != y).count();
    let on_4 = a.iter().filter(|l| l.ends_with(" 4")).count();
    ensure!(a.iter().zip(&c).all(|(x, y)| !x.ends_with(" 4") || x != y), "clients of the removed server stayed on it");
    // Exactly server 4's clients must move, plus Maglev's small disruption elsewhere.
    ensure!(moved >= on_4 && moved <= on_4 + 300, "moved {moved}, server 4 had {on_4} (~1/10 expected)");
    ensure!((800..=1_200).contains(&on_4), "server 4 had {on_4} of 10,000");
    Ok(())
}
