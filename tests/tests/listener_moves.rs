//! A refresh that moves a port to another frontend, or narrows a frontend from every address
//! to a dedicated one and back, applies and serves without a gap: clients connecting back to
//! back throughout see no failure, and each change takes effect.

use std::time::Duration;

use anyhow::{ensure, Result};
use lb_tests::api::{ApiClient, ApiDaemon, ApiDaemonOpts};
use lb_tests::client::https_get;
use lb_tests::load::ClientLoad;
use lb_tests::{require_root, Lab};
use serde_json::json;

const FIRST: &str = "farm h1 (server 1)";
const SECOND: &str = "farm h1 (server 2)";

/// Farm 1 → the first http/1.1 server, farm 2 → the second; frontend 1 on 443 (farm 1),
/// frontend 2 on 8000 (farm 2); applied.
fn seed(api: &ApiClient) -> Result<()> {
    api.create("/tcp/farm", json!({"displayName": "first", "port": 8443}))?;
    api.create("/tcp/farm", json!({"displayName": "second", "port": 8443}))?;
    api.create("/tcp/farm/1/server", json!({"address": "10.77.2.4"}))?;
    api.create("/tcp/farm/2/server", json!({"address": "10.77.2.5"}))?;
    api.create("/tcp/frontend", json!({"port": "443", "defaultFarmId": 1}))?;
    api.create("/tcp/frontend", json!({"port": "8000", "defaultFarmId": 2}))?;
    api.refresh_done()
}

#[test]
fn moving_a_port_or_an_address_between_refreshes_refuses_no_connection() -> Result<()> {
    require_root!();
    let lab = Lab::with_standard_backends()?;
    let daemon = ApiDaemon::start(ApiDaemonOpts::in_netns(lab.topo.lb()))?;
    let api = daemon.client();
    seed(&api)?;
    let client = lab.client("h1.lb.test").alpn(&["http/1.1"]).timeout(Duration::from_secs(5));
    let served_by = || -> Result<String> { Ok(lab.in_cli(|| https_get(&client, "/"))?.backend()) };
    ensure!(served_by()? == FIRST, "before any move");

    let load = ClientLoad::start(lab.topo.cli(), vec![("#1".into(), client.clone()), ("#2".into(), client.clone())], Duration::from_secs(120), 50_000);
    std::thread::sleep(Duration::from_millis(300));

    // Port 443 moves from frontend 1 to frontend 2 in one refresh.
    api.update("/tcp/frontend/1", json!({"port": "444"}))?;
    api.update("/tcp/frontend/2", json!({"port": "443"}))?;
    api.refresh_done()?;
    ensure!(served_by()? == SECOND, "port 443 did not move to frontend 2");
    std::thread::sleep(Duration::from_millis(300));

    // Frontend 2 narrows from every address to the VIP, then widens again.
    api.update("/tcp/frontend/2", json!({"dedicatedIpfo": ["10.77.1.1/32"]}))?;
    api.refresh_done()?;
    ensure!(served_by()? == SECOND, "after narrowing to the VIP");
    std::thread::sleep(Duration::from_millis(300));
    api.update("/tcp/frontend/2", json!({"dedicatedIpfo": null}))?;
    api.refresh_done()?;
    ensure!(served_by()? == SECOND, "after widening again");
    std::thread::sleep(Duration::from_millis(300));

    let report = load.stop();
    eprintln!("clients: {} GETs, {} failed; by backend {:?}", report.ok, report.failures.len(), report.backends);
    ensure!(report.failures.is_empty(), "client connections failed: {:#?}", report.failures);
    ensure!(report.ok >= 20, "only {} GETs were made during the moves", report.ok);
    let log = daemon.log();
    ensure!(!log.contains("could not"), "the daemon logged a failed hand-over:\n{log}");
    Ok(())
}
