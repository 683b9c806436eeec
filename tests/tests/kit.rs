//! The test kit itself, without the load balancer: namespaces and their wiring, certificates,
//! backends, and the TLS clients (split hellos, h2, echo, half-close) against backends directly.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use lb_tests::client::{echo_transfer, https_get, is_closed_by_peer, plain_tcp_exchange, tcp_connect, TlsClient};
use lb_tests::curl::curl_get;
use lb_tests::hello::{client_hello_bytes, layout};
use lb_tests::netns::{pids_in, CLI_IF, LB_CLI_IF, LB_SRV_IF, SRV_IF};
use lb_tests::{ethtool, in_netns, require_root, spawn_in, Backends, Certs, ClientOpts, Topology};

const LONG_ALPN: &[&str] = &[
    "lb-test-filler-protocol-01",
    "lb-test-filler-protocol-02",
    "lb-test-filler-protocol-03",
    "lb-test-filler-protocol-04",
    "lb-test-filler-protocol-05",
    "lb-test-filler-protocol-06",
    "http/1.1",
    "h2",
];

fn direct(certs: &Certs, sni: &str, to: &str) -> ClientOpts {
    ClientOpts::new(certs.roots(), sni, to.parse().expect("address"))
}

/// Accepts one connection in `ns` on `addr` and echoes one line; returns what the client read.
fn tcp_reachable(server_ns: &str, client_ns: &str, addr: SocketAddr) -> Result<String> {
    let listener = in_netns(server_ns, || Ok(TcpListener::bind(addr)?))?;
    let server = std::thread::spawn(move || -> Result<()> {
        let (mut s, _) = listener.accept()?;
        s.write_all(b"pong\n")?;
        Ok(())
    });
    let got = in_netns(client_ns, || {
        let mut s = tcp_connect(None, addr, Duration::from_secs(3))?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok(text)
    })?;
    server.join().expect("server thread")?;
    Ok(got)
}

fn netns_exists(name: &str) -> bool {
    Path::new("/var/run/netns").join(name).exists()
}

#[test]
fn topology_is_wired_like_a_wire_and_removed_on_drop() -> Result<()> {
    require_root!();
    let topo = Topology::new()?;
    let names = [topo.cli().to_string(), topo.lb().to_string(), topo.srv().to_string()];
    for n in &names {
        ensure!(netns_exists(n), "namespace {n} missing");
    }
    ensure!(tcp_reachable(topo.lb(), topo.cli(), "10.77.1.1:7001".parse()?)? == "pong\n");
    ensure!(tcp_reachable(topo.srv(), topo.lb(), "10.77.2.5:7002".parse()?)? == "pong\n");
    ensure!(tcp_reachable(topo.lb(), topo.cli(), "[fd77:1::1]:7003".parse()?)? == "pong\n");
    ensure!(tcp_reachable(topo.srv(), topo.lb(), "[fd77:2::2]:7004".parse()?)? == "pong\n");
    // The second client address is usable as a source.
    let from2 = in_netns(topo.cli(), || {
        let s = tcp_connect(Some("10.77.1.3".parse()?), "10.77.1.2:9".parse()?, Duration::from_secs(1));
        Ok(s.err().map(|e| e.kind()))
    })?;
    ensure!(from2 == Some(std::io::ErrorKind::ConnectionRefused), "bind 10.77.1.3: {from2:?}");
    for (ns, dev) in [(topo.cli(), CLI_IF), (topo.lb(), LB_CLI_IF), (topo.lb(), LB_SRV_IF), (topo.srv(), SRV_IF)] {
        let (tx_csum, gro) = in_netns(ns, || ethtool::offloads(dev))?;
        ensure!(!tx_csum && gro, "{dev}: tx checksum offload {tx_csum}, gro {gro}");
    }
    // A process left in a namespace is killed with it.
    let mut sleeper = spawn_in(topo.srv(), &["sleep", "300"], None)?;
    let sleeper_ns = topo.srv().to_string();
    ensure!(
        lb_tests::wait_for(Duration::from_secs(5), Duration::from_millis(20), || { (!pids_in(&sleeper_ns).is_empty()).then_some(()) }).is_some(),
        "sleep not visible in {sleeper_ns}"
    );
    drop(topo);
    for n in &names {
        ensure!(!netns_exists(n), "namespace {n} left behind");
    }
    ensure!(sleeper.try_wait().is_some(), "process in a removed namespace still running");
    Ok(())
}

#[test]
fn backends_answer_curl_over_h2_and_http11() -> Result<()> {
    require_root!();
    let topo = Topology::new()?;
    let certs = Certs::generate()?;
    let mut backends = Backends::new(&topo, &certs)?;
    backends.tls("10.77.2.2:8443", &["h2"], "farm h2 (server 1)")?;
    backends.tls("10.77.2.4:8443", &["http/1.1"], "farm h1 (server 1)")?;

    let h2 = curl_get(topo.lb(), "--http2", "h2.lb.test", 8443, "10.77.2.2", &certs.ca_pem())?;
    ensure!(h2.exit_ok, "curl --http2: {}", h2.stderr);
    ensure!(h2.http_version == "2" && h2.code == 200, "{h2:?}");
    ensure!(h2.body == "farm h2 (server 1) HTTP/2.0\n", "{h2:?}");
    ensure!(h2.backend() == "farm h2 (server 1)");

    let h1 = curl_get(topo.lb(), "--http1.1", "h1.lb.test", 8443, "10.77.2.4", &certs.ca_pem())?;
    ensure!(h1.exit_ok && h1.http_version == "1.1" && h1.code == 200, "{h1:?}");
    ensure!(h1.backend() == "farm h1 (server 1)", "{h1:?}");

    // curl --http2 against an http/1.1-only server falls back to HTTP/1.1 there.
    let fallback = curl_get(topo.lb(), "--http2", "h1.lb.test", 8443, "10.77.2.4", &certs.ca_pem())?;
    ensure!(fallback.http_version == "1.1" && fallback.code == 200, "{fallback:?}");
    // An http/1.1-only client is refused by the h2-only server.
    let refused = curl_get(topo.lb(), "--http1.1", "h2.lb.test", 8443, "10.77.2.2", &certs.ca_pem())?;
    ensure!(!refused.exit_ok && refused.code == 0, "{refused:?}");
    Ok(())
}

#[test]
fn rustls_clients_reach_backends_with_every_hello_shape() -> Result<()> {
    require_root!();
    let topo = Topology::new()?;
    let certs = Certs::generate()?;
    let mut backends = Backends::new(&topo, &certs)?;
    backends.tls("10.77.2.2:8443", &["h2"], "farm h2 (server 1)")?;
    backends.tls("10.77.2.4:8443", &["http/1.1"], "farm h1 (server 1)")?;
    let h2 = direct(&certs, "h2.lb.test", "10.77.2.2:8443");
    let h1 = direct(&certs, "h1.lb.test", "10.77.2.4:8443");

    in_netns(topo.lb(), || {
        let r = https_get(&h2.clone().alpn(&["h2", "http/1.1"]), "/")?;
        ensure!(r.alpn.as_deref() == Some("h2") && r.version == "HTTP/2" && r.status == 200, "{r:?}");
        ensure!(r.backend() == "farm h2 (server 1)" && r.body.ends_with("HTTP/2.0\n"), "{r:?}");

        let r = https_get(&h1, "/")?;
        ensure!(r.alpn.is_none() && r.version == "HTTP/1.1" && r.status == 200, "{r:?}");
        ensure!(r.backend() == "farm h1 (server 1)", "{r:?}");

        let refused = TlsClient::connect(&h2.clone().alpn(&["http/1.1"]));
        let err = refused.err().context("h2-only backend accepted an http/1.1-only client")?;
        ensure!(format!("{err:#}").contains("NoApplicationProtocol"), "{err:#}");

        let trickle = h2.clone().alpn(&["h2"]).hello_one_byte_per_segment();
        let hello_len = client_hello_bytes(&trickle)?.len() as u32;
        let client = TlsClient::connect(&trickle)?;
        let segments = client.hello_segments().context("segments not measured")?;
        eprintln!("hello of {hello_len} bytes went out in {segments} TCP segments");
        ensure!(segments * 10 >= hello_len * 9, "hello of {hello_len} bytes went out in {segments} segments");
        let r = client.http_get("/")?;
        ensure!(r.backend() == "farm h2 (server 1)", "{r:?}");

        let split = h2.clone().alpn(LONG_ALPN).alpn_in_record(64, 2);
        let shape = layout(&client_hello_bytes(&split)?)?;
        ensure!(shape.alpn_record() == Some(2) && shape.records.len() > 3, "{shape:?}");
        let r = https_get(&split, "/")?;
        ensure!(r.alpn.as_deref() == Some("h2") && r.backend() == "farm h2 (server 1)", "{r:?}");
        Ok(())
    })
}

#[test]
fn echo_backend_is_byte_identical_and_half_closes() -> Result<()> {
    require_root!();
    let topo = Topology::new()?;
    let certs = Certs::generate()?;
    let mut backends = Backends::new(&topo, &certs)?;
    backends.tls("10.77.2.3:9443", &["lb-echo", "http/1.1"], "echo (server 1)")?;
    backends.plain_echo("10.77.2.5:7000", "plain echo")?;
    let echo = direct(&certs, "echo.lb.test", "10.77.2.3:9443").alpn(&["lb-echo"]);

    in_netns(topo.lb(), || {
        let len = 16 << 20;
        let report = echo_transfer(&echo, len, Duration::from_secs(10))?;
        ensure!(report.sent == len && report.received == len, "{report:?}");
        ensure!(report.sent_sha256 == report.received_sha256, "{report:?}");
        ensure!(report.close_notify_received, "{report:?}");

        let mut session = TlsClient::connect(&echo)?.into_echo(Duration::from_secs(10))?;
        session.exchange(100_000)?;
        ensure!(session.received() == 100_000);
        session.send_without_reading(64 * 1024)?;
        session.shutdown_write()?;
        session.read_to_eof()?;
        let report = session.report();
        ensure!(report.received == report.sent && report.sent_sha256 == report.received_sha256, "{report:?}");

        let payload = b"PLAIN TCP, no hello here\n";
        let back = plain_tcp_exchange(None, "10.77.2.5:7000".parse()?, payload, Duration::from_secs(5))?;
        ensure!(back == payload, "plain echo returned {back:?}");

        // The TLS echo backend, asked over HTTP/1.1, answers HTTP.
        let r = https_get(&echo.clone().alpn(&["http/1.1"]), "/")?;
        ensure!(r.backend() == "echo (server 1)", "{r:?}");

        // A client that connects and says nothing, then closes: the backend stays healthy.
        drop(tcp_connect(None, "10.77.2.3:9443".parse()?, Duration::from_secs(2))?);
        let err = TlsClient::connect(&direct(&certs, "echo.lb.test", "10.77.2.3:9443").alpn(&["nope"]));
        ensure!(err.is_err());
        ensure!(!is_closed_by_peer(err.as_ref().err().context("no error")?), "alert, not a bare close, expected");
        Ok(())
    })
}
