//! The daemon's life as an operator and systemd see it: the notify protocol on a real
//! `NOTIFY_SOCKET`, the drain on SIGTERM, SIGHUP reloads of `--config`, keepalive and the
//! per-frontend idle timeout, and the access log (JSON, one event per connection).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use lb_tests::client::{https_get, is_closed_by_peer, tcp_connect, EchoSession, TlsClient};
use lb_tests::config::{Config, Frontend, Route, Rule};
use lb_tests::daemon::DaemonOpts;
use lb_tests::lab::standard::*;
use lb_tests::netns::{run_in, LB_CLI_IF, LB_SRV_IF};
use lb_tests::plain::plain_tcp_echo;
use lb_tests::{require_root, vip, wait_for, Lab, CLIENT_IP};
use nix::sys::signal::Signal;
use serde_json::Value;

const MIB: u64 = 1 << 20;
/// The plain echo frontend's port.
const PLAIN_PORT: u16 = 7000;

fn opts(args: &[&str]) -> DaemonOpts {
    DaemonOpts { extra_args: args.iter().map(|a| a.to_string()).collect(), ..DaemonOpts::default() }
}

/// An echo session (ALPN `lb-echo`) through the frontend on 443, opened from the client
/// namespace, 1 MiB already echoed.
fn open_echo(lab: &Lab) -> Result<EchoSession> {
    let opts = lab.client("echo.lb.test").alpn(&["lb-echo"]).timeout(Duration::from_secs(10));
    lab.in_cli(|| {
        let mut session = TlsClient::connect(&opts)?.into_echo(Duration::from_secs(10))?;
        session.exchange(MIB)?;
        Ok(session)
    })
}

fn echo_config(fastpath: &str) -> Config {
    Config::new().frontend(Frontend::new(1, "443").default_farm(ECHO_FARM).fastpath(fastpath)).farm(echo_farm())
}

/// Whether a new TCP connection to the frontend on `port` is refused right now.
fn refused(lab: &Lab, port: u16) -> Result<bool> {
    lab.in_cli(|| {
        Ok(match tcp_connect(None, vip(port), Duration::from_secs(1)) {
            Err(e) => e.kind() == ErrorKind::ConnectionRefused,
            Ok(_) => false,
        })
    })
}

/// Every JSON object in the daemon's log (run with `--log-format json`).
fn json_events(lab: &Lab) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(lab.daemon()?.log_path())?;
    Ok(text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect())
}

/// The access-log events (JSON) of the client connection from `client` (`ip:port`).
fn access_events(lab: &Lab, client: &str) -> Result<Vec<Value>> {
    Ok(json_events(lab)?.into_iter().filter(|e| e["target"] == "lb_user::dataplane::access" && e["client"] == client).collect())
}

/// Waits for the one access event of `client`.
fn access_event(lab: &Lab, client: &str, timeout: Duration) -> Result<Value> {
    wait_for(timeout, Duration::from_millis(100), || access_events(lab, client).ok()?.into_iter().next())
        .with_context(|| format!("no access-log event for {client} within {timeout:?}; log:\n{}", lab.daemon().map(|d| d.log_tail(4000)).unwrap_or_default()))
}

fn log_text(lab: &Lab) -> String {
    lab.daemon().ok().and_then(|d| std::fs::read_to_string(d.log_path()).ok()).unwrap_or_default()
}

/// The messages a daemon sent to our `NOTIFY_SOCKET`, as they arrive.
struct NotifySocket {
    path: std::path::PathBuf,
    received: Arc<Mutex<Vec<(Instant, String)>>>,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    /// Binds the socket; a thread records each datagram until `STOPPING=1` or 120 s.
    /// When `on_ready` is given, it runs on the thread as soon as READY=1 first arrives,
    /// and its result is recorded as a `served=<bool>` message.
    fn bind(on_ready: impl Fn() -> bool + Send + 'static) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("lb-tests-notify-").tempdir()?;
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).context("binding the NOTIFY_SOCKET")?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut buf = vec![0u8; 4096];
            let mut ready_seen = false;
            while Instant::now() < deadline {
                let Ok(n) = sock.recv(&mut buf) else { continue };
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let ready = text.lines().any(|l| l == "READY=1");
                let stopping = text.lines().any(|l| l == "STOPPING=1");
                log.lock().unwrap().push((Instant::now(), text));
                if ready && !ready_seen {
                    ready_seen = true;
                    let served = on_ready();
                    log.lock().unwrap().push((Instant::now(), format!("served={served}")));
                }
                if stopping {
                    break;
                }
            }
        });
        Ok(Self { path, received, _dir: dir })
    }

    fn messages(&self) -> Vec<(Instant, String)> {
        self.received.lock().unwrap().clone()
    }

    /// Waits for a message after `since` with a line satisfying `pred`.
    fn wait(&self, since: Instant, timeout: Duration, pred: impl Fn(&str) -> bool) -> Result<String> {
        wait_for(timeout, Duration::from_millis(20), || self.messages().into_iter().find(|(at, m)| *at >= since && m.lines().any(&pred)).map(|(_, m)| m))
            .with_context(|| format!("no such notification within {timeout:?}; got {:?}", self.texts()))
    }

    fn texts(&self) -> Vec<String> {
        self.messages().into_iter().map(|(_, m)| m).collect()
    }
}

#[test]
fn systemd_notify_ready_watchdog_reloading_and_stopping_on_a_real_socket() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    let config = Config::new().frontend(Frontend::new(1, &PLAIN_PORT.to_string()).default_farm(PLAIN_FARM).fastpath("copy")).farm(plain_farm());
    let cli = lab.topo.cli().to_string();
    // READY=1 means serving: the frontend answers the moment it arrives.
    let notify = NotifySocket::bind(move || {
        lb_tests::in_netns(&cli, || plain_tcp_echo(None, vip(PLAIN_PORT), b"ready?", Duration::from_secs(2))).is_ok_and(|echo| echo == b"ready?")
    })?;
    let mut o = opts(&[]);
    o.env = vec![("NOTIFY_SOCKET".into(), notify.path.display().to_string()), ("WATCHDOG_USEC".into(), "1000000".into())];
    let started = Instant::now();
    lab.start_with(&config, o)?;

    notify.wait(started, Duration::from_secs(10), |l| l == "READY=1")?;
    let served = notify.wait(started, Duration::from_secs(10), |l| l.starts_with("served="))?;
    ensure!(served == "served=true", "READY=1 came before the frontend served: {served}");
    let ready = notify.wait(started, Duration::from_secs(1), |l| l == "READY=1")?;
    ensure!(ready.contains("STATUS="), "READY=1 without a STATUS= line: {ready:?}");

    // WATCHDOG_USEC=1 s: petted every 0.5 s.
    let from = Instant::now();
    std::thread::sleep(Duration::from_millis(2600));
    let pets = notify.messages().iter().filter(|(at, m)| *at >= from && m.lines().any(|l| l == "WATCHDOG=1")).count();
    ensure!((4..=7).contains(&pets), "{pets} WATCHDOG=1 in 2.6 s with WATCHDOG_USEC=1000000 (expected one per 0.5 s)");

    // SIGHUP: RELOADING=1 with the monotonic clock, then READY=1 again.
    let hup = Instant::now();
    lab.daemon()?.signal(Signal::SIGHUP)?;
    let reloading = notify.wait(hup, Duration::from_secs(10), |l| l == "RELOADING=1")?;
    ensure!(
        reloading.lines().any(|l| l.strip_prefix("MONOTONIC_USEC=").is_some_and(|v| v.parse::<u64>().is_ok())),
        "RELOADING=1 without MONOTONIC_USEC: {reloading:?}"
    );
    notify.wait(hup, Duration::from_secs(10), |l| l == "READY=1")?;

    // Stray signals end nothing.
    for signal in [Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGPIPE] {
        lab.daemon()?.signal(signal)?;
    }
    std::thread::sleep(Duration::from_millis(500));
    let daemon = lab.daemon.as_mut().context("no daemon")?;
    ensure!(daemon.is_running(), "the daemon died of SIGHUP, SIGUSR1, SIGUSR2 or SIGPIPE");
    let echo = lab.in_cli(|| plain_tcp_echo(None, vip(PLAIN_PORT), b"still", Duration::from_secs(2)))?;
    ensure!(echo == b"still");

    let term = Instant::now();
    let daemon = lab.daemon.as_mut().context("no daemon")?;
    daemon.signal(Signal::SIGTERM)?;
    notify.wait(term, Duration::from_secs(10), |l| l == "STOPPING=1")?;
    let status = daemon.wait_exit(Duration::from_secs(10)).context("the daemon did not exit after SIGTERM")?;
    ensure!(status.success(), "exit status after SIGTERM: {status}");
    Ok(())
}

#[test]
fn sigterm_lets_a_transfer_in_flight_finish_intact_and_refuses_new_connections() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    lab.start_with(&echo_config("splice"), opts(&["--drain-timeout", "30"]))?;
    let mut session = open_echo(&lab)?;
    let client = session.local_addr()?.to_string();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    // 48 MiB more, in 1 MiB exchanges: still running well after the SIGTERM.
    let transfer = std::thread::spawn(move || -> Result<_> {
        for i in 0..48 {
            session.exchange(MIB)?;
            if i == 1 {
                started_tx.send(()).ok();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        session.shutdown_write()?;
        session.read_to_eof()?;
        Ok(session.report())
    });
    started_rx.recv_timeout(Duration::from_secs(10)).context("the transfer did not start")?;
    lab.daemon()?.signal(Signal::SIGTERM)?;
    let closed = wait_for(Duration::from_secs(5), Duration::from_millis(50), || refused(&lab, 443).ok().filter(|r| *r));
    ensure!(closed.is_some(), "new connections are still accepted 5 s after SIGTERM");
    ensure!(!transfer.is_finished(), "the transfer ended before the listeners closed: the test proves nothing");
    ensure!(lab.daemon.as_mut().context("no daemon")?.is_running(), "the daemon exited with a transfer in flight");

    let report = transfer.join().map_err(|_| anyhow::anyhow!("transfer thread panicked"))??;
    ensure!(
        report.sent == 49 * MIB && report.received == report.sent && report.sent_sha256 == report.received_sha256,
        "the transfer did not finish intact: {report:?}"
    );
    let status =
        lab.daemon.as_mut().context("no daemon")?.wait_exit(Duration::from_secs(5)).context("the daemon still runs 5 s after its last connection ended")?;
    ensure!(status.success(), "exit status: {status}");
    // (A probe above may have been accepted just before the listener closed: it counts too.)
    let log = log_text(&lab);
    ensure!(
        log.lines().any(|l| l.contains("drain over") && l.contains("still_open=0") && !l.contains("finished=0")),
        "no drain summary with the transfer finished:\n{log}"
    );
    let transfer_end = log
        .lines()
        .find(|l| l.contains("lb_user::dataplane::access") && l.contains(&format!("client={client}")))
        .with_context(|| format!("no access-log line for {client}:\n{log}"))?;
    ensure!(transfer_end.contains("reason=\"closed\""), "{transfer_end}");
    Ok(())
}

#[test]
fn the_drain_timeout_closes_a_connection_that_does_not_finish() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    lab.start_with(&echo_config("copy"), opts(&["--drain-timeout", "1", "--log-format", "json"]))?;
    let mut session = open_echo(&lab)?;
    let client = session.local_addr()?.to_string();
    let term = Instant::now();
    lab.daemon()?.signal(Signal::SIGTERM)?;
    let status = lab
        .daemon
        .as_mut()
        .context("no daemon")?
        .wait_exit(Duration::from_secs(10))
        .context("the daemon still runs 10 s after SIGTERM with a 1 s drain timeout")?;
    let took = term.elapsed();
    ensure!(status.success(), "exit status: {status}");
    ensure!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "the daemon exited {took:?} after SIGTERM (drain timeout 1 s)");
    let err = match session.exchange(MIB) {
        Ok(()) => bail!("the connection still works after the daemon exited"),
        Err(e) => e,
    };
    ensure!(is_closed_by_peer(&err) || format!("{err:#}").contains("server closed"), "the client did not see a close: {err:#}");
    let event = access_event(&lab, &client, Duration::from_secs(1))?;
    ensure!(event["reason"] == "drain-timeout", "{event}");
    ensure!(event["bytes_to_server"].as_u64() >= Some(MIB), "{event}");
    Ok(())
}

/// Frontend 443: `sni is h2.lb.test` → farm h2 when `with_route`, else everything → farm h1.
fn routed_config(with_route: bool) -> Config {
    let config = Config::new().frontend(Frontend::new(1, "443").default_farm(H1_FARM).fastpath("splice")).farm(h1_farm()).farm(h2_farm());
    if with_route {
        config.route(Route::to_farm(1, 1, H2_FARM).rule(Rule::new("sni", "is", "h2.lb.test")))
    } else {
        config
    }
}

fn backend_for(lab: &Lab, sni: &str) -> Result<String> {
    let opts = lab.client(sni).alpn(&["h2", "http/1.1"]).timeout(Duration::from_secs(5));
    lab.in_cli(|| Ok(https_get(&opts, "/")?.backend()))
}

#[test]
fn sighup_reloads_the_config_file_and_a_broken_file_changes_nothing() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    lab.start(&routed_config(false))?;
    let config_path = lab.daemon()?.config_path();
    let before = backend_for(&lab, "h2.lb.test")?;
    ensure!(before.starts_with("farm h1 "), "before the reload h2.lb.test landed on {before:?}");

    std::fs::write(&config_path, routed_config(true).to_json())?;
    lab.daemon()?.signal(Signal::SIGHUP)?;
    let after = wait_for(Duration::from_secs(5), Duration::from_millis(100), || backend_for(&lab, "h2.lb.test").ok().filter(|b| b.starts_with("farm h2 ")));
    ensure!(after.is_some(), "the route of the reloaded file is not followed; log:\n{}", log_text(&lab));
    // Traffic switches first; the line comes once the store has recorded it (an fsync).
    let recorded = wait_for(Duration::from_secs(15), Duration::from_millis(50), || log_text(&lab).contains("configuration reloaded").then_some(()));
    ensure!(recorded.is_some(), "no reload line in the log:\n{}", log_text(&lab));

    // A file that does not parse, then one that parses but does not validate: each reload
    // fails whole, says why, and traffic keeps the configuration in force.
    let mut invalid: Value = serde_json::from_str(&routed_config(false).to_json())?;
    invalid["frontends"][0]["idleTimeout"] = Value::from(10_000_000);
    for (broken, says) in [("{\"frontends\": [".to_string(), "config.json"), (invalid.to_string(), "idleTimeout")] {
        let failures = log_text(&lab).matches("reload failed").count();
        std::fs::write(&config_path, broken)?;
        lab.daemon()?.signal(Signal::SIGHUP)?;
        let line = wait_for(Duration::from_secs(15), Duration::from_millis(50), || {
            let log = log_text(&lab);
            (log.matches("reload failed").count() > failures).then(|| log.lines().rfind(|l| l.contains("reload failed")).unwrap_or_default().to_string())
        })
        .context("no `reload failed` line after SIGHUP with a broken file")?;
        ensure!(line.contains(says), "the failure does not say {says:?}: {line}");
        ensure!(lab.daemon.as_mut().context("no daemon")?.is_running(), "a broken file killed the daemon");
        let h2 = backend_for(&lab, "h2.lb.test")?;
        let other = backend_for(&lab, "www.lb.test")?;
        ensure!(h2.starts_with("farm h2 ") && other.starts_with("farm h1 "), "after a failed reload: h2.lb.test → {h2:?}, www.lb.test → {other:?}");
    }
    Ok(())
}

/// `ss -tnoH state established` in the load balancer's namespace.
fn sockets(lab: &Lab) -> Result<String> {
    let out = run_in(lab.topo.lb(), &["ss", "-tnoH", "state", "established"])?;
    ensure!(out.status.success(), "ss: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn plain_connect(lab: &Lab) -> Result<TcpStream> {
    lab.in_cli(|| {
        let mut sock = tcp_connect(None, vip(PLAIN_PORT), Duration::from_secs(10))?;
        sock.write_all(b"hello")?;
        let mut buf = [0u8; 5];
        sock.read_exact(&mut buf)?;
        ensure!(&buf == b"hello");
        Ok(sock)
    })
}

#[test]
fn an_idle_relayed_connection_is_closed_after_the_idle_timeout_and_keepalive_is_on() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    let config =
        Config::new().frontend(Frontend::new(1, &PLAIN_PORT.to_string()).default_farm(PLAIN_FARM).fastpath("splice").idle_timeout(2)).farm(plain_farm());
    lab.start_with(&config, opts(&["--log-format", "json"]))?;

    let mut idle = plain_connect(&lab)?;
    let quiet_since = Instant::now();
    let client = idle.local_addr()?.to_string();
    // Both relayed sockets carry a keepalive timer (the first probe after 60 s of silence).
    let ss = sockets(&lab)?;
    let relayed: Vec<&str> = ss.lines().filter(|l| l.contains(&client) || l.contains(&format!("{}:{PLAIN_PORT}", SERVER_IPS_PLAIN))).collect();
    ensure!(relayed.len() == 2, "expected the client and server sockets of {client}: {ss}");
    for line in &relayed {
        ensure!(line.contains("timer:(keepalive,"), "no keepalive timer: {line}");
    }

    // A connection that talks every 0.5 s outlives the timeout.
    let mut busy = plain_connect(&lab)?;
    let talk = std::thread::spawn(move || -> Result<()> {
        for _ in 0..8 {
            std::thread::sleep(Duration::from_millis(500));
            busy.write_all(b"again")?;
            let mut buf = [0u8; 5];
            busy.read_exact(&mut buf)?;
        }
        Ok(())
    });

    let mut buf = [0u8; 16];
    let n = idle.read(&mut buf).context("reading from the idle connection")?;
    let after = quiet_since.elapsed();
    ensure!(n == 0, "the idle connection received {n} bytes");
    ensure!(after >= Duration::from_millis(1900) && after < Duration::from_secs(4), "the idle connection was closed after {after:?} (idleTimeout 2 s)");
    talk.join().map_err(|_| anyhow::anyhow!("the talking thread panicked"))?.context("a connection talking every 0.5 s was cut")?;
    let event = access_event(&lab, &client, Duration::from_secs(2))?;
    ensure!(event["reason"] == "idle-timeout" && event["path"] == "splice", "{event}");
    Ok(())
}

/// The plain echo backend's address, as `ss` prints the server side.
const SERVER_IPS_PLAIN: &str = "10.77.2.4";

#[test]
fn a_handed_off_connection_is_left_to_the_kernel_by_the_idle_timeout_and_logged_when_reclaimed() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    let out = run_in(lab.topo.lb(), &["sysctl", "-qw", "net.ipv4.conf.all.forwarding=1"])?;
    ensure!(out.status.success(), "sysctl: {}", String::from_utf8_lossy(&out.stderr));
    let config = Config::new().frontend(Frontend::new(1, "443").default_farm(ECHO_FARM).fastpath("xdp").idle_timeout(1)).farm(echo_farm());
    let o = DaemonOpts {
        ifaces: vec![LB_CLI_IF.to_string(), LB_SRV_IF.to_string()],
        extra_args: ["--handoff-linger", "0.5", "--log-format", "json"].map(String::from).to_vec(),
        ..DaemonOpts::default()
    };
    lab.start_with(&config, o)?;
    let mut session = open_echo(&lab)?;
    let client = session.local_addr()?.to_string();
    let handed = wait_for(Duration::from_secs(5), Duration::from_millis(50), || lab.stats().ok().and_then(|s| s.handoff).filter(|h| h.handed_off == 1));
    ensure!(handed.is_some(), "the connection was not handed off: {:?}", lab.stats()?.handoff);
    std::thread::sleep(Duration::from_secs(3));
    session.exchange(MIB).context("a handed-off connection idle for 3 s (idleTimeout 1 s) was cut")?;
    session.shutdown_write()?;
    session.read_to_eof()?;
    let report = session.report();
    ensure!(report.sent_sha256 == report.received_sha256, "{report:?}");
    drop(session);
    let event = access_event(&lab, &client, Duration::from_secs(5))?;
    ensure!(event["path"] == "xdp" && event["reason"] == "closed" && event["result"] == "relayed", "{event}");
    Ok(())
}

#[test]
fn the_json_access_log_has_one_event_per_connection_with_its_fields() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    lab.start_with(&routed_config(true), opts(&["--log-format", "json"]))?;

    // Refused at inspection: a client that sends the start of a TLS record and closes.
    let refused_client = lab.in_cli(|| {
        let mut sock = tcp_connect(None, vip(443), Duration::from_secs(5))?;
        sock.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])?;
        let local = sock.local_addr()?.to_string();
        sock.shutdown(std::net::Shutdown::Write)?;
        let mut buf = [0u8; 16];
        let _ = sock.read(&mut buf);
        Ok(local)
    })?;

    let opts = lab.client("h2.lb.test").alpn(&["h2", "http/1.1"]).timeout(Duration::from_secs(5));
    let (client, backend) = lab.in_cli(|| {
        let tls = TlsClient::connect(&opts)?;
        let local = tls.local_addr()?.to_string();
        Ok((local, tls.http_get("/")?.backend()))
    })?;
    ensure!(client.starts_with(&CLIENT_IP.to_string()));
    let event = access_event(&lab, &client, Duration::from_secs(5))?;
    ensure!(event["level"] == "INFO" && event["message"] == "connection ended", "{event}");
    ensure!(event["timestamp"].as_str().is_some_and(|t| t.contains('T')), "{event}");
    ensure!(event["frontend"] == 1 && event["route"] == 1 && event["farm"] == H2_FARM, "{event}");
    ensure!(event["sni"] == "h2.lb.test" && event["alpn"] == "h2,http/1.1", "{event}");
    let server = event["server"].as_u64().context("no server")?;
    ensure!(backend == format!("farm h2 (server {server})"), "logged server {server}, served by {backend:?}");
    ensure!(event["bytes_to_server"].as_u64() > Some(200) && event["bytes_to_client"].as_u64() > Some(200), "{event}");
    ensure!(event["duration_ms"].as_f64().is_some_and(|d| d > 0.0), "{event}");
    ensure!(event["path"] == "splice" && event["result"] == "relayed", "{event}");
    ensure!(event["reason"] == "closed" || event["reason"] == "peer-reset", "{event}");
    ensure!(access_events(&lab, &client)?.len() == 1, "more than one event for {client}");

    // Refusals stay out of the info-level access log (a hostile client must not fill the disk).
    ensure!(access_events(&lab, &refused_client)?.is_empty(), "a refused connection was logged at info: {:?}", access_events(&lab, &refused_client)?);
    // --log-format json holds for every event: each line of the log is a JSON object.
    let text = log_text(&lab);
    let not_json: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty() && serde_json::from_str::<Value>(l).is_err()).collect();
    ensure!(not_json.is_empty(), "lines that are not JSON: {not_json:?}");
    Ok(())
}

#[test]
fn sigint_drains_like_sigterm() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    let config = Config::new().frontend(Frontend::new(1, &PLAIN_PORT.to_string()).default_farm(PLAIN_FARM).fastpath("copy")).farm(plain_farm());
    lab.start_with(&config, opts(&["--drain-timeout", "1"]))?;
    let mut open = plain_connect(&lab)?;
    let int = Instant::now();
    lab.daemon()?.signal(Signal::SIGINT)?;
    let status = lab
        .daemon
        .as_mut()
        .context("no daemon")?
        .wait_exit(Duration::from_secs(10))
        .context("the daemon still runs 10 s after SIGINT with a 1 s drain timeout")?;
    let took = int.elapsed();
    ensure!(status.success(), "exit status after SIGINT: {status}");
    ensure!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "the daemon exited {took:?} after SIGINT (drain timeout 1 s): no drain?");
    let mut buf = [0u8; 8];
    let n = open.read(&mut buf).unwrap_or(0);
    ensure!(n == 0, "the connection still delivered {n} bytes after the daemon exited");
    let log = log_text(&lab);
    ensure!(log.contains("signal=\"SIGINT\"") && log.contains("still_open=1"), "no SIGINT drain in the log:\n{log}");
    Ok(())
}
