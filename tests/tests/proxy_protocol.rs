//! PROXY protocol read by a real consumer: HAProxy (`bind ... accept-proxy`, `mode tcp`) runs in
//! the server namespace between the load balancer and a TLS backend, and logs what the header
//! told it. The client's TLS handshake goes through HAProxy to the backend untouched.
//!
//! HAProxy 2.6 (Debian 12) exposes the header's addresses (`%ci:%cp`, `%fi:%fp`) and the
//! authority TLV (`fc_pp_authority`), but no fetch for the ALPN TLV (`fc_pp_tlv` came in 2.9):
//! it only proves the ALPN TLV is well framed by accepting the header. Its value is checked by
//! `v2_alpn_tlv_is_the_first_offered_protocol`, which decodes the header independently of the
//! daemon's parser.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use lb_tests::client::TlsClient;
use lb_tests::config::{Config, Farm, Frontend, Route, Rule, Server};
use lb_tests::netns::{run_in, spawn_in};
use lb_tests::proc::file_tail;
use lb_tests::{in_netns, require_root, wait_for, ChildGuard, Lab, CLIENT_IP, LB_VIP};

/// The TLS backend behind HAProxy.
const BACKEND: &str = "10.77.2.4:8443";
const BACKEND_NAME: &str = "behind haproxy";
const FARM: u32 = 1;
const SNI: &str = "h1.lb.test";

/// Frontend :443 sending TLS clients to one server with `proxyProtocolVersion = version`. The
/// `protocol is tls` rule makes the daemon read the ClientHello (which v2 TLVs come from).
fn config(server: SocketAddr, version: &str) -> Config {
    let mut pp_server = Server::new(1, &server.ip().to_string(), server.port());
    pp_server.proxy_protocol_version = Some(version.to_string());
    Config::new()
        .frontend(Frontend::new(1, "443"))
        .farm(Farm::new(FARM, "proxy protocol").server(pp_server))
        .route(Route::to_farm(1, 1, FARM).rule(Rule::new("protocol", "is", "tls")))
}

/// A lab with the TLS backend running and HAProxy accepting PROXY headers on `listen`.
fn lab_with_haproxy(listen: SocketAddr) -> Result<(Lab, Haproxy)> {
    let mut lab = Lab::new()?;
    lab.backends.tls(BACKEND, &["http/1.1"], BACKEND_NAME)?;
    let haproxy = Haproxy::start(lab.topo.srv(), listen, BACKEND.parse()?)?;
    Ok((lab, haproxy))
}

/// One HTTPS GET through the load balancer and HAProxy; returns the client's own address.
fn get_through(lab: &Lab, frontend: SocketAddr, alpn: &[&str]) -> Result<SocketAddr> {
    let opts = lab.client(SNI).alpn(alpn).connect_to(frontend);
    let (local, response) = lab.in_cli(|| {
        let client = TlsClient::connect(&opts)?;
        let local = client.local_addr()?;
        Ok((local, client.http_get("/")?))
    })?;
    ensure!(response.status == 200, "{response:?}");
    ensure!(response.backend() == BACKEND_NAME, "served by {:?}, expected the backend behind HAProxy", response.backend());
    Ok(local)
}

#[test]
fn haproxy_reads_v1_header_with_real_client_address() -> Result<()> {
    require_root!();
    let listen: SocketAddr = "10.77.2.2:8444".parse()?;
    let (mut lab, haproxy) = lab_with_haproxy(listen)?;
    lab.start(&config(listen, "v1"))?;
    let client = get_through(&lab, lb_tests::vip(443), &["http/1.1"])?;
    ensure!(client.ip() == CLIENT_IP, "client bound {client}");
    let line = haproxy.log_line()?;
    let expected = format!("client={client} frontend={LB_VIP}:443 authority=-");
    ensure!(line.contains(&expected), "HAProxy logged {line:?}, expected {expected:?}");
    Ok(())
}

#[test]
fn haproxy_reads_v2_header_with_client_address_and_sni_authority() -> Result<()> {
    require_root!();
    let listen: SocketAddr = "10.77.2.2:8445".parse()?;
    let (mut lab, haproxy) = lab_with_haproxy(listen)?;
    lab.start(&config(listen, "v2"))?;
    let client = get_through(&lab, lb_tests::vip(443), &["http/1.1"])?;
    let line = haproxy.log_line()?;
    let expected = format!("client={client} frontend={LB_VIP}:443 authority={SNI}");
    ensure!(line.contains(&expected), "HAProxy logged {line:?}, expected {expected:?}");
    Ok(())
}

#[test]
fn haproxy_reads_v2_header_from_an_ipv6_client_to_an_ipv6_server() -> Result<()> {
    require_root!();
    let listen: SocketAddr = "[fd77:2::2]:8446".parse()?;
    let (mut lab, haproxy) = lab_with_haproxy(listen)?;
    lab.start(&config(listen, "v2"))?;
    let client = get_through(&lab, "[fd77:1::1]:443".parse()?, &["http/1.1"])?;
    ensure!(client.ip().to_string() == "fd77:1::2", "client bound {client}");
    let line = haproxy.log_line()?;
    // HAProxy writes IPv6 addresses bare, then the port after a colon.
    let expected = format!("client=fd77:1::2:{} frontend=fd77:1::1:443 authority={SNI}", client.port());
    ensure!(line.contains(&expected), "HAProxy logged {line:?}, expected {expected:?}");
    Ok(())
}

#[test]
fn v2_alpn_tlv_is_the_first_offered_protocol() -> Result<()> {
    require_root!();
    let listen: SocketAddr = "10.77.2.3:8447".parse()?;
    let mut lab = Lab::new()?;
    let listener = lab.in_srv(|| Ok(TcpListener::bind(listen)?))?;
    lab.start(&config(listen, "v2"))?;
    // The capture server never answers: the client's handshake fails, which is expected here.
    let opts = lab.client(SNI).alpn(&["h2", "http/1.1"]).timeout(Duration::from_secs(2));
    let cli = lab.topo.cli().to_string();
    let client = std::thread::spawn(move || in_netns(&cli, || TlsClient::connect(&opts).map(|_| ())));
    let bytes = read_first_bytes(&listener, Duration::from_secs(5))?;
    let _ = client.join();
    let header = decode_v2(&bytes).with_context(|| format!("decoding {bytes:02x?}"))?;
    ensure!(header.client.ip() == CLIENT_IP && header.frontend == lb_tests::vip(443), "{header:?}");
    ensure!(header.tlvs.contains(&(0x01, b"h2".to_vec())), "ALPN TLV: {header:?}");
    ensure!(header.tlvs.contains(&(0x02, SNI.as_bytes().to_vec())), "authority TLV: {header:?}");
    ensure!(bytes[header.len..].starts_with(&[0x16, 0x03]), "the ClientHello record follows the header");
    Ok(())
}

/// HAProxy in the foreground, logging each session to a file when it ends.
struct Haproxy {
    _child: ChildGuard,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    fn start(ns: &str, listen: SocketAddr, backend: SocketAddr) -> Result<Self> {
        let version = run_in(ns, &["haproxy", "-v"])?;
        ensure!(version.status.success(), "haproxy -v failed (apt-get install haproxy): {}", String::from_utf8_lossy(&version.stderr));
        eprintln!("{}", String::from_utf8_lossy(&version.stdout).lines().next().unwrap_or_default());
        let dir = tempfile::Builder::new().prefix("lb-tests-haproxy-").tempdir()?;
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, haproxy_config(listen, backend))?;
        let cfg = cfg.display().to_string();
        let check = run_in(ns, &["haproxy", "-c", "-f", &cfg])?;
        ensure!(check.status.success(), "haproxy -c: {}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
        let log = dir.path().join("haproxy.log");
        let mut child = spawn_in(ns, &["haproxy", "-db", "-f", &cfg], Some(log.clone()))?.with_name("haproxy");
        let port = format!("sport = :{}", listen.port());
        let listening = wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
            if let Some(status) = child.try_wait() {
                return Some(Err(anyhow::anyhow!("haproxy exited ({status}): {}", file_tail(&log, 4096))));
            }
            let out = run_in(ns, &["ss", "-Hltn", &port]).ok()?;
            (!out.stdout.is_empty()).then_some(Ok(()))
        });
        match listening {
            Some(result) => result?,
            None => bail!("haproxy not listening on {listen} within 10 s: {}", file_tail(&log, 4096)),
        }
        Ok(Self { _child: child, log, _dir: dir })
    }

    /// The first session line HAProxy logged (it logs a TCP session when it ends).
    fn log_line(&self) -> Result<String> {
        let line = wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
            file_tail(&self.log, 16384).lines().find(|l| l.contains("pp client=")).map(str::to_string)
        });
        let line = line.with_context(|| format!("no session logged by haproxy within 10 s: {}", file_tail(&self.log, 4096)))?;
        eprintln!("haproxy logged: {line}");
        Ok(line)
    }
}

fn haproxy_config(listen: SocketAddr, backend: SocketAddr) -> String {
    format!(
        r#"global
    log stdout format raw local0 info
    maxconn 64

defaults
    mode tcp
    log global
    timeout connect 5s
    timeout client 10s
    timeout server 10s

frontend pp
    bind {listen} accept-proxy
    log-format "pp client=%ci:%cp frontend=%fi:%fp authority=%[fc_pp_authority] bytes_in=%U bytes_out=%B"
    default_backend tls

backend tls
    server tls1 {backend}
"#
    )
}

/// Reads what the first accepted connection sends until it goes quiet or `timeout` passes.
fn read_first_bytes(listener: &TcpListener, timeout: Duration) -> Result<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    listener.set_nonblocking(true)?;
    let mut conn: TcpStream = loop {
        match listener.accept() {
            Ok((conn, _)) => break conn,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e).context("no connection from the load balancer"),
        }
    };
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    // A header and a hello are a few KiB at most.
    while Instant::now() < deadline && bytes.len() < 64 * 1024 {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break,
            Err(e) => return Err(e).context("reading from the load balancer"),
        }
    }
    Ok(bytes)
}

#[derive(Debug)]
struct V2Header {
    client: SocketAddr,
    frontend: SocketAddr,
    tlvs: Vec<(u8, Vec<u8>)>,
    len: usize,
}

/// A v2 TCP4 header, decoded here from the specification, independently of the daemon's code.
fn decode_v2(bytes: &[u8]) -> Result<V2Header> {
    ensure!(bytes.len() >= 16 && bytes[..12] == *b"\r\n\r\n\0\r\nQUIT\n", "no v2 signature");
    ensure!(bytes[12] == 0x21 && bytes[13] == 0x11, "not PROXY over TCP4: {:02x} {:02x}", bytes[12], bytes[13]);
    let len = 16 + usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    ensure!(bytes.len() >= len, "header of {len} bytes, {} received", bytes.len());
    let a = &bytes[16..28];
    let addr = |ip: &[u8], port: &[u8]| SocketAddr::from(([ip[0], ip[1], ip[2], ip[3]], u16::from_be_bytes([port[0], port[1]])));
    let (client, frontend) = (addr(&a[0..4], &a[8..10]), addr(&a[4..8], &a[10..12]));
    let mut tlvs = Vec::new();
    let mut rest = &bytes[28..len];
    while !rest.is_empty() {
        ensure!(rest.len() >= 3, "truncated TLV");
        let value_len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        ensure!(rest.len() >= 3 + value_len, "TLV past the header");
        tlvs.push((rest[0], rest[3..3 + value_len].to_vec()));
        rest = &rest[3 + value_len..];
    }
    Ok(V2Header { client, frontend, tlvs, len })
}
