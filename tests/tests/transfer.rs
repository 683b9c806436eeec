//! Bytes through the load balancer arrive intact, in both directions, and a half-close travels,
//! on veths as the kernel leaves them and on wire-like ones.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use lb_tests::client::{echo_transfer, TlsClient};
use lb_tests::config::{Config, Frontend};
use lb_tests::lab::standard::*;
use lb_tests::{require_root, Lab, VethKind};

const MIB: u64 = 1 << 20;

fn echo_config() -> Config {
    Config::new().frontend(Frontend::new(1, "443").default_farm(ECHO_FARM)).farm(echo_farm())
}

#[test]
fn hundred_mib_each_way_is_byte_identical() -> Result<()> {
    require_root!();
    for veth in VethKind::ALL {
        hundred_mib_each_way(veth).map_err(|e| e.context(format!("{} veths", veth.name())))?;
    }
    Ok(())
}

fn hundred_mib_each_way(veth: VethKind) -> Result<()> {
    let mut lab = Lab::standard_on(veth)?;
    lab.start(&echo_config())?;
    let opts = lab.client("echo.lb.test").alpn(&["lb-echo"]).timeout(Duration::from_secs(10));
    let started = Instant::now();
    let report = lab.in_cli(|| echo_transfer(&opts, 100 * MIB, Duration::from_secs(20)))?;
    let took = started.elapsed();
    eprintln!("100 MiB each way in {took:?}: {report:?}");
    ensure!(report.sent == 100 * MIB && report.received == 100 * MIB, "{report:?}");
    ensure!(report.sent_sha256 == report.received_sha256, "{report:?}");
    ensure!(report.close_notify_received, "the server's close_notify did not arrive: {report:?}");
    Ok(())
}

#[test]
fn half_close_is_propagated() -> Result<()> {
    require_root!();
    for veth in VethKind::ALL {
        half_close(veth).map_err(|e| e.context(format!("{} veths", veth.name())))?;
    }
    Ok(())
}

fn half_close(veth: VethKind) -> Result<()> {
    let mut lab = Lab::standard_on(veth)?;
    lab.start(&echo_config())?;
    let opts = lab.client("echo.lb.test").alpn(&["lb-echo"]);
    let (at_shutdown, report) = lab.in_cli(|| {
        let mut session = TlsClient::connect(&opts)?.into_echo(Duration::from_secs(10))?;
        session.send(8 * MIB)?;
        let at_shutdown = session.received();
        // Our write side closes (close_notify, FIN) while the echo is still on its way back.
        session.shutdown_write()?;
        session.read_to_eof()?;
        Ok((at_shutdown, session.report()))
    })?;
    ensure!(at_shutdown < report.sent, "everything was echoed before the half-close: nothing proven");
    ensure!(report.received == report.sent, "after half-close got {} of {} bytes", report.received, report.sent);
    ensure!(report.sent_sha256 == report.received_sha256, "{report:?}");
    ensure!(report.close_notify_received, "the server's own close did not come back: {report:?}");
    Ok(())
}
