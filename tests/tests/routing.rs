//! Routing by what the ClientHello says (ALPN, SNI) and by the client's address, through the
//! daemon, with real clients (curl, rustls) and real backends.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use lb_tests::client::{https_get, is_closed_by_peer, is_timeout, TlsClient};
use lb_tests::config::{Config, Farm, Frontend, Route, Rule, Server};
use lb_tests::lab::standard::*;
use lb_tests::{require_root, vip, Lab, CLIENT_IP, CLIENT_IP2};

/// Frontend :443, default farm h1; `protocol is http/2.0` → h2 farm.
fn h2_route_config() -> Config {
    Config::new()
        .frontend(Frontend::new(1, "443").default_farm(H1_FARM))
        .farm(h2_farm())
        .farm(h1_farm())
        .route(Route::to_farm(1, 1, H2_FARM).rule(Rule::new("protocol", "is", "http/2.0")))
}

/// Asserts a handshake attempt was refused by the load balancer closing the connection.
fn ensure_closed(result: Result<TlsClient>, what: &str) -> Result<()> {
    let started = Instant::now();
    let err = match result {
        Ok(client) => {
            let alpn = client.alpn();
            let served = client.http_get("/").map(|r| r.backend());
            anyhow::bail!("{what}: handshake succeeded (alpn {alpn:?}, served by {served:?})");
        }
        Err(e) => e,
    };
    ensure!(!is_timeout(&err), "{what}: timed out instead of being closed: {err:#}");
    ensure!(is_closed_by_peer(&err), "{what}: expected a close by the load balancer, got: {err:#}");
    ensure!(started.elapsed().as_secs() < 3);
    Ok(())
}

#[test]
fn h2_client_lands_on_h2_farm() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    lab.start(&h2_route_config())?;
    for _ in 0..2 {
        let r = lab.curl("--http2", "h2.lb.test")?;
        ensure!(r.exit_ok, "curl failed: {}", r.stderr);
        ensure!(r.http_version == "2" && r.code == 200, "{r:?}");
        ensure!(r.backend().starts_with("farm h2 "), "landed on {:?}", r.backend());
        ensure!(r.body.ends_with(" HTTP/2.0\n"), "{r:?}");
    }
    Ok(())
}

#[test]
fn http11_client_lands_on_h1_farm() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    lab.start(&h2_route_config())?;
    for _ in 0..2 {
        let r = lab.curl("--http1.1", "h2.lb.test")?;
        ensure!(r.exit_ok, "curl failed: {}", r.stderr);
        ensure!(r.http_version == "1.1" && r.code == 200, "{r:?}");
        ensure!(r.backend().starts_with("farm h1 "), "landed on {:?}", r.backend());
    }
    Ok(())
}

#[test]
fn client_without_alpn_lands_on_default_farm() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    let config = Config::new()
        .frontend(Frontend::new(1, "443").default_farm(DEFAULT_FARM))
        .farm(h2_farm())
        .farm(h1_farm())
        .farm(default_farm())
        .route(Route::to_farm(1, 1, H2_FARM).rule(Rule::new("protocol", "is", "http/2.0")))
        .route(Route::to_farm(2, 1, H1_FARM).rule(Rule::new("protocol", "is", "http/1.1")));
    lab.start(&config)?;
    let no_alpn = lab.client("h1.lb.test");
    let with_h1 = lab.client("h1.lb.test").alpn(&["http/1.1"]);
    let (plain, h1) = lab.in_cli(|| Ok((https_get(&no_alpn, "/")?, https_get(&with_h1, "/")?)))?;
    ensure!(plain.alpn.is_none() && plain.status == 200, "{plain:?}");
    ensure!(plain.backend() == "farm default (server 1)", "no-ALPN client landed on {:?}", plain.backend());
    ensure!(h1.backend().starts_with("farm h1 "), "http/1.1 client landed on {:?}", h1.backend());
    Ok(())
}

#[test]
fn sni_rule_routes_by_server_name() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    let config = Config::new()
        .frontend(Frontend::new(1, "443").default_farm(DEFAULT_FARM))
        .farm(h1_farm())
        .farm(default_farm())
        .route(Route::to_farm(1, 1, H1_FARM).rule(Rule::new("sni", "is", "h1.lb.test")));
    lab.start(&config)?;
    let named = lab.client("h1.lb.test").alpn(&["http/1.1"]);
    let other = lab.client("echo.lb.test").alpn(&["http/1.1"]);
    let (named, other) = lab.in_cli(|| Ok((https_get(&named, "/")?, https_get(&other, "/")?)))?;
    ensure!(named.backend().starts_with("farm h1 "), "sni h1.lb.test landed on {:?}", named.backend());
    ensure!(other.backend() == "farm default (server 1)", "sni echo.lb.test landed on {:?}", other.backend());
    Ok(())
}

#[test]
fn source_rule_routes_by_client_address() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    let config = Config::new()
        .frontend(Frontend::new(1, "443").default_farm(DEFAULT_FARM))
        .farm(h1_farm())
        .farm(default_farm())
        .route(Route::to_farm(1, 1, H1_FARM).rule(Rule::new("source", "is", &CLIENT_IP2.to_string())));
    lab.start(&config)?;
    let from_listed = lab.client("h1.lb.test").alpn(&["http/1.1"]).bind(CLIENT_IP2);
    let from_other = lab.client("h1.lb.test").alpn(&["http/1.1"]).bind(CLIENT_IP);
    let (listed, other) = lab.in_cli(|| Ok((https_get(&from_listed, "/")?, https_get(&from_other, "/")?)))?;
    ensure!(listed.backend().starts_with("farm h1 "), "{CLIENT_IP2} landed on {:?}", listed.backend());
    ensure!(other.backend() == "farm default (server 1)", "{CLIENT_IP} landed on {:?}", other.backend());
    Ok(())
}

#[test]
fn reject_route_closes_connection() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    let config = Config::new().frontend(Frontend::new(1, "443").default_farm(H1_FARM)).farm(h1_farm()).route(Route::reject(1, 1).rule(Rule::new(
        "sni",
        "is",
        "blocked.lb.test",
    )));
    lab.start(&config)?;
    let blocked = lab.client("blocked.lb.test").alpn(&["http/1.1"]);
    let allowed = lab.client("h1.lb.test").alpn(&["http/1.1"]);
    lab.in_cli(|| {
        ensure_closed(TlsClient::connect(&blocked), "sni blocked.lb.test")?;
        let r = https_get(&allowed, "/")?;
        ensure!(r.backend().starts_with("farm h1 "), "sni h1.lb.test landed on {:?}", r.backend());
        Ok(())
    })
}

#[test]
fn no_match_and_no_default_farm_closes() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    let config =
        Config::new().frontend(Frontend::new(1, "443")).farm(h2_farm()).route(Route::to_farm(1, 1, H2_FARM).rule(Rule::new("protocol", "is", "http/2.0")));
    lab.start(&config)?;
    let unmatched = lab.client("h1.lb.test").alpn(&["http/1.1"]);
    let matched = lab.client("h2.lb.test").alpn(&["h2", "http/1.1"]);
    lab.in_cli(|| {
        ensure_closed(TlsClient::connect(&unmatched), "http/1.1 client without default farm")?;
        let r = https_get(&matched, "/")?;
        ensure!(r.backend().starts_with("farm h2 ") && r.version == "HTTP/2", "{r:?}");
        Ok(())
    })
}

/// Backend name → number of requests it answered.
fn tally(lab: &Lab, port: u16, requests: usize) -> Result<BTreeMap<String, usize>> {
    let opts = lab.client("h1.lb.test").alpn(&["http/1.1"]).connect_to(vip(port));
    lab.in_cli(|| {
        let mut seen = BTreeMap::new();
        for i in 0..requests {
            let r = https_get(&opts, "/").with_context(|| format!("request {i} to port {port}"))?;
            *seen.entry(r.backend()).or_insert(0) += 1;
        }
        Ok(seen)
    })
}

#[test]
fn round_robin_alternates_servers() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    let weighted = Farm::new(10, "h1 weighted 3:1").server(Server::new(13, "10.77.2.4", 8443).weight(3)).server(Server::new(14, "10.77.2.5", 8443).weight(1));
    let config = Config::new()
        .frontend(Frontend::new(1, "443").default_farm(H1_FARM))
        .frontend(Frontend::new(2, "8443").default_farm(10))
        .farm(h1_farm())
        .farm(weighted);
    lab.start(&config)?;

    let even = tally(&lab, 443, 10)?;
    ensure!(even.len() == 2, "weights 1:1 over 10 requests: {even:?}");
    ensure!(even.values().all(|&n| n == 5), "weights 1:1 over 10 requests: {even:?}");

    let skewed = tally(&lab, 8443, 40)?;
    ensure!(skewed.get("farm h1 (server 1)") == Some(&30), "weights 3:1 over 40 requests: {skewed:?}");
    ensure!(skewed.get("farm h1 (server 2)") == Some(&10), "weights 3:1 over 40 requests: {skewed:?}");
    Ok(())
}

#[test]
fn ipv6_client_routed_to_ipv6_server() -> Result<()> {
    require_root!();
    let mut lab = Lab::new()?;
    lab.backends.tls("[fd77:2::2]:8443", &["h2"], "farm h2v6 (server 1)")?;
    let config =
        Config::new().frontend(Frontend::new(1, "443").default_farm(1)).farm(Farm::new(1, "h2v6").port(8443).server(Server::new(1, "fd77:2::2", 8443)));
    lab.start(&config)?;
    let frontend_v6: std::net::SocketAddr = "[fd77:1::1]:443".parse()?;
    let opts = lab.client("h2.lb.test").alpn(&["h2"]).connect_to(frontend_v6);
    let response = lab.in_cli(|| https_get(&opts, "/"))?;
    ensure!(response.backend().starts_with("farm h2v6 "), "IPv6 client landed on {:?}", response.backend());
    Ok(())
}
