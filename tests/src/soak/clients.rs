//! The clients of the soak, one kind per worker thread, each a loop bounded in count and
//! time that records every connection in the [`Ledger`]. Workers run in the client
//! namespace; they pause between connections when asked (for the baseline measurement)
//! and stop at the end of the run, finishing the connection in flight.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use crate::client::{ClientOpts, TlsClient};
use crate::curl::curl_get;
use crate::hostile::{hold, noise};
use crate::netns::in_netns;
use crate::soak::ledger::{Done, Failure, Kind, Ledger};
use crate::soak::pump::{pump, Mode};
use crate::soak::rng::Rng;
use crate::stall_probe::StallProbe;
use crate::{hello, vip, Certs, LB_VIP};

const MIB: u64 = 1 << 20;
const KIB: u64 = 1 << 10;
/// No worker makes more connections than this, whatever the duration.
const MAX_PER_WORKER: usize = 1_000_000;
/// How long an echo may go without any byte moving before the client calls it a stall.
const IDLE: Duration = Duration::from_secs(30);

/// Shared by the run and its workers.
#[derive(Default)]
pub struct Control {
    stop: AtomicBool,
    pause: AtomicBool,
    /// Connections in flight across workers.
    in_flight: AtomicUsize,
}

impl Control {
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
    pub fn set_paused(&self, paused: bool) {
        self.pause.store(paused, Ordering::SeqCst);
    }
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Waits while paused; false once stopped.
    fn proceed(&self) -> bool {
        while self.pause.load(Ordering::SeqCst) && !self.stopped() {
            std::thread::sleep(Duration::from_millis(50));
        }
        !self.stopped()
    }

    /// Sleeps `d` in short steps, returning early when stopped or paused.
    fn nap(&self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && !self.stopped() && !self.pause.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
        }
    }
}

/// What every worker needs.
#[derive(Clone)]
pub struct Env {
    pub cli_ns: String,
    pub certs: Arc<Certs>,
    pub ledger: Arc<Ledger>,
    pub control: Arc<Control>,
    /// Taken when an echo session stalls, before it gives up.
    pub stall_probe: Arc<StallProbe>,
}

impl Env {
    fn opts(&self, sni: &str, alpn: &[&str]) -> ClientOpts {
        ClientOpts::new(self.certs.roots(), sni, vip(443)).alpn(alpn).timeout(Duration::from_secs(10))
    }
}

/// Starts the workers: two of each short kind, one long, two slow readers, one that resets,
/// one hostile. Each gets its own generator forked from `rng`.
pub fn start(env: &Env, rng: &mut Rng) -> Vec<JoinHandle<()>> {
    let plan: [(Kind, usize); 6] = [(Kind::ShortH2, 2), (Kind::ShortH1, 2), (Kind::Long, 1), (Kind::SlowReader, 2), (Kind::ClientReset, 1), (Kind::Hostile, 1)];
    let mut handles = Vec::new();
    for (kind, count) in plan {
        for n in 0..count {
            let env = env.clone();
            let rng = rng.fork();
            let handle = std::thread::Builder::new()
                .name(format!("soak-{}-{n}", kind.name()))
                .spawn(move || {
                    let ns = env.cli_ns.clone();
                    let ledger = Arc::clone(&env.ledger);
                    if let Err(e) = in_netns(&ns, || worker(&env, kind, rng)) {
                        ledger.record(kind, None, Instant::now(), Err(e.context("worker thread").into()));
                    }
                })
                .expect("spawning a soak worker");
            handles.push(handle);
        }
    }
    handles
}

fn worker(env: &Env, kind: Kind, mut rng: Rng) -> Result<()> {
    let ctl = &env.control;
    for i in 0..MAX_PER_WORKER {
        if !ctl.proceed() {
            break;
        }
        ctl.in_flight.fetch_add(1, Ordering::SeqCst);
        let started = Instant::now();
        let mut client = None;
        let result = match kind {
            Kind::ShortH2 => short(env, "h2", i, &mut client),
            Kind::ShortH1 => short(env, "http/1.1", i, &mut client),
            Kind::Long => long(env, &mut rng, &mut client),
            Kind::SlowReader => slow(env, &mut rng, &mut client),
            Kind::ClientReset => reset(env, &mut rng, &mut client),
            Kind::Hostile => hostile(env, i, &mut client),
        };
        env.ledger.record(kind, client, started, result);
        ctl.in_flight.fetch_sub(1, Ordering::SeqCst);
        let pause = match kind {
            Kind::ShortH2 | Kind::ShortH1 => rng.millis(50, 250),
            Kind::Long => rng.millis(1000, 4000),
            Kind::SlowReader => rng.millis(500, 2000),
            Kind::ClientReset => rng.millis(500, 2500),
            Kind::Hostile => rng.millis(200, 1500),
        };
        ctl.nap(pause);
    }
    Ok(())
}

/// One GET: its status, its backend's farm and its whole body checked. Every fifth h2 GET is
/// made by curl.
fn short(env: &Env, alpn: &str, i: usize, client: &mut Option<SocketAddr>) -> Result<Done, Failure> {
    let (sni, farm, version) = if alpn == "h2" { ("h2.lb.test", "farm h2 ", "HTTP/2.0") } else { ("h1.lb.test", "farm h1 ", "HTTP/1.1") };
    if alpn == "h2" && i % 5 == 4 {
        let r = curl_get(&env.cli_ns, "--http2", sni, 443, &LB_VIP.to_string(), &env.certs.ca_pem())?;
        if !r.exit_ok {
            return Err(anyhow!("curl --http2: {}", r.stderr.trim()).into());
        }
        return check_answer(r.code, &r.body, farm, version);
    }
    let tls = TlsClient::connect(&env.opts(sni, &[alpn]))?;
    *client = tls.local_addr().ok();
    let response = tls.http_get("/")?;
    check_answer(response.status, &response.body, farm, version)
}

fn check_answer(status: u16, body: &str, farm: &str, version: &str) -> Result<Done, Failure> {
    // Backends answer `<name> <version>\n`, names `farm h2 (server 1)` and the like.
    let well_formed = body.starts_with(farm) && body.ends_with(&format!(" {version}\n"));
    if status != 200 || !well_formed {
        return Err(Failure::mismatch(anyhow!("answer {status} {body:?}: expected 200 and `{farm}… {version}`")));
    }
    Ok(Done::Served { bytes: body.len() as u64 })
}

/// A long echo transfer: sizes from 16 MiB, one in eight 256 MiB.
fn long(env: &Env, rng: &mut Rng, client: &mut Option<SocketAddr>) -> Result<Done, Failure> {
    let len = if rng.chance(12) { 256 * MIB } else { rng.range(16, 128) * MIB };
    let tls = TlsClient::connect(&env.opts("echo.lb.test", &["lb-echo"]))?;
    *client = tls.local_addr().ok();
    let mut session = tls.into_echo(IDLE)?.on_stall(Arc::clone(&env.stall_probe));
    session.send(len)?;
    session.shutdown_write()?;
    session.read_to_eof()?;
    let report = session.report();
    if report.received > report.sent || (report.received == report.sent && report.sent_sha256 != report.received_sha256) {
        return Err(Failure::mismatch(anyhow!("echo bytes differ: {report:?}")));
    }
    if report.sent != len || report.received != len || !report.close_notify_received {
        return Err(anyhow!("echo ended early: {report:?} (wanted {len} bytes)").into());
    }
    Ok(Done::Served { bytes: 2 * len })
}

/// 96-256 KiB echoed back at 8 KiB/s (12-32 s): the client's window closes again and again.
fn slow(env: &Env, rng: &mut Rng, client: &mut Option<SocketAddr>) -> Result<Done, Failure> {
    let len = rng.range(96, 256) * KIB;
    let payload = noise(len as usize, rng.next_u64());
    let mode = Mode::Slow { bytes: 4 * 1024, every: Duration::from_millis(500) };
    let p = pump(&env.opts("echo.lb.test", &["lb-echo"]), &payload, mode, IDLE, &env.stall_probe, client)?;
    Ok(Done::Served { bytes: 2 * p.verified })
}

/// 16 KiB-4 MiB echoed, then an RST after part of it came back (often past the hand-off
/// threshold, so that both user-space relays and handed-off flows see client resets).
fn reset(env: &Env, rng: &mut Rng, client: &mut Option<SocketAddr>) -> Result<Done, Failure> {
    let len = rng.range(16, 4096) * KIB;
    let after = rng.range(1, len);
    let payload = noise(len as usize, rng.next_u64());
    let p = pump(&env.opts("echo.lb.test", &["lb-echo"]), &payload, Mode::ResetAfter { after }, IDLE, &env.stall_probe, client)?;
    Ok(Done::OwnReset { bytes: 2 * p.verified })
}

/// The hostile hellos, in turn. The daemon must close those it cannot route (garbage,
/// truncated, oversized) well before `LIMIT`; a hello without SNI or with an unknown ALPN is
/// routed to the default farm, whose backend serves it or refuses the ALPN: either is fine,
/// as long as nothing hangs.
fn hostile(env: &Env, i: usize, client: &mut Option<SocketAddr>) -> Result<Done, Failure> {
    const LIMIT: Duration = Duration::from_secs(12);
    let closed = |r: Result<crate::hostile::Closed>| r.map(|_| Done::Refused).map_err(Failure::from);
    match i % 7 {
        0 => {
            // Not TLS: the frontend takes it as plain TCP (protocol `tcp`) for its default
            // farm, whose TLS server answers with an alert and closes.
            let mut garbage = noise(2048, i as u64 + 1);
            garbage[0] = b'G';
            closed(send_then_wait_closed(&garbage, LIMIT))
        }
        6 => {
            // Garbage inside a TLS handshake record: the daemon closes it at once.
            let mut bad = noise(2048, i as u64 + 1);
            bad[..5].copy_from_slice(&[0x16, 0x03, 0x01, 0x07, 0xfb]);
            closed(hold(vip(443), &bad, &[], Duration::from_millis(100), LIMIT))
        }
        1 => {
            let hello = hello::client_hello_bytes(&env.opts("h2.lb.test", &["h2"]))?;
            closed(hold(vip(443), &hello[..hello.len() / 2], &[], Duration::from_millis(100), LIMIT))
        }
        2 => {
            // A ClientHello announcing 16 MiB, then more bytes as if it meant it.
            let head = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0xff, 0xff, 0xff, 0x03, 0x03];
            closed(hold(vip(443), &head, &noise(256, 5), Duration::from_millis(20), LIMIT))
        }
        3 => {
            // A record of 64 KiB (TLS allows 16 KiB + 2 KiB).
            let head = [0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x00, 0xff, 0xfb, 0x03, 0x03];
            closed(hold(vip(443), &head, &noise(256, 6), Duration::from_millis(20), LIMIT))
        }
        4 => served_or_refused(env.opts(&LB_VIP.to_string(), &["h2"]), client),
        _ => served_or_refused(env.opts("h1.lb.test", &["lb-unknown/9"]), client),
    }
}

/// Sends `bytes` and waits for the peer to close (whatever it answers meanwhile).
fn send_then_wait_closed(bytes: &[u8], limit: Duration) -> Result<crate::hostile::Closed> {
    let mut sock = crate::client::tcp_connect(None, vip(443), Duration::from_secs(3))?;
    let started = Instant::now();
    if !crate::hostile::send(&mut sock, bytes)? {
        return Ok(crate::hostile::Closed { after: started.elapsed(), sent: 0 });
    }
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        match std::io::Read::read(&mut sock, &mut buf) {
            Ok(0) => return Ok(crate::hostile::Closed { after: started.elapsed(), sent: bytes.len() }),
            Ok(_) => {}
            Err(e) if crate::hostile::closed_by_peer(&e) => return Ok(crate::hostile::Closed { after: started.elapsed(), sent: bytes.len() }),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(anyhow!("garbage connection still open after {limit:?}"))
}

/// A TLS client that may be served or refused; only a hang is wrong.
fn served_or_refused(opts: ClientOpts, client: &mut Option<SocketAddr>) -> Result<Done, Failure> {
    let tls = match TlsClient::connect(&opts) {
        Ok(tls) => tls,
        Err(e) if crate::client::is_timeout(&e) => return Err(e.into()),
        Err(_) => return Ok(Done::Refused),
    };
    *client = tls.local_addr().ok();
    match tls.http_get("/") {
        Ok(r) if r.status == 200 => Ok(Done::Served { bytes: r.body.len() as u64 }),
        Ok(r) => Err(anyhow!("status {} for a hello without SNI or with an unknown ALPN", r.status).into()),
        Err(e) if crate::client::is_timeout(&e) => Err(e.into()),
        Err(_) => Ok(Done::Refused),
    }
}
