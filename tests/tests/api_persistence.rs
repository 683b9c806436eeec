//! Staged and applied configuration survive a restart and a `kill -9`: the daemon serves the
//! applied configuration at once, before any refresh; ids are never reused; a damaged store
//! refuses to start rather than come back empty.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use lb_tests::api::{stage_standard_seed, store_file, ApiClient, ApiDaemon, ApiDaemonOpts};
use lb_tests::config::{Config, Frontend, Route, Rule};
use lb_tests::lab::standard::*;
use lb_tests::{require_root, Lab};
use serde_json::json;

/// Farms h2 (1) and h1 (2) with their standard servers, frontend 1 on 443 (default h1),
/// route 1 → h2 when the client offers h2; applied.
fn seed(api: &ApiClient) -> Result<()> {
    stage_standard_seed(api)?;
    api.refresh_done()
}

/// The applied configuration is what traffic follows: h2 to farm h2, http/1.1 to farm h1.
fn ensure_seed_traffic(lab: &Lab, when: &str) -> Result<()> {
    let r = lab.curl("--http2", "h2.lb.test")?;
    ensure!(r.exit_ok && r.status_line() == "HTTP/2 200" && r.backend().starts_with("farm h2 "), "{when}: curl --http2: {r:?}");
    let r = lab.curl("--http1.1", "h2.lb.test")?;
    ensure!(r.exit_ok && r.backend().starts_with("farm h1 "), "{when}: curl --http1.1: {r:?}");
    Ok(())
}

#[test]
fn restart_serves_the_applied_configuration_at_once_and_keeps_staged_changes() -> Result<()> {
    require_root!();
    let lab = Lab::with_standard_backends()?;
    let mut daemon = ApiDaemon::start(ApiDaemonOpts::in_netns(lab.topo.lb()))?;
    seed(&daemon.client())?;
    let api = daemon.client();
    // Staged, not applied: must survive as staged.
    api.update("/tcp/frontend/1", json!({"displayName": "main"}))?;
    api.delete("/tcp/farm/2/server/4")?;

    daemon.restart()?;
    ensure_seed_traffic(&lab, "right after the restart, before any refresh")?;
    let api = daemon.client();
    ensure!(api.pending()? == 2, "pending changes after the restart: {}", api.get("/pendingChanges")?.text);
    ensure!(api.get("/tcp/frontend/1")?.json["displayName"] == "main");
    ensure!(api.get("/tcp/farm/2/server")?.json == json!([3]));
    ensure!(api.get("/tcp/route/1")?.json["status"] == "ok");
    let server = api.create("/tcp/farm/2/server", json!({"address": "10.77.2.5"}))?;
    ensure!(server["serverId"] == 5, "server ids are never reused across restarts: {server}");
    let tasks = api.get("/task")?.json;
    ensure!(tasks == json!([1]) && api.get("/task/1")?.json["status"] == "done", "tasks survive: {tasks}");
    Ok(())
}

#[test]
fn kill_9_during_writes_comes_back_to_the_last_commit() -> Result<()> {
    require_root!();
    let lab = Lab::with_standard_backends()?;
    let mut daemon = ApiDaemon::start(ApiDaemonOpts::in_netns(lab.topo.lb()))?;
    seed(&daemon.client())?;

    // A writer creates and deletes servers as fast as it can until the daemon dies.
    let api = daemon.client();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || -> Vec<u64> {
            let mut ids = Vec::new();
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(30) {
                let Ok(server) = api.create("/tcp/farm/2/server", json!({"address": "10.77.2.5", "displayName": "churn"})) else {
                    break;
                };
                let Some(id) = server["serverId"].as_u64() else {
                    break;
                };
                ids.push(id);
                if id % 2 == 0 && api.delete(&format!("/tcp/farm/2/server/{id}")).is_err() {
                    break;
                }
            }
            ids
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    daemon.kill9();
    stop.store(true, Ordering::Relaxed);
    let ids = writer.join().map_err(|_| anyhow::anyhow!("the writer panicked"))?;
    ensure!(ids.len() >= 5, "the writer made only {} writes before the kill", ids.len());

    daemon.restart()?;
    ensure_seed_traffic(&lab, "right after the kill -9 and restart, before any refresh")?;
    let api = daemon.client();
    let listed: Vec<u64> = serde_json::from_value(api.get("/tcp/farm/2/server")?.json)?;
    for id in &listed {
        let reply = api.get(&format!("/tcp/farm/2/server/{id}"))?;
        ensure!(reply.status == 200, "listed server {id} does not read back: {}", reply.text);
    }
    // Every acknowledged write is there; an even id was deleted unless the kill came between
    // its create and its delete (then only the last one may remain).
    let last = ids.last().copied().unwrap_or(0);
    for id in &ids {
        let kept = id % 2 == 1;
        if kept {
            ensure!(listed.contains(id), "server {id}, created and acknowledged, is gone after the crash");
        } else if *id != last {
            ensure!(!listed.contains(id), "server {id}, deleted and acknowledged, is back after the crash");
        }
    }
    let max = ids.iter().max().copied().unwrap_or(0);
    let next = api.create("/tcp/farm/2/server", json!({"address": "10.77.2.5"}))?["serverId"].as_u64().context("no serverId")?;
    ensure!(next > max, "id {next} reused after the crash (the writer had reached {max})");
    Ok(())
}

#[test]
fn an_imported_config_file_is_kept_by_a_restart_without_it() -> Result<()> {
    require_root!();
    let lab = Lab::with_standard_backends()?;
    let config = Config::new()
        .frontend(Frontend::new(1, "443").default_farm(H1_FARM))
        .farm(h2_farm())
        .farm(h1_farm())
        .route(Route::to_farm(7, 1, H2_FARM).rule(Rule::new("protocol", "is", "http/2.0")));
    let mut daemon = ApiDaemon::start(ApiDaemonOpts { config: Some(config), ..ApiDaemonOpts::in_netns(lab.topo.lb()) })?;
    ensure_seed_traffic(&lab, "after the import")?;
    let api = daemon.client();
    ensure!(api.pending()? == 0 && api.get("/tcp/route")?.json == json!([7]), "the import is staged and applied");
    ensure!(api.get("/tcp/route/7")?.json["status"] == "ok");
    daemon.restart()?;
    ensure_seed_traffic(&lab, "after a restart without --config")?;
    let route = daemon.client().create("/tcp/route", json!({"action": {"type": "reject"}, "frontendId": 1}))?;
    ensure!(route["routeId"] == 8, "ids continue after the imported ones: {route}");
    Ok(())
}

#[test]
fn a_damaged_store_refuses_to_start() -> Result<()> {
    // No namespace needed: the daemon runs in the test's own, without XDP.
    let mut daemon = ApiDaemon::start(ApiDaemonOpts::local())?;
    let api = daemon.client();
    for port in 20000..20050 {
        api.create("/tcp/frontend", json!({"port": port.to_string(), "displayName": "x".repeat(300)}))?;
    }
    daemon.stop();
    let path = store_file(&daemon.data_dir());
    let bytes = std::fs::read(&path)?;
    for (what, damaged) in [("truncated", bytes[..bytes.len() / 2].to_vec()), ("emptied", Vec::new())] {
        std::fs::write(&path, &damaged)?;
        let err = daemon.restart().err().with_context(|| format!("the daemon started on a {what} store"))?;
        let text = format!("{err:#}");
        ensure!(text.contains("store.redb") && (text.contains("truncated") || text.contains("empty")), "{what}: {text}");
    }
    std::fs::write(&path, &bytes)?;
    daemon.restart()?;
    ensure!(daemon.client().get("/tcp/frontend")?.json.as_array().map(Vec::len) == Some(50), "the restored store reads whole");
    Ok(())
}
