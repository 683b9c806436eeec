//! Health probes through the daemon, against real backends: a killed server is marked down
//! within two intervals and new connections avoid it without a client noticing; an h2 farm
//! server that falls back to http/1.1 is marked down by the `tls` probe.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use lb_tests::client::https_get;
use lb_tests::config::{Config, Farm, Frontend, Probe, Route, Rule, Server};
use lb_tests::lab::standard::{echo_farm_soon_down, ECHO_FARM};
use lb_tests::proc::file_tail;
use lb_tests::{require_root, wait_for, Backends, Lab};

/// Probe interval of these tests, in seconds.
const INTERVAL: u32 = 1;
/// Two failed probes at one per interval, plus scheduling and log-polling slack.
const MARK_DOWN_WITHIN: Duration = Duration::from_millis(2 * 1000 * INTERVAL as u64 + 500);

/// The daemon's log lines saying `server_id` was marked down.
fn marked_down_lines(log: &Path, server_id: u32) -> Vec<String> {
    let id = format!("server_id={server_id} ");
    file_tail(log, 1 << 20).lines().filter(|l| l.contains("server marked down") && l.contains(&id)).map(str::to_string).collect()
}

#[test]
fn killed_backend_is_marked_down_within_two_intervals_without_client_failures() -> Result<()> {
    require_root!();
    let mut lab = Lab::new()?;
    let mut doomed = Backends::new(&lab.topo, &lab.certs)?;
    doomed.tls("10.77.2.4:8443", &["http/1.1"], "doomed")?;
    lab.backends.tls("10.77.2.5:8443", &["http/1.1"], "survivor")?;
    let config = Config::new().frontend(Frontend::new(1, "443").default_farm(1)).farm(
        Farm::new(1, "h1")
            .probe(Probe::new("tcp").interval(INTERVAL))
            .server(Server::new(1, "10.77.2.4", 8443).probed())
            .server(Server::new(2, "10.77.2.5", 8443).probed()),
    );
    lab.start(&config)?;
    let log = lab.daemon()?.log_path();
    let opts = lab.client("h1.lb.test").alpn(&["http/1.1"]);

    let (marked_after, during, after) = lab.in_cli(|| {
        let mut seen = Vec::new();
        for _ in 0..6 {
            seen.push(https_get(&opts, "/")?.backend());
        }
        ensure!(seen.iter().any(|b| b == "doomed") && seen.iter().any(|b| b == "survivor"), "both servers serve before the kill: {seen:?}");

        drop(doomed);
        let killed = Instant::now();
        // Until the probe notices, connections still work (a refused connect tries the
        // other server); every one of them must succeed.
        let mut during = 0;
        let marked_after = loop {
            if !marked_down_lines(&log, 1).is_empty() {
                break killed.elapsed();
            }
            if killed.elapsed() > MARK_DOWN_WITHIN * 2 {
                bail!("server 1 not marked down {:?} after the kill", killed.elapsed());
            }
            let r = https_get(&opts, "/").with_context(|| format!("request {during} after the kill, before the mark-down"))?;
            ensure!(r.status == 200 && r.backend() == "survivor", "{r:?}");
            during += 1;
            std::thread::sleep(Duration::from_millis(20));
        };

        let mut after = Vec::new();
        for i in 0..50 {
            let r = https_get(&opts, "/").with_context(|| format!("request {i} after the mark-down"))?;
            ensure!(r.status == 200, "request {i}: {r:?}");
            after.push(r.backend());
        }
        Ok((marked_after, during, after))
    })?;

    eprintln!("marked down {marked_after:?} after the kill; {during} requests meanwhile");
    ensure!(marked_after <= MARK_DOWN_WITHIN, "marked down {marked_after:?} after the kill, more than two intervals");
    ensure!(after.iter().all(|b| b == "survivor"), "new connections must avoid the dead server: {after:?}");
    let down = marked_down_lines(&log, 1);
    ensure!(down[0].contains("tcp: connecting to 10.77.2.4:8443"), "the log says why: {down:?}");
    ensure!(marked_down_lines(&log, 2).is_empty(), "the survivor stays up");
    Ok(())
}

#[test]
fn h2_farm_server_that_stops_offering_h2_is_marked_down_by_the_tls_probe() -> Result<()> {
    require_root!();
    let mut lab = Lab::new()?;
    let mut fallen = Backends::new(&lab.topo, &lab.certs)?;
    fallen.tls("10.77.2.2:8443", &["h2"], "h2 server 1")?;
    lab.backends.tls("10.77.2.3:8443", &["h2"], "h2 server 2")?;
    let config = Config::new()
        .frontend(Frontend::new(1, "443"))
        .farm(
            Farm::new(1, "h2")
                .probe(Probe::new("tls").interval(INTERVAL))
                .server(Server::new(1, "10.77.2.2", 8443).probed())
                .server(Server::new(2, "10.77.2.3", 8443).probed()),
        )
        .route(Route::to_farm(1, 1, 1).rule(Rule::new("protocol", "is", "http/2.0")));
    lab.start(&config)?;
    let log = lab.daemon()?.log_path();
    let opts = lab.client("h2.lb.test").alpn(&["h2"]);

    let before = lab.in_cli(|| (0..6).map(|_| https_get(&opts, "/").map(|r| r.backend())).collect::<Result<Vec<_>>>())?;
    ensure!(before.iter().any(|b| b == "h2 server 1") && before.iter().any(|b| b == "h2 server 2"), "both h2 servers serve at first: {before:?}");

    // The same server comes back speaking only http/1.1: it still completes handshakes.
    drop(fallen);
    let mut fallen = Backends::new(&lab.topo, &lab.certs)?;
    fallen.tls("10.77.2.2:8443", &["http/1.1"], "h2 server 1 (fell back)")?;
    let restarted = Instant::now();

    let down = wait_for(MARK_DOWN_WITHIN * 2, Duration::from_millis(50), || marked_down_lines(&log, 1).into_iter().next())
        .with_context(|| format!("server 1 not marked down within {:?}; log:\n{}", MARK_DOWN_WITHIN * 2, file_tail(&log, 4000)))?;
    eprintln!("marked down {:?} after the restart: {down}", restarted.elapsed());
    // A probe may have hit the restart's short gap (connection refused), but the failure
    // that marks the server down is the handshake without h2.
    ensure!(down.contains("ALPN protocols (h2)"), "marked down for its ALPN: {down}");
    ensure!(marked_down_lines(&log, 2).is_empty(), "the server still offering h2 stays up");

    let after = lab.in_cli(|| {
        (0..20)
            .map(|i| {
                let r = https_get(&opts, "/").with_context(|| format!("h2 request {i}"))?;
                ensure!(r.version == "HTTP/2" && r.status == 200, "{r:?}");
                Ok(r.backend())
            })
            .collect::<Result<Vec<_>>>()
    })?;
    ensure!(after.iter().all(|b| b == "h2 server 2"), "h2 clients land only on the server that still offers h2: {after:?}");
    drop(fallen);
    Ok(())
}

/// The echo server (id 5), soon marked down while its real port keeps serving.
fn failing_probe_config(shutdown_sessions: bool) -> Config {
    Config::new().frontend(Frontend::new(1, "443").default_farm(ECHO_FARM)).farm(echo_farm_soon_down(shutdown_sessions))
}

#[test]
fn shutdown_sessions_closes_open_connections_when_the_server_goes_down() -> Result<()> {
    require_root!();
    for shutdown_sessions in [true, false] {
        let mut lab = Lab::with_standard_backends()?;
        lab.start(&failing_probe_config(shutdown_sessions))?;
        let mut session = lab.echo_session(Duration::from_secs(3))?;
        // Two failed probes, 2 s apart, then a margin.
        std::thread::sleep(Duration::from_secs(5));
        let still_open = lab.in_cli(|| Ok(session.exchange(1024).is_ok()))?;
        ensure!(still_open != shutdown_sessions, "onMarkedDown shutdown-sessions={shutdown_sessions}: session still open = {still_open}");
    }
    Ok(())
}
