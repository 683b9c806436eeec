//! A long transfer keeps its backend and its bytes across 20 refreshes that each change the
//! applied configuration (a frontend renamed, another frontend added or removed).

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use lb_tests::api::{ApiDaemon, ApiDaemonOpts};
use lb_tests::client::TlsClient;
use lb_tests::{require_root, Lab};
use serde_json::json;

const MIB: u64 = 1 << 20;
const REFRESHES: u64 = 20;
const STEP: u64 = 10 * MIB;

#[test]
fn long_transfer_continues_across_20_refreshes() -> Result<()> {
    require_root!();
    let lab = Lab::with_standard_backends()?;
    let daemon = ApiDaemon::start(ApiDaemonOpts::in_netns(lab.topo.lb()))?;
    let api = daemon.client();
    let echo = api.create("/tcp/farm", json!({"displayName": "echo"}))?["farmId"].clone();
    api.create(&format!("/tcp/farm/{echo}/server"), json!({"address": "10.77.2.2", "port": 9443}))?;
    api.create("/tcp/frontend", json!({"port": "443", "defaultFarmId": echo}))?;
    api.refresh_done()?;

    let opts = lab.client("echo.lb.test").alpn(&["lb-echo"]).timeout(Duration::from_secs(10));
    let started = Instant::now();
    let report = lab.in_cli(|| {
        let mut session = TlsClient::connect(&opts)?.into_echo(Duration::from_secs(20))?;
        let mut extra: Option<u64> = None;
        for i in 0..REFRESHES {
            session.exchange(STEP)?;
            api.update("/tcp/frontend/1", json!({"displayName": format!("refresh {i}")}))?;
            extra = match extra {
                None => Some(api.create("/tcp/frontend", json!({"port": "8443", "defaultFarmId": echo}))?["frontendId"].as_u64().unwrap_or(0)),
                Some(id) => {
                    api.delete(&format!("/tcp/frontend/{id}"))?;
                    None
                }
            };
            let task = api.refresh(Some("local"))?;
            ensure!(task["status"] == "done", "refresh {i}: {task}");
        }
        session.shutdown_write()?;
        session.read_to_eof()?;
        Ok(session.report())
    })?;
    let took = started.elapsed();
    eprintln!("{} MiB each way across {REFRESHES} refreshes in {took:?}: {report:?}", report.sent / MIB);
    ensure!(report.sent == REFRESHES * STEP && report.received == report.sent, "{report:?}");
    ensure!(report.sent_sha256 == report.received_sha256, "{report:?}");
    ensure!(report.close_notify_received, "the server's close_notify did not arrive: {report:?}");
    ensure!(took < Duration::from_secs(180), "took {took:?}");
    let tasks = api.get("/task")?.json.as_array().map(Vec::len).unwrap_or(0);
    ensure!(tasks as u64 == REFRESHES + 1, "{tasks} tasks");
    Ok(())
}
