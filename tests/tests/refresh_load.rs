//! Refreshes under load: while clients open connections continuously, 20 refreshes through
//! the API add and remove servers and routes. No client connection fails, and established
//! connections keep their server; when their server is removed, its `onMarkedDown` decides
//! (`shutdown-sessions` ends them, otherwise they go on).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use lb_tests::api::{ApiClient, ApiDaemon, ApiDaemonOpts};
use lb_tests::client::{is_closed_by_peer, EchoSession, TlsClient};
use lb_tests::load::ClientLoad;
use lb_tests::{require_root, Lab};
use serde_json::json;

const REFRESHES: usize = 20;
/// The refresh after which the echo servers B and C are removed.
const REMOVE_AT: usize = 10;
const KIB: u64 = 1024;

/// Echo servers of farm 3, by server id: A is kept, B (`shutdown-sessions`) and C (no
/// `onMarkedDown`) are removed at refresh [`REMOVE_AT`].
const ECHO_A: u64 = 5;
const ECHO_B: u64 = 6;
const ECHO_C: u64 = 7;

/// Farms h2 (1), h1 (2) and echo (3), frontend 1 on 443 (default h1), route 1 → h2 when
/// the client offers h2, route 2 → echo for ALPN lb-echo; applied.
fn seed(api: &ApiClient) -> Result<()> {
    api.create("/tcp/farm", json!({"displayName": "h2", "port": 8443}))?;
    api.create("/tcp/farm", json!({"displayName": "h1", "port": 8443}))?;
    api.create("/tcp/farm", json!({"displayName": "echo", "port": 9443}))?;
    for (farm, address) in [(1, "10.77.2.2"), (1, "10.77.2.3"), (2, "10.77.2.4"), (2, "10.77.2.5")] {
        api.create(&format!("/tcp/farm/{farm}/server"), json!({"address": address}))?;
    }
    let a = api.create("/tcp/farm/3/server", json!({"address": "10.77.2.2", "displayName": "A"}))?;
    let b = api.create("/tcp/farm/3/server", json!({"address": "10.77.2.3", "displayName": "B", "onMarkedDown": "shutdown-sessions"}))?;
    let c = api.create("/tcp/farm/3/server", json!({"address": "10.77.2.4", "displayName": "C"}))?;
    ensure!([&a, &b, &c].map(|s| s["serverId"].as_u64()) == [Some(ECHO_A), Some(ECHO_B), Some(ECHO_C)], "echo server ids: {a} {b} {c}");
    api.create("/tcp/frontend", json!({"port": "443", "defaultFarmId": 2, "inspectTimeout": 3}))?;
    api.create("/tcp/route", json!({"action": {"type": "farm", "target": "1"}, "frontendId": 1}))?;
    api.create("/tcp/route/1/rule", json!({"field": "protocol", "match": "is", "pattern": "http/2.0"}))?;
    api.create("/tcp/route", json!({"action": {"type": "farm", "target": "3"}, "frontendId": 1, "weight": 1}))?;
    api.create("/tcp/route/2/rule", json!({"field": "alpn", "match": "is", "pattern": "lb-echo"}))?;
    api.refresh_done()
}

/// A long-lived echo session and the server the daemon pinned it to.
struct Long {
    session: EchoSession,
    client: String,
    server: u64,
    /// When it was seen closed (after its server was removed).
    closed: Option<Duration>,
}

/// The server of `farm` whose address is `address`, if configured.
fn server_with(api: &ApiClient, farm: u64, address: &str) -> Result<Option<u64>> {
    let ids: Vec<u64> = serde_json::from_value(api.get(&format!("/tcp/farm/{farm}/server"))?.json)?;
    for id in ids {
        if api.get(&format!("/tcp/farm/{farm}/server/{id}"))?.json["address"] == address {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// Removes the server of `farm` at `address` if there is one, else adds it back.
fn toggle(api: &ApiClient, farm: u64, address: &str) -> Result<String> {
    Ok(match server_with(api, farm, address)? {
        Some(id) => {
            api.delete(&format!("/tcp/farm/{farm}/server/{id}"))?;
            format!("-server {id} ({address}) of farm {farm}")
        }
        None => {
            let s = api.create(&format!("/tcp/farm/{farm}/server"), json!({"address": address}))?;
            format!("+server {} ({address}) of farm {farm}", s["serverId"])
        }
    })
}

#[test]
fn twenty_refreshes_under_load_fail_no_connection_and_move_no_session() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    lab.backends.tls("10.77.2.3:9443", &["lb-echo"], "echo B")?;
    lab.backends.tls("10.77.2.4:9443", &["lb-echo"], "echo C")?;
    let daemon = ApiDaemon::start(ApiDaemonOpts::in_netns(lab.topo.lb()))?;
    let api = daemon.client();
    seed(&api)?;

    // Six long-lived sessions, opened before any change: two on each echo server.
    let echo = lab.client("echo.lb.test").alpn(&["lb-echo"]).timeout(Duration::from_secs(5));
    let mut sessions: Vec<Long> = Vec::new();
    for _ in 0..6 {
        let session = lab.in_cli(|| {
            let mut s = TlsClient::connect(&echo)?.into_echo(Duration::from_secs(10))?;
            s.exchange(64 * KIB)?;
            Ok(s)
        })?;
        let client = session.local_addr()?.to_string();
        let flows = daemon.stats()?;
        let flow = flows.flows_of(&client);
        ensure!(flow.len() == 1, "session {client}: flows {flow:?}");
        let server = u64::from(flow[0].server_id);
        sessions.push(Long { session, client, server, closed: None });
    }
    let per_server: BTreeMap<u64, usize> = sessions.iter().fold(BTreeMap::new(), |mut m, s| {
        *m.entry(s.server).or_default() += 1;
        m
    });
    eprintln!("long-lived sessions per echo server: {per_server:?}");
    ensure!([ECHO_A, ECHO_B, ECHO_C].iter().all(|id| per_server.contains_key(id)), "every echo server must carry a session: {per_server:?}");

    // Four clients opening connections back to back for the whole run.
    let h2 = lab.client("h2.lb.test").alpn(&["h2"]).timeout(Duration::from_secs(5));
    let h1 = lab.client("h1.lb.test").alpn(&["http/1.1"]).timeout(Duration::from_secs(5));
    let load = ClientLoad::start(
        lab.topo.cli(),
        vec![("h2 #1".into(), h2.clone()), ("h2 #2".into(), h2), ("h1 #1".into(), h1.clone()), ("h1 #2".into(), h1)],
        Duration::from_secs(180),
        100_000,
    );
    std::thread::sleep(Duration::from_millis(300));

    let started = Instant::now();
    let mut previous_route: Option<u64> = None;
    let mut refresh_times = Vec::new();
    for i in 0..REFRESHES {
        let mut changes = Vec::new();
        // Servers: the h1 farm's second server leaves and comes back on even refreshes,
        // the h2 farm's on odd ones.
        changes.push(if i % 2 == 0 { toggle(&api, 2, "10.77.2.5")? } else { toggle(&api, 1, "10.77.2.3")? });
        // Routes: a new one each time (a reject route, or one to the h1 farm, for an SNI no
        // client sends), and the previous one deleted.
        let action = if i % 2 == 0 { json!({"type": "reject"}) } else { json!({"type": "farm", "target": "2"}) };
        let route = api.create("/tcp/route", json!({"action": action, "frontendId": 1, "weight": i}))?;
        let id = route["routeId"].as_u64().context("routeId")?;
        api.create(&format!("/tcp/route/{id}/rule"), json!({"field": "sni", "match": "is", "pattern": format!("churn-{i}.lb.test")}))?;
        changes.push(format!("+route {id}"));
        if let Some(old) = previous_route.replace(id) {
            api.delete(&format!("/tcp/route/{old}"))?;
            changes.push(format!("-route {old}"));
        }
        if i == REMOVE_AT {
            api.delete(&format!("/tcp/farm/3/server/{ECHO_B}"))?;
            api.delete(&format!("/tcp/farm/3/server/{ECHO_C}"))?;
            changes.push(format!("-echo servers {ECHO_B} (shutdown-sessions) and {ECHO_C}"));
        }
        let at = Instant::now();
        let task = api.refresh(None)?;
        ensure!(task["status"] == "done", "refresh {i}: {task}");
        let applied = at.elapsed();
        refresh_times.push(applied);
        let done = started.elapsed();
        eprintln!("refresh {i} applied in {applied:?} ({}; {} GETs so far)", changes.join(", "), load.ok_so_far());

        // Every session still open exchanges; those of a removed shutdown-sessions server
        // must be closed promptly.
        for long in sessions.iter_mut().filter(|l| l.closed.is_none()) {
            let ends = i >= REMOVE_AT && long.server == ECHO_B;
            match long.session.exchange(64 * KIB) {
                Ok(()) if !ends => {}
                Ok(()) => {
                    // The shutdown may still be on its way: wait for it, bounded.
                    let deadline = Instant::now() + Duration::from_secs(3);
                    loop {
                        match long.session.exchange(4 * KIB) {
                            Ok(()) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                            Ok(()) => bail!("session {} on removed server {ECHO_B} (shutdown-sessions) still open 3 s after refresh {i}", long.client),
                            Err(e) if is_closed(&e) => break,
                            Err(e) => return Err(e).context(format!("session {}", long.client)),
                        }
                    }
                    long.closed = Some(started.elapsed() - done);
                }
                Err(e) if ends && is_closed(&e) => long.closed = Some(started.elapsed() - done),
                Err(e) => return Err(e).context(format!("session {} on server {} failed after refresh {i}", long.client, long.server)),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let report = load.stop();
    eprintln!(
        "{REFRESHES} refreshes in {:?} (slowest {:?}); clients: {} GETs, {} failed, slowest {:?}; by backend {:?}",
        started.elapsed(),
        refresh_times.iter().max().copied().unwrap_or_default(),
        report.ok,
        report.failures.len(),
        report.slowest,
        report.backends
    );
    ensure!(report.failures.is_empty(), "client connections failed: {:#?}", report.failures);
    ensure!(report.ok >= 40, "only {} GETs were made during the refreshes", report.ok);
    for (label, backend) in report.backends.keys() {
        let farm = if label.starts_with("h2") { "farm h2 " } else { "farm h1 " };
        ensure!(backend.starts_with(farm), "{label} was served by {backend:?}");
    }

    // Sessions of servers A and C are still on them and intact; B's were shut down.
    let stats = daemon.stats()?;
    for long in &mut sessions {
        if long.server == ECHO_B {
            let after = long.closed.context("a session on removed server B was not closed")?;
            eprintln!("session {} (server B) closed {after:?} after the refresh that removed B", long.client);
            continue;
        }
        let pinned: Vec<u32> = stats.flows_of(&long.client).iter().map(|f| f.server_id).collect();
        ensure!(pinned == vec![long.server as u32], "session {} started on server {} is now pinned to {pinned:?}", long.client, long.server);
        long.session.shutdown_write()?;
        long.session.read_to_eof()?;
        let r = long.session.report();
        ensure!(r.sent == r.received && r.sent_sha256 == r.received_sha256, "session {} on server {}: {r:?}", long.client, long.server);
        eprintln!("session {} kept server {} through {REFRESHES} refreshes: {} bytes each way, identical", long.client, long.server, r.sent);
    }
    Ok(())
}

fn is_closed(e: &anyhow::Error) -> bool {
    is_closed_by_peer(e) || format!("{e:#}").contains("server closed before the exchange completed")
}
