//! Found by the soak (`cargo xtask soak`): a client that resets a handed-off connection
//! (SO_LINGER 0) right behind data it sent. The RST reaches the kernel program before the
//! server acknowledged that data, so it is not at the server's last ACK; the server, once
//! the data is in, takes it as exact and resets. The flow must end with it: left live, its
//! entries outlived both sockets (until --handoff-idle-timeout, 15 minutes) and dropped the
//! SYN of a later connection from the same client port (a connect that times out).

use std::time::Duration;

use anyhow::{ensure, Result};
use lb_tests::config::{Config, Frontend};
use lb_tests::daemon::DaemonOpts;
use lb_tests::hostile::noise;
use lb_tests::lab::standard::*;
use lb_tests::netns::{run_in, LB_CLI_IF, LB_SRV_IF};
use lb_tests::soak::pump::{pump, Mode};
use lb_tests::stall_probe::StallProbe;
use lb_tests::{require_root, wait_for, Lab, VethKind};

const KIB: u64 = 1024;

fn resets_with_data_in_flight_end_their_flows(veth: VethKind) -> Result<()> {
    let mut lab = Lab::standard_on(veth)?;
    let out = run_in(lab.topo.lb(), &["sysctl", "-qw", "net.ipv4.conf.all.forwarding=1", "net.ipv6.conf.all.forwarding=1"])?;
    ensure!(out.status.success(), "sysctl: {}", String::from_utf8_lossy(&out.stderr));
    let opts = DaemonOpts {
        ifaces: vec![LB_CLI_IF.to_string(), LB_SRV_IF.to_string()],
        extra_args: vec!["--handoff-linger".into(), "0.5".into()],
        ..DaemonOpts::default()
    };
    let config = Config::new().frontend(Frontend::new(1, "443").default_farm(ECHO_FARM).fastpath("xdp")).farm(echo_farm());
    lab.start_with(&config, opts)?;
    let client = lab.client("echo.lb.test").alpn(&["lb-echo"]).timeout(Duration::from_secs(10));
    // 4 MiB written at once, the RST once a little of the echo is back: most of the data
    // is still in flight, or unacknowledged, when the RST goes.
    let payload = noise(4 << 20, 9);
    let stall_probe = StallProbe::of_lab(&lab)?;
    for after in [4 * KIB, 64 * KIB, 1024 * KIB] {
        lab.in_cli(|| {
            let mut addr = None;
            pump(&client, &payload, Mode::ResetAfter { after }, Duration::from_secs(10), &stall_probe, &mut addr).map_err(|f| f.error)
        })?;
        let ended = wait_for(Duration::from_secs(5), Duration::from_millis(100), || lab.stats().ok().filter(|s| s.spliced.is_empty()));
        let stats = lab.stats()?;
        ensure!(ended.is_some(), "the flow outlived a client reset after {after} bytes: {:?} (handoff {:?})", stats.spliced, stats.handoff);
    }
    Ok(())
}

#[test]
fn default_veth() -> Result<()> {
    require_root!();
    resets_with_data_in_flight_end_their_flows(VethKind::Default)
}

#[test]
fn wire_veth() -> Result<()> {
    require_root!();
    resets_with_data_in_flight_end_their_flows(VethKind::Wire)
}
