//! The systemd unit's privileges are enough for the daemon's whole job, and really are all it
//! gets. systemd runs lb-user.service as root with the unit's `CapabilityBoundingSet=` and
//! `NoNewPrivileges=`; `setpriv` (util-linux) sets up exactly that for the daemon here, read
//! from `dist/systemd/lb-user.service` itself. Under it the daemon loads and attaches its kernel
//! programs on both interfaces, pins them in a bpffs (`--pin-dir`), routes a TLS connection and
//! hands it to the kernel (TCP_REPAIR); without CAP_BPF it stops before serving, which shows
//! the set was really applied. (The unit's file-system and system-call sandboxing needs systemd
//! as PID 1; `cargo xtask package` runs `systemd-analyze verify` on the unit.)

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use lb_tests::config::{Config, Frontend};
use lb_tests::daemon::{DaemonOpts, PinDir, Stats};
use lb_tests::echo::echo_transfer;
use lb_tests::lab::standard::*;
use lb_tests::netns::{run_in, LB_CLI_IF, LB_SRV_IF};
use lb_tests::{require_root, wait_for, Lab, VethKind};

const MIB: u64 = 1 << 20;

/// The unit's capabilities, as setpriv names them (`bpf`, `net_admin`, ...).
fn unit_capabilities() -> Result<Vec<String>> {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/systemd/lb-user.service");
    let text = std::fs::read_to_string(&unit).with_context(|| format!("reading {}", unit.display()))?;
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("CapabilityBoundingSet="))
        .with_context(|| format!("{} has no CapabilityBoundingSet=", unit.display()))?;
    ensure!(text.lines().any(|l| l.trim() == "NoNewPrivileges=yes"), "{} does not set NoNewPrivileges=yes", unit.display());
    line.split_whitespace().map(|cap| cap.strip_prefix("CAP_").map(str::to_lowercase).with_context(|| format!("{cap}: not a capability name"))).collect()
}

/// `setpriv` keeping only `caps` (for root: its permitted and effective sets after exec), with
/// no_new_privs, as systemd does for the unit.
fn as_the_unit_runs(caps: &[String]) -> Result<Vec<String>> {
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].into_iter().find(|p| Path::new(p).is_file()).context("setpriv is not installed (Debian: util-linux)")?;
    let bounding: String = std::iter::once("-all".to_string()).chain(caps.iter().map(|c| format!("+{c}"))).collect::<Vec<_>>().join(",");
    Ok(vec![setpriv.to_string(), format!("--bounding-set={bounding}"), "--inh-caps=-all".to_string(), "--no-new-privs".to_string(), "--".to_string()])
}

fn echo_config() -> Config {
    Config::new().frontend(Frontend::new(1, "443").default_farm(ECHO_FARM).fastpath("xdp")).farm(echo_farm())
}

fn opts(wrapper: Vec<String>, pins: &PinDir) -> DaemonOpts {
    DaemonOpts {
        ifaces: vec![LB_CLI_IF.to_string(), LB_SRV_IF.to_string()],
        extra_args: vec!["--handoff-linger".to_string(), "0.5".to_string(), "--pin-dir".to_string(), pins.path.display().to_string()],
        wrapper,
        ..DaemonOpts::default()
    }
}

/// The standard lab, its load balancer forwarding (bpf_fib_lookup refuses otherwise).
fn forwarding_lab() -> Result<Lab> {
    let lab = Lab::standard_on(VethKind::Default)?;
    let out = run_in(lab.topo.lb(), &["sysctl", "-qw", "net.ipv4.conf.all.forwarding=1", "net.ipv6.conf.all.forwarding=1"])?;
    ensure!(out.status.success(), "sysctl: {}", String::from_utf8_lossy(&out.stderr));
    Ok(lab)
}

/// Waits until one connection has finished and its handed-off flow is reclaimed.
fn settled(lab: &Lab) -> Result<Stats> {
    let mut last = None;
    let done = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        let stats = lab.stats().ok()?;
        let h = stats.handoff.clone().unwrap_or_default();
        let finished: u64 = h.by_frontend.values().flat_map(|m| m.values()).sum();
        last = Some(stats.clone());
        (finished >= 1 && stats.spliced.is_empty() && h.active == 0).then_some(stats)
    });
    done.with_context(|| format!("the connection did not settle within 10 s: {last:?}"))
}

#[test]
fn with_only_the_units_capabilities_the_daemon_attaches_pins_and_hands_off() -> Result<()> {
    require_root!();
    let caps = unit_capabilities()?;
    let mut lab = forwarding_lab()?;
    let pins = PinDir::new(lab.topo.prefix())?;
    lab.start_with(&echo_config(), opts(as_the_unit_runs(&caps)?, &pins))?;
    // Both interfaces' links pinned: the daemon wrote into bpffs without CAP_SYS_ADMIN.
    for iface in [LB_CLI_IF, LB_SRV_IF] {
        let link = pins.path.join(format!("tc-{iface}"));
        ensure!(link.exists(), "{} was not pinned (capabilities {caps:?})", link.display());
    }
    let len = 16 * MIB;
    let idle = Duration::from_secs(20);
    let client = lab.client("echo.lb.test").alpn(&["lb-echo"]).timeout(idle);
    let report = lab.in_cli(|| echo_transfer(&client, len, idle))?;
    ensure!(report.sent == len && report.received == len, "{report:?}");
    ensure!(report.sent_sha256 == report.received_sha256, "bytes differ: {report:?}");
    let stats = settled(&lab)?;
    let h = stats.handoff.clone().unwrap_or_default();
    ensure!(h.handed_off == 1, "not handed off under the unit's capabilities {caps:?} (TCP_REPAIR needs CAP_NET_ADMIN): {h:?}");
    ensure!(stats.counters.spliced_bytes > 0, "the kernel carried nothing: {:?}", stats.counters);
    Ok(())
}

#[test]
fn without_cap_bpf_the_daemon_stops_before_serving() -> Result<()> {
    require_root!();
    let caps: Vec<String> = unit_capabilities()?.into_iter().filter(|c| c != "bpf").collect();
    let mut lab = forwarding_lab()?;
    let pins = PinDir::new(lab.topo.prefix())?;
    let mut opts = opts(as_the_unit_runs(&caps)?, &pins);
    opts.ready_timeout = Duration::from_secs(10);
    opts.print_log_on_drop = false;
    match lab.start_with(&echo_config(), opts) {
        Ok(_) => bail!("the daemon served without CAP_BPF (capabilities {caps:?}): setpriv dropped nothing"),
        Err(e) => {
            let said = format!("{e:#}");
            ensure!(said.contains("exited"), "the daemon did not stop by itself: {said}");
            Ok(())
        }
    }
}
