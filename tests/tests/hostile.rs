//! Hostile clients: slowloris, hellos that never end, absurd record lengths, garbage, silent
//! clients, half-closes, SYN floods and thousands of idle connections. Each is closed within
//! the frontend's inspect timeout (1 s here) while a legitimate client keeps being served,
//! and afterwards the daemon's open descriptors are back to their baseline exactly and its
//! resident memory within a stated tolerance.
//!
//! Every frontend here has a `protocol is http/2.0` route (so it must read the ClientHello)
//! and no default farm (so what is not an h2 hello has nowhere to go and is closed).

use std::io::Write;
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use lb_tests::client::{client_config, server_name, tcp_connect, ClientOpts};
use lb_tests::config::{Config, Frontend, Route, Rule};
use lb_tests::hostile::{hold, idle_crowd, noise, wait_closed, Closed};
use lb_tests::lab::standard::*;
use lb_tests::load::{ClientLoad, LoadReport};
use lb_tests::procfs::{self, Usage};
use lb_tests::raw::{syn_recv_count, RawSender};
use lb_tests::{in_netns, require_root, vip, Lab, LB_VIP};
use rustls::ClientConnection;

/// The frontend's `inspectTimeout`.
const INSPECT: Duration = Duration::from_secs(1);
/// How late after the inspect timeout a close may be seen: scheduling on a loaded two-core
/// machine, and the client's own polling.
const CLOSE_MARGIN: Duration = Duration::from_millis(1500);
/// A connection the daemon must close at its inspect timeout is not closed before this.
const NOT_BEFORE: Duration = Duration::from_millis(900);
/// Resident memory the daemon may keep after a hostile round (allocator caches, tokio's
/// worker queues), over its baseline.
const RSS_TOLERANCE_KIB: u64 = 8 * 1024;
/// After 2,000 connections at once, allocators keep more of what they grew to.
const RSS_TOLERANCE_IDLE_KIB: u64 = 32 * 1024;

fn hostile_config() -> Config {
    Config::new()
        .frontend(Frontend::new(1, "443").inspect_timeout(INSPECT.as_secs()))
        .farm(h2_farm())
        .route(Route::to_farm(1, 1, H2_FARM).rule(Rule::new("protocol", "is", "http/2.0")))
}

/// A lab with the h2 servers and the daemon, its baseline taken after a few legitimate GETs.
struct Arena {
    lab: Lab,
    pid: u32,
    baseline: Usage,
}

impl Arena {
    fn new() -> Result<Self> {
        let mut lab = Lab::new()?;
        for (listen, alpn, name) in &TLS_BACKENDS[..2] {
            lab.backends.tls(listen, alpn, name)?;
        }
        lab.start(&hostile_config())?;
        let pid = lab.daemon()?.pid()?;
        let opts = legit_opts(&lab);
        lab.in_cli(|| {
            for _ in 0..4 {
                let r = lb_tests::client::https_get(&opts, "/")?;
                ensure!(r.status == 200, "warm-up GET: {r:?}");
            }
            Ok(())
        })?;
        // Connections just served release their descriptors asynchronously.
        let baseline = settle(pid)?;
        eprintln!("baseline: {} fds, {} KiB RSS", baseline.fds, baseline.rss_kib);
        Ok(Self { lab, pid, baseline })
    }

    /// One client thread making sequential h2 GETs until stopped (at most 2 minutes).
    fn legit_load(&self) -> ClientLoad {
        ClientLoad::start(self.lab.topo.cli(), vec![("h2".into(), legit_opts(&self.lab))], Duration::from_secs(120), 100_000)
    }

    /// Stops the legitimate client and checks it was served throughout; then waits for the
    /// daemon's descriptors to come back to the baseline and checks its memory.
    fn finish(&self, load: ClientLoad, what: &str, rss_tolerance_kib: u64) -> Result<Usage> {
        let report = load.stop();
        check_served(&report, what)?;
        let (after, took) = procfs::wait_for_fds(self.pid, self.baseline.fds, Duration::from_secs(5))?;
        ensure!(took.is_some(), "{what}: the daemon holds {} descriptors 5 s later, {} before", after.fds, self.baseline.fds);
        let grown = after.rss_kib.saturating_sub(self.baseline.rss_kib);
        eprintln!(
            "{what}: fds {} -> {} (back after {:?}); RSS {} -> {} KiB (+{grown} KiB, tolerance {rss_tolerance_kib} KiB)",
            self.baseline.fds,
            after.fds,
            took.unwrap_or_default(),
            self.baseline.rss_kib,
            after.rss_kib
        );
        ensure!(
            grown <= rss_tolerance_kib,
            "{what}: RSS grew by {grown} KiB (from {} to {} KiB), over the {rss_tolerance_kib} KiB tolerance",
            self.baseline.rss_kib,
            after.rss_kib
        );
        Ok(after)
    }
}

fn legit_opts(lab: &Lab) -> ClientOpts {
    lab.client("h2.lb.test").alpn(&["h2"]).timeout(Duration::from_secs(5))
}

/// The daemon's usage once its descriptor count has held still for 300 ms (at most 5 s).
fn settle(pid: u32) -> Result<Usage> {
    let mut last = procfs::usage(pid)?;
    let mut still_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let now = procfs::usage(pid)?;
        if now.fds != last.fds {
            still_since = Instant::now();
        } else if still_since.elapsed() >= Duration::from_millis(300) {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

fn check_served(report: &LoadReport, what: &str) -> Result<()> {
    eprintln!("{what}: legitimate client: {} GETs served in {:?} (slowest {:?}), {} failed", report.ok, report.elapsed, report.slowest, report.failures.len());
    ensure!(report.failures.is_empty(), "{what}: legitimate GETs failed meanwhile: {:#?}", report.failures);
    ensure!(report.ok >= 2, "{what}: the legitimate client was served only {} times in {:?}", report.ok, report.elapsed);
    for (_, backend) in report.backends.keys() {
        ensure!(backend.starts_with("farm h2 "), "{what}: h2 client served by {backend:?}");
    }
    Ok(())
}

/// Runs `count` hostile connections at once (one thread each) from the client namespace.
fn hostile_round(arena: &Arena, count: usize, conn: impl Fn(usize) -> Result<Closed> + Sync) -> Result<Vec<Closed>> {
    let ns = arena.lab.topo.cli().to_string();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .map(|i| {
                let (ns, conn) = (ns.clone(), &conn);
                scope.spawn(move || in_netns(&ns, || conn(i)))
            })
            .collect();
        handles
            .into_iter()
            .enumerate()
            .map(|(i, h)| h.join().map_err(|_| anyhow::anyhow!("hostile connection {i} panicked"))?.with_context(|| format!("hostile connection {i}")))
            .collect()
    })
}

/// Checks every close came no later than the inspect timeout (plus margin), and, when
/// `at_timeout`, not before it either (the daemon waited for the hello, then gave up).
fn check_closes(what: &str, closes: &[Closed], at_timeout: bool) -> Result<()> {
    let max = closes.iter().map(|c| c.after).max().unwrap_or_default();
    let min = closes.iter().map(|c| c.after).min().unwrap_or_default();
    let sent = closes.iter().map(|c| c.sent).max().unwrap_or_default();
    eprintln!("{what}: {} connections closed after {min:?}..{max:?} (at most {sent} bytes sent each)", closes.len());
    ensure!(max <= INSPECT + CLOSE_MARGIN, "{what}: a connection was closed only after {max:?} (inspect timeout {INSPECT:?})");
    if at_timeout {
        ensure!(min >= NOT_BEFORE, "{what}: a connection was closed after {min:?}, before the {INSPECT:?} inspect timeout");
    }
    Ok(())
}

/// A real ClientHello (h2 offered), as bytes.
fn real_hello(lab: &Lab) -> Result<Vec<u8>> {
    let opts = legit_opts(lab);
    let mut conn = ClientConnection::new(client_config(&opts)?, server_name(&opts.sni)?)?;
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello)?;
    }
    Ok(hello)
}

const LIMIT: Duration = Duration::from_secs(10);
/// Descriptors of one relayed connection: client and server sockets, two splice pipes.
const LEGIT_IN_FLIGHT_FDS: usize = 6;
/// Hostile rounds that end at once are repeated for this long, so that the legitimate client
/// is served while they happen (at most [`MAX_ROUNDS`] rounds).
const QUICK_PHASE: Duration = Duration::from_millis(1500);
const MAX_ROUNDS: usize = 200;

/// Repeats `round` until [`QUICK_PHASE`] has passed (bounded); returns every close seen.
fn repeat_quick(mut round: impl FnMut() -> Result<Vec<Closed>>) -> Result<Vec<Closed>> {
    let started = Instant::now();
    let mut all = Vec::new();
    for _ in 0..MAX_ROUNDS {
        all.extend(round()?);
        if started.elapsed() >= QUICK_PHASE {
            break;
        }
    }
    Ok(all)
}

#[test]
fn slowloris_one_byte_per_second_is_closed_at_the_inspect_timeout() -> Result<()> {
    require_root!();
    let arena = Arena::new()?;
    let hello = real_hello(&arena.lab)?;
    let load = arena.legit_load();
    let closes = hostile_round(&arena, 8, |_| hold(vip(443), &[], &hello, Duration::from_secs(1), LIMIT))?;
    check_closes("slowloris", &closes, true)?;
    ensure!(closes.iter().all(|c| c.sent < hello.len()), "a slowloris client got its whole hello through");
    arena.finish(load, "slowloris", RSS_TOLERANCE_KIB)?;
    Ok(())
}

#[test]
fn a_hello_that_never_ends_is_closed_at_the_inspect_timeout() -> Result<()> {
    require_root!();
    let arena = Arena::new()?;
    // A handshake record promising 16 KiB holding a ClientHello promising 16,380 bytes,
    // then zeros trickling in every 100 ms.
    let head = [0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x3f, 0xfc, 0x03, 0x03];
    let trickle = vec![0u8; 200];
    let load = arena.legit_load();
    let closes = hostile_round(&arena, 8, |_| hold(vip(443), &head, &trickle, Duration::from_millis(100), LIMIT))?;
    check_closes("never-ending hello", &closes, true)?;
    arena.finish(load, "never-ending hello", RSS_TOLERANCE_KIB)?;
    Ok(())
}

#[test]
fn absurd_lengths_are_refused_without_waiting() -> Result<()> {
    require_root!();
    let arena = Arena::new()?;
    let cases: [(&str, Vec<u8>); 2] = [
        // A ClientHello announcing 16 MiB (the largest handshake length) in a small record.
        ("16 MiB hello length", vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0xff, 0xff, 0xff, 0x03, 0x03]),
        // A record of 65,535 bytes (TLS allows 16,384 + 2,048) announcing the same.
        ("64 KiB record length", vec![0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0xff, 0xff, 0xff, 0x03, 0x03]),
    ];
    let load = arena.legit_load();
    for (what, head) in &cases {
        // Then keep sending, as a client with 16 MiB to deliver would.
        let more = noise(4096, 7);
        let closes = repeat_quick(|| hostile_round(&arena, 8, |_| hold(vip(443), head, &more, Duration::from_millis(50), LIMIT)))?;
        check_closes(what, &closes, false)?;
        let max = closes.iter().map(|c| c.after).max().unwrap_or_default();
        ensure!(max < NOT_BEFORE, "{what}: closed after {max:?}: the length alone should refuse it, not the timeout");
    }
    arena.finish(load, "absurd lengths", RSS_TOLERANCE_KIB)?;
    Ok(())
}

#[test]
fn garbage_bytes_are_closed_at_once() -> Result<()> {
    require_root!();
    let arena = Arena::new()?;
    let mut not_tls = noise(4096, 11);
    not_tls[0] = b'G';
    let mut bad_tls = noise(4096, 13);
    bad_tls[..5].copy_from_slice(&[0x16, 0x03, 0x01, 0x0f, 0xf0]);
    let load = arena.legit_load();
    for (what, bytes) in [("garbage (not TLS)", &not_tls), ("garbage in a TLS record", &bad_tls)] {
        let closes = repeat_quick(|| {
            hostile_round(&arena, 8, |i| {
                // Each connection sends its own slice at once, then the rest trickling.
                let start = (i * 97) % 1024;
                let (first, rest) = bytes[start..].split_at(1024);
                hold(vip(443), first, rest, Duration::from_millis(50), LIMIT)
            })
        })?;
        check_closes(what, &closes, false)?;
        let max = closes.iter().map(|c| c.after).max().unwrap_or_default();
        ensure!(max < NOT_BEFORE, "{what}: closed only after {max:?}");
    }
    arena.finish(load, "garbage", RSS_TOLERANCE_KIB)?;
    Ok(())
}

#[test]
fn silent_and_half_closed_clients_are_closed() -> Result<()> {
    require_root!();
    let arena = Arena::new()?;
    let load = arena.legit_load();
    // Connects and sends nothing, ever.
    let closes = hostile_round(&arena, 16, |_| hold(vip(443), &[], &[], Duration::from_millis(50), LIMIT))?;
    check_closes("silent client", &closes, true)?;
    // Connects and half-closes at once (FIN, no byte): nothing will ever come.
    let closes = repeat_quick(|| {
        hostile_round(&arena, 16, |_| {
            let mut sock = tcp_connect(None, vip(443), Duration::from_secs(3))?;
            let started = Instant::now();
            sock.shutdown(Shutdown::Write)?;
            while started.elapsed() < LIMIT {
                if wait_closed(&mut sock, Duration::from_millis(50))? {
                    return Ok(Closed { after: started.elapsed(), sent: 0 });
                }
            }
            bail!("a half-closed client still connected after {LIMIT:?}")
        })
    })?;
    check_closes("half-closed client", &closes, false)?;
    // A few bytes of a hello, then FIN: the hello can never complete.
    let closes = repeat_quick(|| {
        hostile_round(&arena, 16, |_| {
            let mut sock = tcp_connect(None, vip(443), Duration::from_secs(3))?;
            let started = Instant::now();
            sock.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])?;
            sock.shutdown(Shutdown::Write)?;
            while started.elapsed() < LIMIT {
                if wait_closed(&mut sock, Duration::from_millis(50))? {
                    return Ok(Closed { after: started.elapsed(), sent: 6 });
                }
            }
            bail!("a half-closed client still connected after {LIMIT:?}")
        })
    })?;
    check_closes("half a hello, then FIN", &closes, false)?;
    arena.finish(load, "silent and half-closed", RSS_TOLERANCE_KIB)?;
    Ok(())
}

#[test]
fn a_syn_flood_of_half_open_connections_leaves_the_daemon_untouched() -> Result<()> {
    require_root!();
    let arena = Arena::new()?;
    let load = arena.legit_load();
    // 1,000 bare SYNs from ten addresses of the client subnet that nobody owns: the load
    // balancer's SYN-ACKs go unanswered (ARP fails), so every one stays half-open.
    const SYNS: u16 = 1000;
    let started = Instant::now();
    let sent = arena.lab.in_cli(|| {
        let raw = RawSender::new()?;
        let dst = SocketAddrV4::new(LB_VIP, 443);
        for i in 0..SYNS {
            let src = SocketAddrV4::new(Ipv4Addr::new(10, 77, 1, 50 + (i % 10) as u8), 20000 + i);
            raw.syn(src, dst, 0x1000_0000 + u32::from(i))?;
            if i % 100 == 99 {
                // Bursts of 100, not a single spike the veth queue could drop.
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(SYNS)
    })?;
    let half_open = in_netns(arena.lab.topo.lb(), || syn_recv_count(443))?;
    eprintln!("SYN flood: {sent} SYNs sent in {:?}; {half_open} half-open (SYN_RECV) in the lb namespace", started.elapsed());
    ensure!(half_open > 0, "no SYN_RECV entry after {sent} SYNs: the flood never reached the load balancer");
    // The legitimate client keeps going through the half-open backlog for a while.
    std::thread::sleep(Duration::from_secs(2));
    // At most the legitimate client's connections in flight (the one closing, the next).
    let during = procfs::usage(arena.pid)?;
    ensure!(
        during.fds <= arena.baseline.fds + 2 * LEGIT_IN_FLIGHT_FDS,
        "half-open connections reached the daemon: {} descriptors, {} before",
        during.fds,
        arena.baseline.fds
    );
    arena.finish(load, "SYN flood", RSS_TOLERANCE_KIB)?;
    Ok(())
}

#[test]
fn two_thousand_idle_clients_are_all_closed_and_nothing_stays_behind() -> Result<()> {
    require_root!();
    let arena = Arena::new()?;
    const CROWD: usize = 2000;
    let mut after_first = None;
    for round in 1..=2 {
        let load = arena.legit_load();
        let peak = std::sync::Mutex::new(arena.baseline);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (longest, opened) = std::thread::scope(|scope| -> Result<(Duration, Duration)> {
            // Samples the daemon's peak use while the crowd is connected.
            let sampler = scope.spawn(|| {
                for _ in 0..400 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    if let Ok(u) = procfs::usage(arena.pid) {
                        let mut p = peak.lock().unwrap_or_else(|e| e.into_inner());
                        p.fds = p.fds.max(u.fds);
                        p.rss_kib = p.rss_kib.max(u.rss_kib);
                    }
                    std::thread::sleep(Duration::from_millis(25));
                }
            });
            let result = arena.lab.in_cli(|| idle_crowd(vip(443), CROWD, INSPECT + CLOSE_MARGIN * 2));
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = sampler.join();
            result
        })?;
        let peak = *peak.lock().unwrap_or_else(|e| e.into_inner());
        eprintln!(
            "round {round}: {CROWD} idle clients opened in {opened:?}; every one closed at most {longest:?} after its connect; daemon peak {} fds, {} KiB RSS",
            peak.fds, peak.rss_kib
        );
        ensure!(peak.fds >= arena.baseline.fds + CROWD / 2, "the daemon never held the crowd (peak {} descriptors): nothing was tested", peak.fds);
        ensure!(longest <= INSPECT + CLOSE_MARGIN * 2, "an idle client was closed only {longest:?} after it connected");
        let after = arena.finish(load, &format!("{CROWD} idle clients, round {round}"), RSS_TOLERANCE_IDLE_KIB)?;
        match after_first {
            None => after_first = Some(after),
            Some(first) => {
                // The second crowd reuses what the first grew: no growth from round to round.
                let grown = after.rss_kib.saturating_sub(first.rss_kib);
                eprintln!("round 2 vs round 1: RSS +{grown} KiB (tolerance {RSS_TOLERANCE_KIB} KiB)");
                ensure!(grown <= RSS_TOLERANCE_KIB, "RSS grew by {grown} KiB from the first crowd to the second: a leak");
            }
        }
    }
    Ok(())
}
