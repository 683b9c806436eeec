//! The kernel fast path: classified TLS connections handed to the kernel programs carry
//! their bytes intact, end cleanly, survive loss, and stay in user space when the two
//! connections cannot be joined. Every test runs twice: on veths as the kernel leaves them
//! (partial checksums, TSO, no GRO) and on wire-like ones (full checksums, GRO). No test
//! may see a stalled flow.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use lb_tests::client::TlsClient;
use lb_tests::config::{Config, Farm, Frontend, Server};
use lb_tests::daemon::{DaemonOpts, PinDir, Stats};
use lb_tests::echo::echo_transfer;
use lb_tests::lab::standard::*;
use lb_tests::netns::{run_in, BRIDGE_IF, CLI_IF, LB_CLI_IF, LB_SRV_IF, SRV_IF};
use lb_tests::raw::RawSender;
use lb_tests::EchoReport;
use lb_tests::{in_netns, on_both_veths, require_root, wait_for, Lab, VethKind, LB_VIP};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// XDP on both of the load balancer's interfaces (a hand-off needs both directions), and a
/// short linger so that ended flows are reclaimed within the test.
fn xdp_opts() -> DaemonOpts {
    DaemonOpts {
        ifaces: vec![LB_CLI_IF.to_string(), LB_SRV_IF.to_string()],
        extra_args: ["--handoff-linger", "0.5"].map(String::from).to_vec(),
        ..DaemonOpts::default()
    }
}

on_both_veths!(
    gib_each_way_is_byte_identical,
    auto_hands_off_only_past_the_threshold,
    splice_and_copy_frontends_never_hand_off,
    sack_on_one_side_only_falls_back_to_splice,
    without_timestamps_on_either_side_the_flow_is_still_handed_off,
    timestamps_or_ecn_on_one_side_only_fall_back,
    without_forwarding_the_flow_stays_in_user_space,
    ipv6_flow_is_handed_off,
    one_percent_loss_still_byte_identical,
    daemon_restart_mid_transfer_does_not_interrupt_a_handed_off_flow,
    daemon_killed_mid_transfer_does_not_interrupt_a_handed_off_flow,
    h2_session_with_many_streams_over_a_handed_off_flow,
    xdp_beside_tc_on_every_interface_is_byte_identical,
    blind_resets_do_not_end_a_handed_off_flow,
    flushed_neighbours_are_resolved_again_mid_transfer,
    a_restarted_daemon_keeps_adopted_flows_ports_from_new_connections,
    an_abandoned_hold_tells_the_peers_their_windows_again,
    one_armed_hand_off_is_byte_identical,
    bridged_hand_off_is_byte_identical,
    xdp_sends_only_where_the_next_hop_takes_xdp_frames,
    flows_end_between_full_scans,
    a_flow_torn_down_by_its_connection_is_counted_as_ended_at_once,
);

/// The standard lab, its load balancer forwarding (bpf_fib_lookup refuses otherwise).
fn xdp_lab(veth: VethKind) -> Result<Lab> {
    let lab = Lab::standard_on(veth)?;
    forwarding(&lab, true)?;
    Ok(lab)
}

fn forwarding(lab: &Lab, on: bool) -> Result<()> {
    let v = u8::from(on);
    let out = run_in(lab.topo.lb(), &["sysctl", "-qw", &format!("net.ipv4.conf.all.forwarding={v}"), &format!("net.ipv6.conf.all.forwarding={v}")])?;
    ensure!(out.status.success(), "sysctl: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

fn echo_config(fastpath: &str) -> Config {
    Config::new().frontend(Frontend::new(1, "443").default_farm(ECHO_FARM).fastpath(fastpath)).farm(echo_farm())
}

fn transfer(lab: &Lab, len: u64, idle: Duration) -> Result<EchoReport> {
    let opts = lab.client("echo.lb.test").alpn(&["lb-echo"]).timeout(idle);
    let report = lab.in_cli(|| echo_transfer(&opts, len, idle)).inspect_err(|_| {
        // What the XDP program and the hand-off saw is most of the diagnosis.
        eprintln!("transfer failed; stats: {:#?}", lab.stats());
    })?;
    ensure!(report.sent == len && report.received == len, "{report:?}");
    ensure!(report.sent_sha256 == report.received_sha256, "bytes differ: {report:?}");
    ensure!(report.close_notify_received, "no close_notify from the server: {report:?}");
    Ok(report)
}

/// Waits until `connections` connections have finished (however they were carried) and
/// every handed-off flow has been reclaimed.
fn wait_settled(lab: &Lab, connections: u64) -> Result<Stats> {
    let mut last = None;
    let done = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        let stats = lab.stats().ok()?;
        let h = handoff(&stats);
        let finished: u64 = h.by_frontend.values().flat_map(|m| m.values()).sum();
        let done = finished >= connections && stats.spliced.is_empty() && h.ended >= h.handed_off + h.adopted && h.active == 0;
        last = Some(stats.clone());
        done.then_some(stats)
    });
    let stats = done.with_context(|| format!("connections not settled within 10 s: {last:?}"))?;
    ensure!(handoff(&stats).stalls == 0, "a handed-off flow stalled: {:?}", stats.handoff);
    Ok(stats)
}

fn handoff(stats: &Stats) -> lb_tests::daemon::Handoff {
    stats.handoff.clone().unwrap_or_default()
}

fn gib_each_way_is_byte_identical(veth: VethKind) -> Result<()> {
    let mut lab = xdp_lab(veth)?;
    lab.start_with(&echo_config("xdp"), xdp_opts())?;
    let report = transfer(&lab, GIB, Duration::from_secs(60))?;
    eprintln!("{report:?}");
    let stats = wait_settled(&lab, 1)?;
    let h = handoff(&stats);
    ensure!(h.handed_off == 1, "hand-off statistics: {h:?}");
    ensure!(h.by_frontend.get("1").and_then(|m| m.get("xdp")) == Some(&1), "{h:?}");
    // Both directions' payload went through the XDP program (frames: a little more).
    ensure!(stats.counters.spliced_bytes >= 2 * GIB, "spliced bytes {} < 2 GiB: {:?}", stats.counters.spliced_bytes, stats.counters);
    ensure!(stats.counters.fib_failed == 0 && stats.counters.splice_errors == 0, "{:?}", stats.counters);
    Ok(())
}

fn auto_hands_off_only_past_the_threshold(veth: VethKind) -> Result<()> {
    let mut lab = xdp_lab(veth)?;
    let mut opts = xdp_opts();
    opts.extra_args.extend(["--handoff-after", "1048576"].map(String::from));
    lab.start_with(&echo_config("auto"), opts)?;
    transfer(&lab, 64 * 1024, Duration::from_secs(10))?;
    let short = handoff(&wait_settled(&lab, 1)?);
    ensure!(short.attempts == 0 && short.handed_off == 0, "a 64 KiB connection was handed off: {short:?}");
    transfer(&lab, 64 * MIB, Duration::from_secs(30))?;
    let stats = wait_settled(&lab, 2)?;
    let long = handoff(&stats);
    ensure!(long.handed_off == 1, "a 64 MiB connection was not handed off: {long:?}");
    // Handed off mid-stream: the hold stopped both peers before the freeze, which then had
    // nothing in flight to drop. Whether a zero window had to be sent for that depends on
    // timing (a peer that paused on its own at the hold, as on a starved CI host, is told
    // nothing: `windows_held` 0); the fixtures in xdp_fixtures.rs check the window rewrite.
    let c = &stats.counters;
    eprintln!("windows held: {}, frames dropped while frozen: {}", c.windows_held, c.frozen_dropped);
    ensure!(c.frozen_dropped == 0, "dropped {} frames while frozen (held {} windows)", c.frozen_dropped, c.windows_held);
    Ok(())
}

/// A client that stops reading keeps its flow from quiescing: the hand-off is abandoned
/// after the hold, whose zero windows the peers were told. Each socket's real window is then
/// sent in its name (`windows_reopened`), and the bytes carry on intact once the client reads.
fn an_abandoned_hold_tells_the_peers_their_windows_again(veth: VethKind) -> Result<()> {
    let mut lab = xdp_lab(veth)?;
    let mut opts = xdp_opts();
    // The attempt starts once 512 KiB moved both ways: by then the echo has filled the
    // silent client's receive buffer, and our socket toward it cannot empty its queue.
    opts.extra_args.extend(["--handoff-after", "524288", "--handoff-quiesce-timeout", "0.05"].map(String::from));
    lab.start_with(&echo_config("auto"), opts)?;
    let echo = lab.client("echo.lb.test").alpn(&["lb-echo"]);
    let report = lab.in_cli(|| {
        let mut session = TlsClient::connect(&echo)?.into_echo(Duration::from_secs(10))?;
        session.send_without_reading(640 * 1024)?;
        // The attempt meets the full queue until its quiesce timeout, and is abandoned.
        std::thread::sleep(Duration::from_millis(500));
        session.send(MIB)?;
        session.shutdown_write()?;
        session.read_to_eof()?;
        Ok(session.report())
    })?;
    let len = 640 * 1024 + MIB;
    ensure!(report.sent == len && report.received == len && report.sent_sha256 == report.received_sha256, "{report:?}");
    let h = handoff(&wait_settled(&lab, 1)?);
    eprintln!("{h:?}");
    ensure!(h.fallbacks.get("not quiescent").is_some_and(|n| *n >= 1), "the hand-off was not abandoned after the hold: {h:?}");
    ensure!(h.windows_reopened >= 1, "no window told again after the abandoned hold: {h:?}");
    Ok(())
}

fn splice_and_copy_frontends_never_hand_off(veth: VethKind) -> Result<()> {
    for mode in ["splice", "copy"] {
        let mut lab = xdp_lab(veth)?;
        lab.start_with(&echo_config(mode), xdp_opts())?;
        transfer(&lab, 16 * MIB, Duration::from_secs(20))?;
        let h = handoff(&wait_settled(&lab, 1)?);
        ensure!(h.attempts == 0, "{mode}: {h:?}");
        ensure!(h.by_frontend.get("1").and_then(|m| m.get(mode)) == Some(&1), "{mode}: {h:?}");
    }
    Ok(())
}

fn sack_on_one_side_only_falls_back_to_splice(veth: VethKind) -> Result<()> {
    let mut lab = xdp_lab(veth)?;
    run_in(lab.topo.cli(), &["sysctl", "-qw", "net.ipv4.tcp_sack=0"])?;
    lab.start_with(&echo_config("xdp"), xdp_opts())?;
    transfer(&lab, 32 * MIB, Duration::from_secs(20))?;
    let h = handoff(&wait_settled(&lab, 1)?);
    ensure!(h.handed_off == 0, "{h:?}");
    ensure!(h.fallbacks.get("sack differs").is_some_and(|n| *n >= 1), "{h:?}");
    ensure!(h.by_frontend.get("1").and_then(|m| m.get("splice")) == Some(&1), "{h:?}");
    Ok(())
}

fn without_timestamps_on_either_side_the_flow_is_still_handed_off(veth: VethKind) -> Result<()> {
    let mut lab = xdp_lab(veth)?;
    for ns in [lab.topo.cli(), lab.topo.srv()] {
        run_in(ns, &["sysctl", "-qw", "net.ipv4.tcp_timestamps=0"])?;
    }
    lab.start_with(&echo_config("xdp"), xdp_opts())?;
    transfer(&lab, 128 * MIB, Duration::from_secs(30))?;
    let stats = wait_settled(&lab, 1)?;
    ensure!(handoff(&stats).handed_off == 1, "{:?}", stats.handoff);
    ensure!(stats.counters.spliced_bytes >= 200 * MIB, "{:?}", stats.counters);
    Ok(())
}

fn timestamps_or_ecn_on_one_side_only_fall_back(veth: VethKind) -> Result<()> {
    for (sysctl, reason) in [("net.ipv4.tcp_timestamps=0", "timestamps differ"), ("net.ipv4.tcp_ecn=1", "ecn")] {
        let mut lab = xdp_lab(veth)?;
        run_in(lab.topo.cli(), &["sysctl", "-qw", sysctl])?;
        lab.start_with(&echo_config("xdp"), xdp_opts())?;
        transfer(&lab, 16 * MIB, Duration::from_secs(20))?;
        let h = handoff(&wait_settled(&lab, 1)?);
        ensure!(h.handed_off == 0 && h.fallbacks.get(reason).is_some_and(|n| *n >= 1), "{sysctl}: {h:?}");
    }
    Ok(())
}

fn without_forwarding_the_flow_stays_in_user_space(veth: VethKind) -> Result<()> {
    let mut lab = xdp_lab(veth)?;
    forwarding(&lab, false)?;
    lab.start_with(&echo_config("xdp"), xdp_opts())?;
    transfer(&lab, 16 * MIB, Duration::from_secs(20))?;
    let h = handoff(&wait_settled(&lab, 1)?);
    ensure!(h.handed_off == 0 && h.fallbacks.get("forwarding disabled") == Some(&1), "{h:?}");
    Ok(())
}

fn ipv6_flow_is_handed_off(veth: VethKind) -> Result<()> {
    let mut lab = xdp_lab(veth)?;
    lab.backends.tls("[fd77:2::2]:9443", &["lb-echo"], "farm echo6 (server 1)")?;
    let config =
        Config::new().frontend(Frontend::new(1, "443").default_farm(9).fastpath("xdp")).farm(Farm::new(9, "echo6").server(Server::new(9, "fd77:2::2", 9443)));
    lab.start_with(&config, xdp_opts())?;
    let opts = lab.client("echo.lb.test").alpn(&["lb-echo"]).connect_to("[fd77:1::1]:443".parse()?).timeout(Duration::from_secs(30));
    let report = lab.in_cli(|| echo_transfer(&opts, 256 * MIB, Duration::from_secs(30)))?;
    ensure!(report.received == 256 * MIB && report.sent_sha256 == report.received_sha256, "{report:?}");
    let h = handoff(&wait_settled(&lab, 1)?);
    ensure!(h.handed_off == 1, "{h:?}");
    Ok(())
}

/// No netem in this kernel (CONFIG_NET_SCH_NETEM is off): nftables drops 1% of the frames
/// each end receives and sends, at random.
fn lossy(ns: &str, dev: &str) -> Result<()> {
    let rules = format!(
        "table inet loss {{ chain in {{ type filter hook ingress device {dev} priority 0; numgen random mod 100 < 1 counter drop; }}; \
         chain out {{ type filter hook output priority 0; numgen random mod 100 < 1 counter drop; }}; }}"
    );
    let out = run_in(ns, &["nft", &rules]).context("nft (install nftables)")?;
    ensure!(out.status.success(), "nft: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// Frames the loss rules dropped in `ns`.
fn dropped(ns: &str) -> Result<u64> {
    let out = run_in(ns, &["nft", "list", "table", "inet", "loss"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.split("packets ").skip(1).filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok()).sum())
}

fn one_percent_loss_still_byte_identical(veth: VethKind) -> Result<()> {
    let mut lab = xdp_lab(veth)?;
    lossy(lab.topo.cli(), CLI_IF)?;
    lossy(lab.topo.srv(), SRV_IF)?;
    lab.start_with(&echo_config("xdp"), xdp_opts())?;
    transfer(&lab, 64 * MIB, Duration::from_secs(60))?;
    let stats = wait_settled(&lab, 1)?;
    ensure!(handoff(&stats).handed_off == 1, "{:?}", stats.handoff);
    ensure!(stats.counters.spliced_bytes >= 100 * MIB, "the bulk did not go through XDP: {:?}", stats.counters);
    let dropped = dropped(lab.topo.cli())? + dropped(lab.topo.srv())?;
    // The hooks see GRO/GSO aggregates, so this counts fewer (but larger) losses than wire frames.
    ensure!(dropped > 20, "only {dropped} frames were dropped: the loss was not applied");
    eprintln!("{dropped} frames dropped on the links");
    Ok(())
}

/// Starts a 512 MiB echo transfer, stops the daemon once the flow is handed off (SIGTERM,
/// or SIGKILL with `kill`), starts another on the same --pin-dir, and checks the transfer
/// completes intact and the new daemon adopted, then reclaimed, the flow.
fn restart_mid_transfer(veth: VethKind, kill: bool) -> Result<()> {
    let mut lab = xdp_lab(veth)?;
    let pins = PinDir::new(lab.topo.prefix())?;
    let mut opts = xdp_opts();
    opts.extra_args.extend(["--pin-dir".to_string(), pins.path.display().to_string()]);
    let config = echo_config("xdp");
    lab.start_with(&config, opts.clone())?;
    let ns = lab.topo.cli().to_string();
    let client = lab.client("echo.lb.test").alpn(&["lb-echo"]).timeout(Duration::from_secs(60));
    let len = 512 * MIB;
    let transfer = std::thread::spawn(move || in_netns(&ns, || echo_transfer(&client, len, Duration::from_secs(60))));
    wait_for(Duration::from_secs(20), Duration::from_millis(20), || lab.stats().ok().filter(|s| handoff(s).handed_off == 1 && !transfer.is_finished()))
        .context("the transfer was not handed off while running")?;
    if kill {
        lab.daemon.as_mut().context("no daemon")?.kill9();
    }
    // Dropping the first daemon (SIGTERM) leaves the flow pinned; the second adopts it.
    lab.start_with(&config, opts)?;
    let report = transfer.join().map_err(|_| anyhow::anyhow!("transfer thread panicked"))??;
    ensure!(report.received == len && report.sent_sha256 == report.received_sha256, "{report:?}");
    let h = handoff(&wait_settled(&lab, 0)?);
    ensure!(h.adopted == 1, "the new daemon did not adopt the flow: {h:?}");
    Ok(())
}

/// After a restart, an adopted flow has no socket to hold the load balancer's port of its
/// server-side connection. With a single ephemeral port on the load balancer, the flow
/// takes it; after the restart a new connection toward the same server must not get it
/// (its frames would collide with the flow's): connect() finds no port, and the adopted
/// session goes on intact. Once the flow ends, the port is free again.
fn a_restarted_daemon_keeps_adopted_flows_ports_from_new_connections(veth: VethKind) -> Result<()> {
    const PORT: u16 = 45_000;
    let mut lab = xdp_lab(veth)?;
    let out = run_in(lab.topo.lb(), &["sysctl", "-qw", &format!("net.ipv4.ip_local_port_range={PORT} {PORT}")])?;
    ensure!(out.status.success(), "sysctl: {}", String::from_utf8_lossy(&out.stderr));
    let pins = PinDir::new(lab.topo.prefix())?;
    let mut opts = xdp_opts();
    opts.extra_args.extend(["--pin-dir".to_string(), pins.path.display().to_string()]);
    let config = echo_config("xdp");
    lab.start_with(&config, opts.clone())?;
    let echo = lab.client("echo.lb.test").alpn(&["lb-echo"]).timeout(Duration::from_secs(10));
    let mut session = lab.in_cli(|| {
        let mut session = TlsClient::connect(&echo)?.into_echo(Duration::from_secs(10))?;
        session.exchange(64 * 1024)?;
        Ok(session)
    })?;
    wait_for(Duration::from_secs(10), Duration::from_millis(20), || lab.stats().ok().filter(|s| handoff(s).handed_off == 1))
        .context("the session was not handed off")?;
    lab.start_with(&config, opts)?;
    wait_for(Duration::from_secs(5), Duration::from_millis(50), || lab.stats().ok().filter(|s| handoff(s).adopted == 1)).context("the flow was not adopted")?;
    // The load balancer's only ephemeral port, toward the echo server: taken.
    let server: std::net::SocketAddr = "10.77.2.2:9443".parse()?;
    let attempt = lb_tests::netns::in_netns(lab.topo.lb(), || Ok(std::net::TcpStream::connect_timeout(&server, Duration::from_secs(2))))?;
    match attempt {
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {}
        other => anyhow::bail!("a new connection toward the server could draw the adopted flow's port: {other:?}"),
    }
    session.exchange(MIB).context("the adopted session")?;
    session.shutdown_write()?;
    session.read_to_eof()?;
    let report = session.report();
    ensure!(report.sent_sha256 == report.received_sha256 && report.close_notify_received, "{report:?}");
    drop(session);
    wait_settled(&lab, 0)?;
    // The flow is over: its port is free for new connections again (toward another server:
    // the echo server may keep the old connection in TIME_WAIT).
    let other: std::net::SocketAddr = "10.77.2.3:9444".parse()?;
    let freed = lb_tests::netns::in_netns(lab.topo.lb(), || Ok(std::net::TcpStream::connect_timeout(&other, Duration::from_secs(2))))?;
    ensure!(freed.is_ok(), "the port stayed reserved after the flow ended: {freed:?}");
    Ok(())
}

fn daemon_restart_mid_transfer_does_not_interrupt_a_handed_off_flow(veth: VethKind) -> Result<()> {
    restart_mid_transfer(veth, false)
}

fn daemon_killed_mid_transfer_does_not_interrupt_a_handed_off_flow(veth: VethKind) -> Result<()> {
    restart_mid_transfer(veth, true)
}

fn h2_session_with_many_streams_over_a_handed_off_flow(veth: VethKind) -> Result<()> {
    let mut lab = xdp_lab(veth)?;
    let config = Config::new().frontend(Frontend::new(1, "443").default_farm(H2_FARM).fastpath("xdp")).farm(h2_farm());
    lab.start_with(&config, xdp_opts())?;
    // One connection, 2,000 requests, 100 streams in flight at a time.
    let out = run_in(lab.topo.cli(), &["h2load", "-n", "2000", "-c", "1", "-m", "100", "https://10.77.1.1/"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(text.contains("2000 succeeded, 0 failed"), "h2load: {text}");
    let h = handoff(&wait_settled(&lab, 1)?);
    ensure!(h.handed_off == 1, "{h:?}");
    Ok(())
}

/// `--xdp always`: XDP beside tc on both veths. On wire-like veths (full checksums, NAPI on
/// every end) XDP splices the frames itself; on default ones every frame carries a partial
/// checksum, and XDP leaves them all to tc. Either way the bytes arrive intact.
fn xdp_beside_tc_on_every_interface_is_byte_identical(veth: VethKind) -> Result<()> {
    let mut lab = xdp_lab(veth)?;
    let mut opts = xdp_opts();
    opts.extra_args.extend(["--xdp", "always"].map(String::from));
    lab.start_with(&echo_config("xdp"), opts)?;
    transfer(&lab, 256 * MIB, Duration::from_secs(60))?;
    let stats = wait_settled(&lab, 1)?;
    ensure!(handoff(&stats).handed_off == 1, "{:?}", stats.handoff);
    let c = stats.counters;
    ensure!(c.spliced_bytes >= 512 * MIB && c.fib_failed == 0 && c.splice_errors == 0, "{c:?}");
    match veth {
        VethKind::Wire => ensure!(c.spliced_packets > 10 * c.xdp_deferred, "XDP left most frames to tc on wire-like veths: {c:?}"),
        VethKind::Default => ensure!(c.xdp_deferred > 0, "partial checksums were not left to tc: {c:?}"),
    }
    Ok(())
}

/// RFC 5961 §3 on the fast path: RSTs forged with a live flow's addresses but a guessed
/// sequence number are dropped by the program (and counted), and the flow carries on; the
/// real end of the connection still ends it.
fn blind_resets_do_not_end_a_handed_off_flow(veth: VethKind) -> Result<()> {
    let mut lab = xdp_lab(veth)?;
    lab.start_with(&echo_config("xdp"), xdp_opts())?;
    let opts = lab.client("echo.lb.test").alpn(&["lb-echo"]).timeout(Duration::from_secs(10));
    let mut session = lab.in_cli(|| {
        let mut session = TlsClient::connect(&opts)?.into_echo(Duration::from_secs(10))?;
        session.exchange(64 * 1024)?;
        Ok(session)
    })?;
    wait_for(Duration::from_secs(10), Duration::from_millis(20), || lab.stats().ok().filter(|s| handoff(s).handed_off == 1))
        .context("the session was not handed off")?;
    let std::net::SocketAddr::V4(client) = session.local_addr()? else { anyhow::bail!("the client is not IPv4") };
    let frontend = std::net::SocketAddrV4::new(LB_VIP, 443);
    // Eight guesses spread over the sequence space: at most one can fall in the window (and
    // be forwarded, for the server to answer with a challenge ACK); none is exact.
    const GUESSES: u64 = 8;
    lab.in_cli(|| {
        let raw = RawSender::new()?;
        (0..GUESSES as u32).try_for_each(|i| raw.rst(client, frontend, (i << 29) | 0x1234))
    })?;
    let dropped = wait_for(Duration::from_secs(5), Duration::from_millis(50), || lab.stats().ok().filter(|s| s.counters.rst_out_of_window >= GUESSES - 1));
    ensure!(dropped.is_some(), "forged RSTs not dropped as out of window: {:?}", lab.stats()?.counters);
    session.exchange(MIB).context("the session after forged RSTs")?;
    let stats = lab.stats()?;
    ensure!(handoff(&stats).ended == 0 && !stats.spliced.is_empty(), "the flow ended after forged RSTs: {:?}", stats.handoff);
    session.shutdown_write()?;
    session.read_to_eof()?;
    let report = session.report();
    ensure!(report.sent_sha256 == report.received_sha256 && report.close_notify_received, "{report:?}");
    drop(session);
    wait_settled(&lab, 1)?;
    Ok(())
}

/// The load balancer's neighbour entries vanish mid-transfer (as they expire while the
/// retired sockets are silent): tc has the kernel resolve them again, the transfer ends
/// byte-identical and no frame is dropped for want of a route.
fn flushed_neighbours_are_resolved_again_mid_transfer(veth: VethKind) -> Result<()> {
    let mut lab = xdp_lab(veth)?;
    lab.start_with(&echo_config("xdp"), xdp_opts())?;
    let ns = lab.topo.cli().to_string();
    let client = lab.client("echo.lb.test").alpn(&["lb-echo"]).timeout(Duration::from_secs(20));
    let transfer = std::thread::spawn(move || in_netns(&ns, || echo_transfer(&client, 256 * MIB, Duration::from_secs(20))));
    wait_for(Duration::from_secs(20), Duration::from_millis(20), || lab.stats().ok().filter(|s| handoff(s).handed_off == 1))
        .context("the transfer was not handed off")?;
    for _ in 0..5 {
        for dev in [LB_CLI_IF, LB_SRV_IF] {
            let out = run_in(lab.topo.lb(), &["ip", "neigh", "flush", "dev", dev])?;
            ensure!(out.status.success(), "ip neigh flush: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let report = transfer.join().map_err(|_| anyhow::anyhow!("transfer thread panicked"))??;
    ensure!(report.sent_sha256 == report.received_sha256 && report.received == 256 * MIB, "{report:?}");
    let stats = wait_settled(&lab, 1)?;
    ensure!(stats.counters.neigh_resolved > 0, "no frame went through neighbour resolution: {:?}", stats.counters);
    ensure!(stats.counters.fib_failed == 0 && handoff(&stats).unroutable == 0, "frames dropped for want of a route: {:?}", stats);
    Ok(())
}

/// The stall watch works: once the server's host drops everything the load balancer
/// forwards to it, the client's data keeps arriving while the server's ACK stands still,
/// and the hand-off statistics count a stall (every other test requires none).
#[test]
fn a_blackholed_peer_is_counted_as_a_stall() -> Result<()> {
    require_root!();
    blackholed_peer_stalls(xdp_opts())
}

/// The same with full scans an hour apart: the stalled flow is watched through the notes
/// of its data arriving in each new second.
#[test]
fn a_blackholed_peer_is_counted_as_a_stall_between_full_scans() -> Result<()> {
    require_root!();
    blackholed_peer_stalls(rare_full_scans())
}

/// The reaper reads the whole map once at start, then only the flows the program notes.
fn rare_full_scans() -> DaemonOpts {
    let mut opts = xdp_opts();
    opts.extra_args.extend(["--handoff-full-scan", "3600"].map(String::from));
    opts
}

fn blackholed_peer_stalls(opts: DaemonOpts) -> Result<()> {
    let mut lab = xdp_lab(VethKind::Default)?;
    lab.start_with(&echo_config("xdp"), opts)?;
    let ns = lab.topo.cli().to_string();
    let client = lab.client("echo.lb.test").alpn(&["lb-echo"]).timeout(Duration::from_secs(15));
    let transfer = std::thread::spawn(move || in_netns(&ns, || echo_transfer(&client, 8 * GIB, Duration::from_secs(15))));
    wait_for(Duration::from_secs(20), Duration::from_millis(20), || lab.stats().ok().filter(|s| handoff(s).handed_off == 1))
        .context("the transfer was not handed off")?;
    let blackhole = format!("table inet blackhole {{ chain in {{ type filter hook ingress device {SRV_IF} priority 0; drop; }}; }}");
    let out = run_in(lab.topo.srv(), &["nft", &blackhole]).context("nft (install nftables)")?;
    ensure!(out.status.success(), "nft: {}", String::from_utf8_lossy(&out.stderr));
    let stalled = wait_for(Duration::from_secs(15), Duration::from_millis(250), || lab.stats().ok().filter(|s| handoff(s).stalls >= 1));
    ensure!(stalled.is_some(), "no stall counted 15 s after the blackhole: {:?}", lab.stats()?.handoff);
    let result = transfer.join().map_err(|_| anyhow::anyhow!("transfer thread panicked"))?;
    ensure!(result.is_err(), "the transfer completed through a blackhole: {result:?}");
    Ok(())
}

/// Between two full scans the reaper reads only the flows the kernel program noted (an end,
/// data in a new second) and the pairs it already watches. With full scans an hour apart,
/// ended flows must still be reclaimed through their notes, and no note lost.
fn flows_end_between_full_scans(veth: VethKind) -> Result<()> {
    let mut lab = xdp_lab(veth)?;
    lab.start_with(&echo_config("xdp"), rare_full_scans())?;
    // Past the first tick's full scan: every flow below starts after it.
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..3 {
        transfer(&lab, 16 * MIB, Duration::from_secs(30))?;
    }
    let stats = wait_settled(&lab, 3)?;
    let h = handoff(&stats);
    ensure!(h.handed_off == 3 && h.ended == 3, "hand-off statistics: {h:?}");
    ensure!(stats.counters.notes_lost == 0, "{:?}", stats.counters);
    Ok(())
}

/// A handed-off flow whose connection task ends it (its server marked down, with
/// `onMarkedDown: shutdown-sessions`) leaves `handoff.active` at once: the reaper, which
/// full scans an hour apart here, never sees that flow end, so the task counts it out.
fn a_flow_torn_down_by_its_connection_is_counted_as_ended_at_once(veth: VethKind) -> Result<()> {
    let mut lab = xdp_lab(veth)?;
    let config = Config::new().frontend(Frontend::new(1, "443").default_farm(ECHO_FARM).fastpath("xdp")).farm(echo_farm_soon_down(true));
    lab.start_with(&config, rare_full_scans())?;
    std::thread::sleep(Duration::from_millis(500));
    let mut session = lab.echo_session(Duration::from_secs(3))?;
    let live =
        wait_for(Duration::from_secs(5), Duration::from_millis(50), || lab.stats().ok().filter(|s| handoff(s).handed_off == 1 && handoff(s).active == 1));
    ensure!(live.is_some(), "the session was not handed off: {:?}", lab.stats()?.handoff);
    let counted_out = wait_for(Duration::from_secs(12), Duration::from_millis(100), || {
        lab.stats().ok().filter(|s| handoff(s).active == 0 && handoff(s).ended == 1 && s.spliced.is_empty())
    });
    let stats = lab.stats()?;
    ensure!(counted_out.is_some(), "12 s on, the flow is still counted (or in the map): {:?}, spliced {:?}", stats.handoff, stats.spliced);
    ensure!(lab.in_cli(|| Ok(session.exchange(1024).is_err()))?, "the session outlived its server's shutdown-sessions");
    ensure!(handoff(&stats).stalls == 0, "{:?}", stats.handoff);
    Ok(())
}

/// A load balancer with one interface, as on a single-NIC host: both connections of a flow
/// arrive and leave by `lbc`, so the program sends every rewritten frame back out of the
/// interface it came in on (tc: a redirect to the ingress device; XDP: a devmap redirect to
/// it). A GiB each way arrives intact, carried by tc; on wire-like veths (the router's end
/// has NAPI) then 256 MiB with `--xdp always`, carried by XDP.
fn one_armed_hand_off_is_byte_identical(veth: VethKind) -> Result<()> {
    let mut lab = Lab::one_armed_on(veth)?;
    forwarding(&lab, true)?;
    let opts = DaemonOpts { ifaces: vec![LB_CLI_IF.to_string()], ..xdp_opts() };
    lab.start_with(&echo_config("xdp"), opts.clone())?;
    handed_off_intact(&lab, GIB)?;
    if veth == VethKind::Wire {
        let mut xdp = opts;
        xdp.extra_args.extend(["--xdp", "always"].map(String::from));
        lab.start_with(&echo_config("xdp"), xdp)?;
        let c = handed_off_intact(&lab, 256 * MIB)?;
        ensure!(c.spliced_packets > 10 * c.xdp_deferred, "XDP left most frames to tc: {c:?}");
    }
    Ok(())
}

/// A load balancer on a bridge, as on a Docker host balancing to containers: client and
/// servers are ports of `br0`, the daemon's one interface. tc redirects each rewritten frame
/// to the bridge, which forwards it to the port of the destination MAC. 256 MiB each way
/// arrive intact, carried by the program.
fn bridged_hand_off_is_byte_identical(veth: VethKind) -> Result<()> {
    let mut lab = Lab::bridged_on(veth)?;
    forwarding(&lab, true)?;
    lab.start_with(&echo_config("xdp"), DaemonOpts { ifaces: vec![BRIDGE_IF.to_string()], ..xdp_opts() })?;
    handed_off_intact(&lab, 256 * MIB)?;
    Ok(())
}

/// `--xdp always`, with full checksums from every sender (tx checksum off on `c0` and `s0`), so
/// that XDP could finish every frame itself. A veth takes XDP frames only while its peer has
/// NAPI (GRO, or an XDP program): with the default veths' peers (GRO off) the kernel would
/// drop every frame XDP redirected there, and every handed-off flow hung. The daemon keeps such
/// interfaces out of the devmap (their frames go through tc) and follows the kernel's
/// notifications: here the peers' GRO flips in the middle of a second transfer (off on
/// wire-like veths, on on default ones). Both transfers arrive intact, and the load balancer's
/// veths drop nothing, except, after the flip to GRO off, frames redirected in the moment
/// before the daemon heard of it.
fn xdp_sends_only_where_the_next_hop_takes_xdp_frames(veth: VethKind) -> Result<()> {
    let mut lab = xdp_lab(veth)?;
    let peers = [(lab.topo.cli().to_string(), CLI_IF), (lab.topo.srv().to_string(), SRV_IF)];
    for (ns, dev) in &peers {
        in_netns(ns, || lb_tests::ethtool::set_tx_checksum(dev, false))?;
    }
    let mut opts = xdp_opts();
    opts.extra_args.extend(["--xdp", "always"].map(String::from));
    lab.start_with(&echo_config("xdp"), opts)?;
    let peers_gro = veth == VethKind::Wire;
    egress_becomes(&lab, peers_gro)?;
    let first = handed_off_intact(&lab, 128 * MIB)?;
    ensure!(lb_tx_dropped(&lab)? == 0, "the load balancer's veths dropped frames: {first:?}");
    if peers_gro {
        ensure!(first.spliced_packets > 10 * first.xdp_deferred, "peers with GRO: XDP left most frames to tc: {first:?}");
    } else {
        ensure!(2 * first.xdp_deferred >= first.spliced_packets, "peers without GRO: XDP did not leave their frames to tc: {first:?}");
    }

    let flipped = std::thread::scope(|scope| -> Result<lb_tests::daemon::Counters> {
        let flip = scope.spawn(|| -> Result<()> {
            wait_for(Duration::from_secs(30), Duration::from_millis(10), || lab.stats().ok().filter(|s| handoff(s).handed_off >= 2))
                .context("the second transfer was not handed off")?;
            for (ns, dev) in &peers {
                in_netns(ns, || lb_tests::ethtool::set_gro(dev, !peers_gro))?;
            }
            Ok(())
        });
        transfer(&lab, 256 * MIB, Duration::from_secs(60))?;
        flip.join().map_err(|_| anyhow::anyhow!("the GRO flip panicked"))??;
        Ok(wait_settled(&lab, 2)?.counters)
    })?;
    egress_becomes(&lab, !peers_gro)?;
    let (spliced, deferred) = (flipped.spliced_packets - first.spliced_packets, flipped.xdp_deferred - first.xdp_deferred);
    let c = format!("spliced {spliced}, deferred {deferred} since the flip; {flipped:?}");
    if peers_gro {
        ensure!(2 * deferred >= spliced, "peers now without GRO: XDP did not leave their frames to tc: {c}");
    } else {
        ensure!(spliced > 3 * deferred, "peers now with GRO: XDP left most frames to tc: {c}");
        ensure!(lb_tx_dropped(&lab)? == 0, "the load balancer's veths dropped frames: {c}");
    }
    ensure!(flipped.fib_failed == 0 && flipped.splice_errors == 0, "{c}");
    Ok(())
}

/// Frames the load balancer's veths dropped on transmit: a frame XDP redirects to a veth whose
/// peer cannot take it is counted there.
/// Waits until `lb-user stats` lists both of the load balancer's veths as XDP egresses
/// (`all`) or neither.
fn egress_becomes(lab: &Lab, all: bool) -> Result<()> {
    let want: Vec<String> = if all { vec![LB_CLI_IF.to_string(), LB_SRV_IF.to_string()] } else { Vec::new() };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let mut last = None;
    let seen = wait_for(Duration::from_secs(5), Duration::from_millis(50), || {
        let egress = sorted(lab.stats().ok()?.xdp_egress);
        last = Some(egress.clone());
        (egress == want).then_some(())
    });
    seen.with_context(|| format!("XDP egress interfaces {last:?}, expected {want:?}"))
}

fn lb_tx_dropped(lab: &Lab) -> Result<u64> {
    let mut total = 0;
    for dev in [LB_CLI_IF, LB_SRV_IF] {
        let out = run_in(lab.topo.lb(), &["cat", &format!("/sys/class/net/{dev}/statistics/tx_dropped")])?;
        ensure!(out.status.success(), "reading {dev}'s tx_dropped: {}", String::from_utf8_lossy(&out.stderr));
        total += String::from_utf8_lossy(&out.stdout).trim().parse::<u64>().with_context(|| format!("{dev}'s tx_dropped"))?;
    }
    Ok(total)
}

/// One echo transfer of `len` bytes each way, intact, carried by the program as one
/// handed-off flow without a routing or rewrite error; the kernel counters afterwards.
fn handed_off_intact(lab: &Lab, len: u64) -> Result<lb_tests::daemon::Counters> {
    transfer(lab, len, Duration::from_secs(60))?;
    let stats = wait_settled(lab, 1)?;
    ensure!(handoff(&stats).handed_off == 1, "hand-off statistics: {:?}", stats.handoff);
    let c = stats.counters;
    ensure!(c.spliced_bytes >= 2 * len && c.fib_failed == 0 && c.splice_errors == 0, "{c:?}");
    Ok(c)
}
