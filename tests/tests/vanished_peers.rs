//! Handed-off flows whose end the kernel program never sees: a peer that vanishes without a
//! word (its RST lost, or judged out of window), or one that stops answering. The daemon
//! probes such peers (handoff/keepalive.rs):
//! - a later connection from the vanished client's address and port is not refused for long:
//!   its SYN meets the old flow, the daemon probes the client, the client's new socket answers
//!   with an RST that ends the old flow, and the SYN's retransmission reaches the listener
//!   (found by the soak: the SYN was dropped until the 15-minute idle timeout, and the
//!   connect timed out);
//! - a vanished client whose host is still there is found by the idle probe alone;
//! - a client that answers nothing ends the flow after a round of probes, with an RST to the
//!   server;
//! - an idle client that is alive answers the probes, and its flow goes on.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use lb_tests::client::{ClientOpts, TlsClient};
use lb_tests::config::{Config, Farm, Frontend, Server};
use lb_tests::daemon::{DaemonOpts, Stats};
use lb_tests::echo::EchoSession;
use lb_tests::lab::standard::*;
use lb_tests::netns::{run_in, LB_CLI_IF, LB_SRV_IF};
use lb_tests::{on_both_veths, wait_for, Lab, VethKind};

const KIB: u64 = 1024;

fn lab(veth: VethKind, keepalive_s: &str) -> Result<Lab> {
    lab_of(veth, keepalive_s, false, &[])
}

/// The echo farm as the frontend's default: over IPv4, or over IPv6 (`v6`); `extra`: more
/// daemon arguments.
fn lab_of(veth: VethKind, keepalive_s: &str, v6: bool, extra: &[&str]) -> Result<Lab> {
    let mut lab = Lab::standard_on(veth)?;
    let out = run_in(lab.topo.lb(), &["sysctl", "-qw", "net.ipv4.conf.all.forwarding=1", "net.ipv6.conf.all.forwarding=1"])?;
    ensure!(out.status.success(), "sysctl: {}", String::from_utf8_lossy(&out.stderr));
    let opts = DaemonOpts {
        ifaces: vec![LB_CLI_IF.to_string(), LB_SRV_IF.to_string()],
        extra_args: ["--handoff-linger", "0.5", "--handoff-keepalive", keepalive_s].iter().chain(extra).map(|s| s.to_string()).collect(),
        ..DaemonOpts::default()
    };
    let config = if v6 {
        lab.backends.tls("[fd77:2::2]:9443", &["lb-echo"], "farm echo6 (server 1)")?;
        Config::new().frontend(Frontend::new(1, "443").default_farm(9).fastpath("xdp")).farm(Farm::new(9, "echo6").server(Server::new(9, "fd77:2::2", 9443)))
    } else {
        Config::new().frontend(Frontend::new(1, "443").default_farm(ECHO_FARM).fastpath("xdp")).farm(echo_farm())
    };
    lab.start_with(&config, opts)?;
    Ok(lab)
}

fn echo_client(lab: &Lab, v6: bool) -> Result<ClientOpts> {
    let client = lab.client("echo.lb.test").alpn(&["lb-echo"]).timeout(Duration::from_secs(10));
    Ok(if v6 { client.connect_to("[fd77:1::1]:443".parse()?) } else { client })
}

/// An echo session whose flow the program carries.
fn handed_off_session(lab: &Lab) -> Result<EchoSession> {
    handed_off_session_of(lab, false)
}

fn handed_off_session_of(lab: &Lab, v6: bool) -> Result<EchoSession> {
    let client = echo_client(lab, v6)?;
    let mut session = lab.in_cli(|| TlsClient::connect(&client)?.into_echo(Duration::from_secs(10)))?;
    session.exchange(256 * KIB)?;
    wait_for(Duration::from_secs(10), Duration::from_millis(50), || lab.stats().ok().filter(|s| s.spliced.len() == 2))
        .context("the session was not handed off")?;
    Ok(session)
}

/// nftables in the client's namespace: `rule` on a filter chain of `hook`.
fn client_filter(lab: &Lab, table: &str, hook: &str, rule: &str) -> Result<()> {
    let rules = format!("table inet {table} {{ chain c {{ type filter hook {hook} priority 0; {rule}; }}; }}");
    let out = run_in(lab.topo.cli(), &["nft", &rules]).context("nft (install nftables)")?;
    ensure!(out.status.success(), "nft: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

fn drop_table(lab: &Lab, table: &str) -> Result<()> {
    let out = run_in(lab.topo.cli(), &["nft", "delete", "table", "inet", table])?;
    ensure!(out.status.success(), "nft: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// Closes the client's socket with an RST that never leaves its namespace.
fn vanish(lab: &Lab, session: EchoSession) -> Result<()> {
    client_filter(lab, "silence", "output", "tcp flags & (rst | fin) != 0 drop")?;
    session.abort()?;
    std::thread::sleep(Duration::from_millis(100));
    drop_table(lab, "silence")
}

fn handoff(stats: &Stats) -> lb_tests::daemon::Handoff {
    stats.handoff.clone().unwrap_or_default()
}

fn a_new_connection_on_a_vanished_clients_port_gets_through(veth: VethKind) -> Result<()> {
    new_connection_on_a_vanished_port(veth, false, &[])
}

fn a_new_connection_on_a_vanished_ipv6_clients_port_gets_through(veth: VethKind) -> Result<()> {
    new_connection_on_a_vanished_port(veth, true, &[])
}

/// With full scans an hour apart, the SYN reaches the reaper through the program's note.
fn a_new_connection_on_a_vanished_clients_port_gets_through_between_full_scans(veth: VethKind) -> Result<()> {
    new_connection_on_a_vanished_port(veth, false, &["--handoff-full-scan", "3600"])
}

fn new_connection_on_a_vanished_port(veth: VethKind, v6: bool, extra: &[&str]) -> Result<()> {
    // The idle probe is kept out of the way: the SYN alone must end the old flow.
    let lab = lab_of(veth, "3600", v6, extra)?;
    // Past the daemon's first tick, a full scan: the flow below must be seen through notes
    // when full scans are made rare.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let session = handed_off_session_of(&lab, v6)?;
    let port = session.local_addr()?.port();
    vanish(&lab, session)?;
    ensure!(lab.stats()?.spliced.len() == 2, "the flow ended although nothing reached the load balancer");
    let client = echo_client(&lab, v6)?.bind_port(port);
    let started = std::time::Instant::now();
    let mut again = lab.in_cli(|| TlsClient::connect(&client)?.into_echo(Duration::from_secs(10))).context("a connection from the vanished client's port")?;
    let took = started.elapsed();
    again.exchange(64 * KIB)?;
    let stats = lab.stats()?;
    ensure!(stats.counters.syn_on_live >= 1 && handoff(&stats).probes >= 1, "{:?} {:?}", stats.counters, stats.handoff);
    eprintln!("connected from the reused port {port} in {took:?} ({} SYNs met the old flow)", stats.counters.syn_on_live);
    Ok(())
}

fn an_idle_probe_finds_a_vanished_client(veth: VethKind) -> Result<()> {
    let lab = lab(veth, "1")?;
    let session = handed_off_session(&lab)?;
    vanish(&lab, session)?;
    let ended = wait_for(Duration::from_secs(10), Duration::from_millis(100), || lab.stats().ok().filter(|s| s.spliced.is_empty()));
    let stats = lab.stats()?;
    ensure!(ended.is_some(), "the vanished client's flow is still live: {:?}", stats.handoff);
    ensure!(handoff(&stats).probes >= 1 && handoff(&stats).dead_peers == 0, "{:?}", stats.handoff);
    Ok(())
}

fn a_client_that_answers_nothing_is_given_up_and_the_server_reset(veth: VethKind) -> Result<()> {
    let lab = lab(veth, "1")?;
    let session = handed_off_session(&lab)?;
    client_filter(&lab, "blackhole", "input", "tcp sport 443 drop")?;
    // 1 s of silence, then probes every 0.5 s: six unanswered take about 4 s.
    let ended = wait_for(Duration::from_secs(15), Duration::from_millis(100), || lab.stats().ok().filter(|s| s.spliced.is_empty()));
    let stats = lab.stats()?;
    drop(session);
    ensure!(ended.is_some(), "the flow of a silent client is still live: {:?}", stats.handoff);
    ensure!(handoff(&stats).dead_peers == 1 && handoff(&stats).probes >= 6, "{:?}", stats.handoff);
    Ok(())
}

fn an_idle_live_client_answers_the_probes_and_keeps_its_flow(veth: VethKind) -> Result<()> {
    let lab = lab(veth, "1")?;
    let mut session = handed_off_session(&lab)?;
    std::thread::sleep(Duration::from_secs(6));
    let stats = lab.stats()?;
    ensure!(stats.spliced.len() == 2, "an idle, live flow was ended: {:?}", stats.handoff);
    ensure!(handoff(&stats).probes >= 4 && handoff(&stats).dead_peers == 0, "{:?}", stats.handoff);
    session.exchange(256 * KIB)?;
    session.shutdown_write()?;
    session.read_to_eof()?;
    let report = session.report();
    ensure!(report.sent_sha256 == report.received_sha256, "{report:?}");
    Ok(())
}

on_both_veths!(
    a_new_connection_on_a_vanished_clients_port_gets_through,
    a_new_connection_on_a_vanished_ipv6_clients_port_gets_through,
    a_new_connection_on_a_vanished_clients_port_gets_through_between_full_scans,
    an_idle_probe_finds_a_vanished_client,
    a_client_that_answers_nothing_is_given_up_and_the_server_reset,
    an_idle_live_client_answers_the_probes_and_keeps_its_flow,
);
