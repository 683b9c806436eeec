//! The seed scenario (README, "The API") through the API only, with real curl clients: staged changes
//! reach traffic only at `POST /refresh`.

use anyhow::{ensure, Result};
use lb_tests::api::{ApiDaemon, ApiDaemonOpts};
use lb_tests::{in_netns, require_root, Lab};
use serde_json::{json, Value};

#[test]
fn seed_scenario_h2_route_takes_effect_at_refresh() -> Result<()> {
    require_root!();
    let lab = Lab::with_standard_backends()?;
    let daemon = ApiDaemon::start(ApiDaemonOpts::in_netns(lab.topo.lb()))?;
    let api = daemon.client();

    // 1. A TCP frontend on 443 and two farms with servers; everything goes to the h1 farm.
    let h2 = api.create("/tcp/farm", json!({"displayName": "h2", "port": 8443, "zone": "all"}))?["farmId"].clone();
    let h1 = api.create("/tcp/farm", json!({"displayName": "h1", "port": 8443, "zone": "all"}))?["farmId"].clone();
    for (farm, address) in [(&h2, "10.77.2.2"), (&h2, "10.77.2.3"), (&h1, "10.77.2.4"), (&h1, "10.77.2.5")] {
        api.create(&format!("/tcp/farm/{farm}/server"), json!({"address": address}))?;
    }
    let frontend = api.create("/tcp/frontend", json!({"port": "443", "zone": "all", "defaultFarmId": h1}))?["frontendId"].clone();
    api.refresh_done()?;
    let before = lab.curl("--http2", "h2.lb.test")?;
    ensure!(before.exit_ok && before.backend().starts_with("farm h1 "), "before the route: {before:?}");

    // 2-3. The route to the h2 farm, then its rule: staged, not yet applied.
    let route = api.create("/tcp/route", json!({"action": {"type": "farm", "target": h2.to_string()}, "frontendId": frontend}))?;
    let route_id = route["routeId"].clone();
    let rule = api.create(&format!("/tcp/route/{route_id}/rule"), json!({"field": "protocol", "match": "is", "pattern": "http/2.0"}))?;
    ensure!(rule["ruleId"] == 1 && rule["pattern"] == "http/2.0", "{rule}");
    ensure!(api.pending()? == 2, "pendingChanges: {}", api.get("/pendingChanges")?.text);
    ensure!(api.get(&format!("/tcp/route/{route_id}"))?.json["status"] == "toCreate");
    let staged = lab.curl("--http2", "h2.lb.test")?;
    ensure!(staged.exit_ok && staged.backend().starts_with("farm h1 "), "a staged route changed traffic: {staged:?}");

    // 4. The refresh applies it.
    let task = api.refresh(Some("local"))?;
    ensure!(task["status"] == "done" && task["action"] == "refreshIplb" && task["zones"] == json!(["local"]), "{task}");
    ensure!(task["doneDate"].is_string() && task["progress"] == 100, "{task}");
    ensure!(api.pending()? == 0);
    ensure!(api.get(&format!("/tcp/route/{route_id}"))?.json["status"] == "ok");

    // 5. curl --http2 answers HTTP/2 200 from the h2 farm; curl --http1.1 from the other.
    for _ in 0..2 {
        let r = lab.curl("--http2", "h2.lb.test")?;
        ensure!(r.exit_ok && r.status_line() == "HTTP/2 200", "{r:?}");
        ensure!(r.backend().starts_with("farm h2 "), "curl --http2 landed on {:?}", r.backend());
        let r = lab.curl("--http1.1", "h2.lb.test")?;
        ensure!(r.exit_ok && r.status_line() == "HTTP/1.1 200", "{r:?}");
        ensure!(r.backend().starts_with("farm h1 "), "curl --http1.1 landed on {:?}", r.backend());
    }

    // A refresh that fails applies nothing: here a new frontend cannot listen on its port.
    let blocker = in_netns(lab.topo.lb(), || Ok(std::net::TcpListener::bind("10.77.1.1:9443")?))?;
    api.create("/tcp/frontend", json!({"port": "9443", "zone": "all", "defaultFarmId": h1}))?;
    api.update(&format!("/tcp/route/{route_id}"), json!({"action": {"type": "reject"}}))?;
    let task = api.refresh(None)?;
    ensure!(task["status"] == "error" && task["message"].as_str().unwrap_or_default().contains("9443"), "{task}");
    let r = lab.curl("--http2", "h2.lb.test")?;
    ensure!(r.exit_ok && r.backend().starts_with("farm h2 "), "a failed refresh changed traffic: {r:?}");
    ensure!(api.pending()? == 2, "a failed refresh cleared the pending changes");
    drop(blocker);
    api.refresh_done()?;
    let r = lab.curl("--http2", "h2.lb.test")?;
    ensure!(!r.exit_ok && r.code == 0, "the reject route did not apply: {r:?}");
    Ok(())
}

#[test]
fn server_state_shows_probe_verdicts() -> Result<()> {
    require_root!();
    use lb_tests::config::{Config, Farm, Frontend, Probe, Server};
    let lab = Lab::with_standard_backends()?;
    let probe = Probe::new("tcp").interval(1);
    let config = Config::new().frontend(Frontend::new(1, "443").default_farm(2)).farm(
        Farm::new(2, "h1")
            .port(8443)
            .probe(probe)
            .server(Server::new(3, "10.77.2.4", 8443).probed())
            // Nothing listens there.
            .server(Server::new(4, "10.77.2.5", 9999).probed()),
    );
    let mut opts = ApiDaemonOpts::in_netns(lab.topo.lb());
    opts.config = Some(config);
    let daemon = ApiDaemon::start(opts)?;
    let api = daemon.client();
    let state = |server: u32| -> Result<Value> { Ok(api.get(&format!("/tcp/farm/2/server/{server}"))?.json["serverState"][0].clone()) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (up, down) = (state(3)?, state(4)?);
        if up["status"] == "up" && down["status"] == "down" {
            ensure!(down["lastError"].as_str().is_some_and(|e| e.contains("tcp")), "lastError: {down}");
            ensure!(up["lastCheck"].is_string() && up["zone"] == "local", "{up}");
            return Ok(());
        }
        ensure!(std::time::Instant::now() < deadline, "serverState after 10 s: {up} / {down}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
