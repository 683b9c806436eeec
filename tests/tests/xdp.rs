//! The XDP program: source ACLs enforced before any handshake, pinned flows and their counters,
//! observed through `lb-user stats`.

use std::io::ErrorKind;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use lb_tests::client::{https_get, tcp_connect, TlsClient};
use lb_tests::config::{Config, Frontend};
use lb_tests::daemon::Flow;
use lb_tests::lab::standard::*;
use lb_tests::{require_root, vip, wait_for, EchoSession, Lab, CLIENT_IP, CLIENT_IP2};

const MIB: u64 = 1 << 20;

/// A SYN from `source` to the frontend: `Ok` if the handshake completed, else the error kind.
fn syn_from(lab: &Lab, source: std::net::Ipv4Addr) -> Result<std::result::Result<(), ErrorKind>> {
    lab.in_cli(|| Ok(tcp_connect(Some(source.into()), vip(443), Duration::from_secs(2)).map(drop).map_err(|e| e.kind())))
}

fn served_from(lab: &Lab, source: std::net::Ipv4Addr) -> Result<String> {
    let opts = lab.client("h1.lb.test").alpn(&["http/1.1"]).bind(source);
    Ok(lab.in_cli(|| https_get(&opts, "/"))?.backend())
}

#[test]
fn denied_source_syn_dropped_in_xdp() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    let config = Config::new().frontend(Frontend::new(1, "443").default_farm(H1_FARM).denied(&["10.77.1.3/32"])).farm(h1_farm());
    lab.start(&config)?;
    let before = lab.stats()?.counters.acl_dropped;
    let denied = syn_from(&lab, CLIENT_IP2)?;
    ensure!(denied == Err(ErrorKind::TimedOut), "connect from denied {CLIENT_IP2}: {denied:?} (a refusal or success means the SYN reached the stack)");
    let after = lab.stats()?.counters.acl_dropped;
    ensure!(after > before, "acl_dropped {before} -> {after}");
    let backend = served_from(&lab, CLIENT_IP)?;
    ensure!(backend.starts_with("farm h1 "), "allowed {CLIENT_IP} landed on {backend:?}");
    Ok(())
}

#[test]
fn allowed_source_list_admits_only_listed() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    let config = Config::new().frontend(Frontend::new(1, "443").default_farm(H1_FARM).allowed(&["10.77.1.2/32"])).farm(h1_farm());
    lab.start(&config)?;
    let backend = served_from(&lab, CLIENT_IP)?;
    ensure!(backend.starts_with("farm h1 "), "listed {CLIENT_IP} landed on {backend:?}");
    let before = lab.stats()?.counters.acl_dropped;
    let unlisted = syn_from(&lab, CLIENT_IP2)?;
    ensure!(unlisted == Err(ErrorKind::TimedOut), "connect from unlisted {CLIENT_IP2}: {unlisted:?}");
    let after = lab.stats()?.counters.acl_dropped;
    ensure!(after > before, "acl_dropped {before} -> {after}");
    Ok(())
}

fn echo_config() -> Config {
    Config::new().frontend(Frontend::new(1, "443").default_farm(ECHO_FARM)).farm(echo_farm())
}

/// An echo session opened from the client namespace (its socket stays there).
fn open_echo(lab: &Lab, first_exchange: u64) -> Result<EchoSession> {
    let opts = lab.client("echo.lb.test").alpn(&["lb-echo"]);
    lab.in_cli(|| {
        let mut session = TlsClient::connect(&opts)?.into_echo(Duration::from_secs(10))?;
        session.exchange(first_exchange)?;
        Ok(session)
    })
}

/// The client-side flow of `client`, waiting (bounded) for it to appear.
fn flow_of(lab: &Lab, client: &str) -> Result<Flow> {
    let found =
        wait_for(Duration::from_secs(5), Duration::from_millis(100), || lab.stats().ok().and_then(|s| s.flows_of(client).first().map(|f| (*f).clone())));
    found.with_context(|| format!("no flow for client {client} within 5 s; stats: {:?}", lab.stats()))
}

#[test]
fn flow_entry_present_during_connection_and_gone_after() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    lab.start(&echo_config())?;
    let mut session = open_echo(&lab, 4 * MIB)?;
    let client = session.local_addr()?.to_string();

    let flow = flow_of(&lab, &client)?;
    ensure!(flow.frontend == "10.77.1.1:443", "{flow:?}");
    ensure!(flow.farm_id == ECHO_FARM && flow.server_id == ECHO_SERVER, "{flow:?}");

    session.shutdown_write()?;
    session.read_to_eof()?;
    let report = session.report();
    ensure!(report.received == report.sent, "{report:?}");
    drop(session);
    let gone = wait_for(Duration::from_secs(10), Duration::from_millis(100), || lab.stats().ok().filter(|s| s.flows_of(&client).is_empty()).map(|_| ()));
    ensure!(gone.is_some(), "flow of {client} still present 10 s after close: {:?}", lab.stats()?.flows_of(&client));
    Ok(())
}

#[test]
fn flow_counters_count_packets() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    lab.start(&echo_config())?;
    let start = lab.stats()?.counters;
    let mut session = open_echo(&lab, 8 * MIB)?;
    let client = session.local_addr()?.to_string();

    let first = flow_of(&lab, &client)?;
    let mid = lab.stats()?.counters;
    ensure!(first.packets > 0 && first.bytes > 0, "after 8 MiB each way: {first:?}");
    ensure!(mid.flow_packets > start.flow_packets && mid.flow_bytes > start.flow_bytes, "{start:?} -> {mid:?}");

    session.exchange(4 * MIB)?;
    let second = flow_of(&lab, &client)?;
    let end = lab.stats()?.counters;
    ensure!(second.packets > first.packets, "packets {} -> {}", first.packets, second.packets);
    ensure!(second.bytes >= first.bytes + MIB, "4 MiB more each way counted only {} bytes", second.bytes - first.bytes);
    ensure!(end.flow_packets > mid.flow_packets && end.flow_bytes >= mid.flow_bytes + MIB, "{mid:?} -> {end:?}");

    session.shutdown_write()?;
    session.read_to_eof()?;
    Ok(())
}

#[test]
fn ipv6_denied_source_syn_dropped_in_xdp() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    let config = Config::new().frontend(Frontend::new(1, "443").default_farm(H1_FARM).denied(&["fd77:1::2/128"])).farm(h1_farm());
    lab.start(&config)?;
    let before = lab.stats()?.counters.acl_dropped;
    let frontend_v6 = std::net::SocketAddr::new("fd77:1::1".parse()?, 443);
    let denied = lab.in_cli(|| Ok(tcp_connect(None, frontend_v6, Duration::from_secs(2)).map(drop).map_err(|e| e.kind())))?;
    ensure!(denied == Err(ErrorKind::TimedOut), "connect from denied fd77:1::2: {denied:?}");
    let after = lab.stats()?.counters.acl_dropped;
    ensure!(after > before, "acl_dropped {before} -> {after}");
    // The same host over IPv4 is not in the IPv6 list.
    let backend = served_from(&lab, CLIENT_IP)?;
    ensure!(backend.starts_with("farm h1 "), "IPv4 client landed on {backend:?}");
    Ok(())
}

/// Whether the daemon's tc program serves lbc's ingress (a veth: tc alone, no XDP).
fn kernel_program_attached(lab: &Lab) -> Result<bool> {
    let bin = lb_tests::lb_user_bin().display().to_string();
    let out = lb_tests::run_in(lab.topo.lb(), &[bin.as_str(), "hooks", "--iface", "lbc"])?;
    ensure!(out.status.success(), "lb-user hooks: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).contains("lb_tc"))
}

#[test]
fn kernel_programs_detached_when_daemon_stops_even_when_killed() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    let config = Config::new().frontend(Frontend::new(1, "443").default_farm(H1_FARM)).farm(h1_farm());
    for signal in ["TERM", "KILL"] {
        lab.start(&config)?;
        ensure!(kernel_program_attached(&lab)?, "no tc program on lbc while the daemon runs");
        let pid = lab.daemon()?.runtime()["pid"].as_u64().context("runtime.json has no pid")?;
        let status = std::process::Command::new("kill").args([format!("-{signal}"), pid.to_string()]).status()?;
        ensure!(status.success(), "kill -{signal} {pid}");
        let detached = wait_for(Duration::from_secs(10), Duration::from_millis(50), || (!kernel_program_attached(&lab).unwrap_or(true)).then_some(()));
        ensure!(detached.is_some(), "the tc program is still attached 10 s after SIG{signal}");
        lab.daemon = None;
    }
    Ok(())
}

/// A refresh whose ACLs do not fit in the kernel's tries fails as a whole: the task reports
/// the error, and the previous configuration (its ACL included) stays in force.
#[test]
fn refresh_overflowing_the_acl_map_fails_whole_and_keeps_the_previous_policy() -> Result<()> {
    require_root!();
    let lab = Lab::with_standard_backends()?;
    let daemon = lb_tests::api::ApiDaemon::start(lb_tests::api::ApiDaemonOpts::in_netns(lab.topo.lb()))?;
    let api = daemon.client();
    api.create("/tcp/farm", serde_json::json!({"displayName": "h1", "port": 8443}))?;
    api.create("/tcp/farm/1/server", serde_json::json!({"address": "10.77.2.4"}))?;
    api.create("/tcp/frontend", serde_json::json!({"port": "443", "zone": "all", "defaultFarmId": 1, "deniedSource": ["10.77.1.3/32"]}))?;
    api.refresh_done()?;
    ensure!(syn_from(&lab, CLIENT_IP2)? == Err(ErrorKind::TimedOut), "the denied source got in before the overflow");
    // 4 × 20,000 entries: more than the 65,536 the IPv4 trie holds.
    for frontend in 0..4u32 {
        let cidrs: Vec<String> = (0..20_000u32).map(|i| format!("10.{}.{}.{}/32", 100 + frontend, i / 256, i % 256)).collect();
        api.create("/tcp/frontend", serde_json::json!({"port": (444 + frontend).to_string(), "zone": "all", "defaultFarmId": 1, "deniedSource": cidrs}))?;
    }
    let task = api.refresh(None)?;
    ensure!(task["status"] == "error", "the overflowing refresh did not fail: {task}");
    ensure!(task["message"].as_str().is_some_and(|m| m.contains("ACL entry")), "the error does not say what overflowed: {task}");
    ensure!(syn_from(&lab, CLIENT_IP2)? == Err(ErrorKind::TimedOut), "the previous deny list stopped working");
    let backend = served_from(&lab, CLIENT_IP)?;
    ensure!(backend.starts_with("farm h1 "), "the allowed client landed on {backend:?}");
    let refused = lab.in_cli(|| Ok(tcp_connect(None, vip(444), Duration::from_secs(2)).is_err()))?;
    ensure!(refused, "a frontend of the failed refresh is listening");
    // Nothing of the failed attempt stayed in the tries: a refresh that fits now succeeds.
    for frontend in 2..=5 {
        api.delete(&format!("/tcp/frontend/{frontend}"))?;
    }
    api.create("/tcp/frontend", serde_json::json!({"port": "444", "zone": "all", "defaultFarmId": 1, "deniedSource": ["10.77.1.2/32"]}))?;
    api.refresh_done().context("a refresh after the failed one")?;
    Ok(())
}
