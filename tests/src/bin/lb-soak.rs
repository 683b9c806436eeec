//! `cargo xtask soak --minutes N`: a day of load compressed into N minutes, in network
//! namespaces of its own (`lbk<pid>x<n>-*`, removed at the end, even on failure or Ctrl-C).
//! See `lb_tests::soak` and docs/soak.md for what runs and what is checked.
//! Binaries: `LB_USER_BIN`, `LB_BACKEND_BIN` (default: next to this binary). Needs root and
//! curl.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use lb_tests::api::{ApiClient, ApiDaemon, ApiDaemonOpts};
use lb_tests::bench::interrupt;
use lb_tests::bench::report::utc_stamp;
use lb_tests::daemon::{PinDir, Stats};
use lb_tests::netns::{run_in, LB_CLI_IF, LB_SRV_IF};
use lb_tests::procfs;
use lb_tests::soak::churn::{self, Churn, BACKENDS};
use lb_tests::soak::clients::{self, Control, Env};
use lb_tests::soak::ledger::Ledger;
use lb_tests::soak::report::{self, Check, Instance, Sample};
use lb_tests::soak::rng::Rng;
use lb_tests::stall_probe::StallProbe;
use lb_tests::{is_root, Backends, Certs, Topology, VethKind};
use serde_json::json;

/// The longest run accepted: a day.
const MAX_MINUTES: u64 = 24 * 60;
/// Attempts at an idle baseline before the run gives up on it (and fails that check).
const BASELINE_ATTEMPTS: u32 = 3;
/// Descriptors the daemon may hold beyond its baseline at the end.
const FD_SLACK: usize = 8;
/// Resident memory the daemon may hold at the end: baseline × 1.25 + 16 MiB.
const RSS_FACTOR: f64 = 1.25;
const RSS_SLACK_KIB: u64 = 16 * 1024;

#[derive(Parser)]
#[command(
    about = "Soak: mixed TLS clients (h2 and http/1.1 GETs, long echo transfers, slow readers, \
             client resets, hostile hellos) for N minutes while the configuration is refreshed \
             every few seconds, backends are killed and restarted, and the daemon is restarted \
             twice with --pin-dir; then every outcome, the daemon's flows and its descriptors \
             and memory are checked",
    after_help = "Writes <out-dir>/<UTC stamp>.json; exit status 1 when a check fails (the \
                  summary lists them), 2 for bad arguments."
)]
struct Args {
    /// Minutes of load (1 to 1440).
    #[arg(long)]
    minutes: u64,
    /// Veths as the kernel leaves them (`default`) or wire-like (`wire`: tx checksum off, GRO on).
    #[arg(long, default_value = "default")]
    veth: VethKind,
    /// Seed of every random choice (sizes, pauses, which change, which backend); default: from the clock.
    #[arg(long)]
    seed: Option<u64>,
    /// Where the JSON report goes.
    #[arg(long, default_value = "target/soak")]
    out_dir: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.minutes == 0 || args.minutes > MAX_MINUTES {
        eprintln!("lb-soak: --minutes {} is out of range: give 1 to {MAX_MINUTES} (a day)", args.minutes);
        return ExitCode::from(2);
    }
    if !is_root() {
        eprintln!("lb-soak needs root (network namespaces, kernel programs)");
        return ExitCode::FAILURE;
    }
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("lb-soak FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Everything the run owns; fields drop in order: the daemon first, the namespaces last.
struct Rig {
    daemon: ApiDaemon,
    backends: Backends,
    pins: PinDir,
    certs: Arc<Certs>,
    topo: Topology,
}

impl Rig {
    fn build(veth: VethKind, token: String) -> Result<Self> {
        let topo = Topology::with_kind("lbk", veth)?;
        // The hand-off's FIB lookups need forwarding on in the load balancer's namespace.
        let out = run_in(topo.lb(), &["sysctl", "-qw", "net.ipv4.conf.all.forwarding=1", "net.ipv6.conf.all.forwarding=1"])?;
        if !out.status.success() {
            bail!("sysctl: {}", String::from_utf8_lossy(&out.stderr));
        }
        let certs = Arc::new(Certs::generate()?);
        let mut backends = Backends::new(&topo, &certs)?;
        for b in BACKENDS {
            backends.tls(b.listen, b.alpn, b.name)?;
        }
        let pins = PinDir::new(topo.prefix())?;
        let mut opts = ApiDaemonOpts::in_netns(topo.lb());
        opts.token = Some(token);
        opts.daemon.ifaces = vec![LB_CLI_IF.to_string(), LB_SRV_IF.to_string()];
        opts.daemon.xdp_mode = "auto".to_string();
        opts.daemon.ready_timeout = Duration::from_secs(30);
        // A short drain keeps restarts short (user-space relays still open after it are the
        // `daemon_restarted` outcome); a short linger lets ended flows go before the end check.
        opts.daemon.extra_args =
            vec!["--pin-dir".into(), pins.path.display().to_string(), "--drain-timeout".into(), "2".into(), "--handoff-linger".into(), "2".into()];
        let daemon = ApiDaemon::start(opts).context("starting lb-user")?;
        churn::seed(&daemon.client()).context("seeding the configuration through the API")?;
        Ok(Self { daemon, backends, pins, certs, topo })
    }
}

/// What the orchestration counted.
#[derive(Default)]
struct Counts {
    kills: u64,
    restarts: u64,
    errors: Vec<String>,
}

fn run(args: &Args) -> Result<bool> {
    interrupt::install()?;
    let seed = args.seed.unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1));
    let mut rng = Rng::new(seed);
    let duration = Duration::from_secs(args.minutes * 60);
    let stamp = utc_stamp();
    let commit = git_commit();
    eprintln!("lb-soak: {} min on {} veths, seed {seed}, commit {commit}", args.minutes, args.veth.name());
    let token = format!("soak-{:016x}", rng.next_u64());
    let mut rig = Rig::build(args.veth, token)?;
    eprintln!("lb-soak: namespaces {}-*, daemon pid {}, pin dir {}", rig.topo.prefix(), rig.daemon.pid()?, rig.pins.path.display());

    let started = Instant::now();
    let at = |t: Instant| (t - started).as_secs_f64();
    let ledger = Arc::new(Ledger::new(started));
    let control = Arc::new(Control::default());
    let env = Env {
        cli_ns: rig.topo.cli().to_string(),
        certs: Arc::clone(&rig.certs),
        ledger: Arc::clone(&ledger),
        control: Arc::clone(&control),
        stall_probe: Arc::new(StallProbe::new(&rig.topo, rig.daemon.data_dir())),
    };
    let workers = clients::start(&env, &mut rng);

    let deadline = started + duration;
    let restarts_at = [started + duration / 4, started + duration / 2];
    let warmup = (duration / 10).clamp(Duration::from_secs(10), Duration::from_secs(60));
    let mut next_refresh = started + rng.millis(2_000, 6_000);
    let mut next_kill = started + rng.millis(20_000, 40_000);
    let mut next_progress = started + Duration::from_secs(60);
    let mut baseline_due = None;
    let mut baseline: Option<Sample> = None;
    let mut baseline_attempts = 0;
    let mut churn = Churn::default();
    let mut counts = Counts::default();
    let mut instances: Vec<Instance> = Vec::new();
    let mut instance_started = 0.0;
    let mut api = rig.daemon.client();

    while Instant::now() < deadline {
        if interrupt::requested() {
            control.stop();
            bail!("interrupted");
        }
        let now = Instant::now();
        if (counts.restarts as usize) < restarts_at.len() && now >= restarts_at[counts.restarts as usize] {
            let stats = rig.daemon.stats().context("stats before a restart")?;
            instances.push(Instance::from_stats(rig.daemon.pid()?, instance_started, at(now), &stats));
            let handed_off = churn::handed_off_clients(&stats);
            eprintln!("lb-soak: {:.0}s: restarting the daemon (SIGTERM, same --pin-dir; {} flows in the kernel now)", at(now), stats.spliced.len() / 2);
            let window = ledger.restart_begins(handed_off);
            rig.daemon.restart().context("restarting the daemon")?;
            ledger.restart_over(window);
            counts.restarts += 1;
            instance_started = at(Instant::now());
            api = rig.daemon.client();
            eprintln!("lb-soak: {:.0}s: daemon back (pid {}) after {:.1}s", instance_started, rig.daemon.pid()?, instance_started - at(now));
            if counts.restarts as usize == restarts_at.len() {
                baseline_due = Some(Instant::now() + warmup);
            }
            continue;
        }
        if baseline.is_none() && baseline_due.is_some_and(|t| now >= t) {
            match quiet_sample(&rig.daemon, &api, &control, at) {
                Ok(s) => {
                    eprintln!("lb-soak: {:.0}s: baseline of daemon pid {} (idle, after warm-up): {} fds, {} KiB RSS", s.at_s, s.pid, s.fds, s.rss_kib);
                    baseline = Some(s);
                }
                Err(e) => {
                    counts.errors.push(format!("{:.0}s: baseline: {e:#}", at(now)));
                    baseline_attempts += 1;
                    // Each attempt pauses every client for up to a minute: a daemon that is
                    // never idle fails the check once, not for the rest of the run.
                    if baseline_attempts >= BASELINE_ATTEMPTS {
                        eprintln!("lb-soak: {:.0}s: no baseline after {baseline_attempts} attempts; giving up", at(now));
                        baseline_due = None;
                    }
                }
            }
            continue;
        }
        if now >= next_kill {
            if let Err(e) = kill_one(&mut rig, &api, &ledger, &churn, &mut rng) {
                counts.errors.push(format!("{:.0}s: backend kill: {e:#}", at(now)));
            } else {
                counts.kills += 1;
            }
            next_kill = Instant::now() + rng.millis(60_000, 120_000);
            continue;
        }
        if now >= next_refresh {
            if let Err(e) = churn.step(&api, &mut rng) {
                eprintln!("lb-soak: {:.0}s: refresh FAILED: {e:#}", at(now));
                counts.errors.push(format!("{:.0}s: refresh: {e:#}", at(now)));
            }
            next_refresh = Instant::now() + rng.millis(2_000, 8_000);
            continue;
        }
        if now >= next_progress {
            eprintln!(
                "lb-soak: {:.0}s: {} connections, {} refreshes, {} kills, {} restarts",
                at(now),
                ledger.count(),
                churn.refreshes(),
                counts.kills,
                counts.restarts
            );
            next_progress = now + Duration::from_secs(60);
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    eprintln!("lb-soak: {:.0}s: load stops; waiting for the clients in flight", at(Instant::now()));
    control.stop();
    join_workers(workers, &mut counts)?;
    let load_ended = at(Instant::now());
    let settled = settle(&rig.daemon, &api, Duration::from_secs(60));
    let end_stats = rig.daemon.stats()?;
    let pid = rig.daemon.pid()?;
    if let Some(b) = &baseline {
        // Descriptors of connections just closed may take a moment to go.
        procfs::wait_for_fds(pid, b.fds, Duration::from_secs(10)).ok();
    }
    let end = sample(pid, at)?;
    instances.push(Instance::from_stats(pid, instance_started, end.at_s, &end_stats));
    let active = active_connections(&api).unwrap_or(u64::MAX);

    let tally = ledger.tally();
    let totals = report::handoff_totals(&instances);
    let stalls = totals["stalls"].as_u64().unwrap_or(0);
    // Each instance's kernel counters start from zero: summed.
    let splice_errors: u64 = instances.iter().map(|i| i.counters["splice_errors"].as_u64().unwrap_or(0)).sum();
    let handed = totals["handed_off"].as_u64().unwrap_or(0);
    let mut checks = vec![
        Check::new("bytes identical", tally.mismatches == 0, format!("{} mismatches", tally.mismatches)),
        Check::new(
            "no unexpected outcome",
            tally.unexpected == 0,
            format!("{} unexpected ({} timeouts, {} resets)", tally.unexpected, tally.unexpected_timeouts, tally.unexpected_resets),
        ),
        Check::new("no stall", stalls == 0, format!("handoff.stalls summed over instances: {stalls}")),
        Check::new(
            "no splice error",
            splice_errors == 0,
            format!("kernel counter splice_errors summed over instances: {splice_errors} (frames of live flows that could not be rewritten)"),
        ),
        Check::new("the kernel path was used", handed > 0, format!("{handed} flows handed off")),
        Check::new(
            "every kind of client was served",
            tally.outcomes.iter().all(|(_, row)| row["ok"] + row["own_reset"] + row["refused"] > 0),
            "at least one expected outcome per kind",
        ),
        Check::new(
            "no flow left",
            end_stats.spliced.is_empty() && end_stats.flows.is_empty(),
            format!(
                "{} handed-off directions, {} flow-table entries after the grace period{}",
                end_stats.spliced.len(),
                end_stats.flows.len(),
                settled.as_ref().err().map(|e| format!(" ({e:#})")).unwrap_or_default()
            ),
        ),
        Check::new("no active connection", active == 0, format!("frontend_active_connections: {active}")),
        Check::new("orchestration clean", counts.errors.is_empty(), format!("{} errors (refreshes, kills, baseline)", counts.errors.len())),
    ];
    match &baseline {
        Some(b) => {
            let rss_limit = (b.rss_kib as f64 * RSS_FACTOR) as u64 + RSS_SLACK_KIB;
            checks.push(Check::new(
                "descriptors back to baseline",
                end.fds <= b.fds + FD_SLACK,
                format!("{} at the end, baseline {} (+{FD_SLACK} allowed)", end.fds, b.fds),
            ));
            checks.push(Check::new(
                "memory back to baseline",
                end.rss_kib <= rss_limit,
                format!("{} KiB at the end, baseline {} KiB (limit {rss_limit} KiB)", end.rss_kib, b.rss_kib),
            ));
        }
        None => checks.push(Check::new("baseline taken", false, "no baseline was measured")),
    }
    let passed = checks.iter().all(|c| c.ok);

    let report = json!({
        "started_utc": stamp,
        "commit": commit,
        "seed": seed,
        "veth": args.veth.name(),
        "minutes": args.minutes,
        "duration_s": load_ended,
        "passed": passed,
        "checks": checks,
        "connections": tally.connections,
        "outcomes": tally.outcomes,
        "bytes_verified": tally.bytes_verified,
        "handoff": totals,
        "stalls": stalls,
        "splice_errors": splice_errors,
        // SYNs that met a live flow (each made the daemon probe the client) and the probes.
        "syn_on_live": instances.iter().map(|i| i.counters["syn_on_live"].as_u64().unwrap_or(0)).sum::<u64>(),
        "refreshes": churn.refreshes(),
        "churn": {
            "servers_added": churn.servers_added, "servers_removed": churn.servers_removed,
            "routes_added": churn.routes_added, "routes_removed": churn.routes_removed,
        },
        "backend_kills": counts.kills,
        "daemon_restarts": counts.restarts,
        "daemon_instances": instances,
        "baseline": baseline,
        "baseline_note": "taken from the last daemon instance (after the second restart), after warm-up, with the clients paused and the daemon idle",
        "end": end,
        "active_connections_end": active,
        "leftover_flows": end_stats.spliced.iter().map(|f| json!({
            "from": f.from, "to": f.to, "state": f.state, "fin_seen": f.fin_seen,
            "rst_seen": f.rst_seen, "packets": f.packets, "bytes": f.bytes,
        })).collect::<Vec<_>>(),
        "leftover_flow_table": end_stats.flows.iter().map(|f| json!({
            "client": f.client, "frontend": f.frontend, "farm": f.farm_id, "server": f.server_id,
        })).collect::<Vec<_>>(),
        "incidents": tally.incidents,
        "excused_samples": tally.excused_samples,
        "orchestration_errors": counts.errors,
    });
    let path = report::write_json(&args.out_dir, &stamp, &report)?;
    let logs = keep_daemon_logs(&rig.daemon, &args.out_dir.join(&stamp));
    print_summary(&report, &checks);
    println!("report: {}", path.display());
    match logs {
        Ok(dir) => println!("daemon logs (one per instance): {}", dir.display()),
        Err(e) => eprintln!("lb-soak: keeping the daemon logs: {e:#}"),
    }
    if !passed {
        eprintln!("--- lb-user log (last instance, tail) ---\n{}", rig.daemon.log());
    }
    Ok(passed)
}

/// Copies every daemon instance's log (`daemon-<n>.log` beside its data directory) to `dir`.
fn keep_daemon_logs(daemon: &ApiDaemon, dir: &std::path::Path) -> Result<PathBuf> {
    let from = daemon.data_dir().parent().context("the data directory has no parent")?.to_path_buf();
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(&from)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if name.starts_with("daemon-") && name.ends_with(".log") {
            std::fs::copy(&path, dir.join(&name)).with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(dir.to_path_buf())
}

/// Kills one backend (SIGKILL), as a crash would, and starts it again 0.5-3 s later.
fn kill_one(rig: &mut Rig, api: &ApiClient, ledger: &Ledger, churn: &Churn, rng: &mut Rng) -> Result<()> {
    let backend = *rng.pick(&BACKENDS);
    let seen = Instant::now();
    let stats = rig.daemon.stats()?;
    let hit = churn::clients_on(api, &stats, &backend, churn)?;
    eprintln!("lb-soak: {:.0}s: kill -9 {} ({} connections on it)", (Instant::now() - ledger.started()).as_secs_f64(), backend.name, hit.len());
    let routed = stats.flows.iter().map(|f| f.client.clone()).collect();
    let window = ledger.kill_begins(hit, routed, backend.farm, seen);
    let result = rig.backends.kill9(backend.name).and_then(|()| {
        std::thread::sleep(rng.millis(500, 3_000));
        rig.backends.tls(backend.listen, backend.alpn, backend.name)
    });
    ledger.kill_over(window);
    result
}

/// Waits (bounded) for the workers to finish their connections in flight.
fn join_workers(workers: Vec<JoinHandle<()>>, counts: &mut Counts) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(180);
    for w in workers {
        while !w.is_finished() {
            if interrupt::requested() {
                bail!("interrupted");
            }
            if Instant::now() >= deadline {
                counts.errors.push("a client worker did not stop within 180 s".into());
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if w.is_finished() && w.join().is_err() {
            counts.errors.push("a client worker panicked".into());
        }
    }
    Ok(())
}

/// Pauses the clients, waits for the daemon to be idle, measures it, resumes the clients.
fn quiet_sample(daemon: &ApiDaemon, api: &ApiClient, control: &Control, at: impl Fn(Instant) -> f64) -> Result<Sample> {
    control.set_paused(true);
    let result = (|| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while control.in_flight() > 0 {
            if Instant::now() >= deadline || interrupt::requested() {
                bail!("{} clients still in flight after 120 s", control.in_flight());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Idle: no connection in the daemon. Flows left in the kernel are waited for a
        // while, but do not prevent the measurement (the end check reports them).
        settle_connections(daemon, api, Duration::from_secs(60))?;
        if let Err(e) = settle(daemon, api, Duration::from_secs(15)) {
            eprintln!("lb-soak: baseline taken with flows still in the kernel: {e:#}");
        }
        sample(daemon.pid()?, &at)
    })();
    control.set_paused(false);
    result
}

/// Waits until the daemon carries nothing: no handed-off flow, no flow-table entry, no active
/// connection.
fn settle(daemon: &ApiDaemon, api: &ApiClient, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let stats: Stats = daemon.stats()?;
        let active = active_connections(api)?;
        let h = stats.handoff.clone().unwrap_or_default();
        if stats.spliced.is_empty() && stats.flows.is_empty() && h.active == 0 && active == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "not idle after {timeout:?}: {} handed-off directions, {} flow-table entries, handoff.active {}, {active} active connections",
                stats.spliced.len(),
                stats.flows.len(),
                h.active
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Waits until the daemon has no connection: no active connection, no flow-table entry.
fn settle_connections(daemon: &ApiDaemon, api: &ApiClient, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let flows = daemon.stats()?.flows.len();
        let active = active_connections(api)?;
        if flows == 0 && active == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("not idle after {timeout:?}: {flows} flow-table entries, {active} active connections");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn sample(pid: u32, at: impl Fn(Instant) -> f64) -> Result<Sample> {
    let usage = procfs::usage(pid)?;
    Ok(Sample { pid, at_s: at(Instant::now()), fds: usage.fds, rss_kib: usage.rss_kib })
}

/// The sum of `lb_frontend_active_connections` in the daemon's `/metrics`.
fn active_connections(api: &ApiClient) -> Result<u64> {
    let reply = api.raw("GET", "/metrics", None)?;
    if reply.status != 200 {
        bail!("GET /metrics answered {}: {}", reply.status, reply.text);
    }
    let mut total = 0.0;
    for line in reply.text.lines() {
        if line.starts_with("lb_frontend_active_connections") {
            total += line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).with_context(|| format!("metric line {line:?}"))?;
        }
    }
    Ok(total as u64)
}

fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(lb_tests::workspace_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn print_summary(report: &serde_json::Value, checks: &[Check]) {
    println!(
        "\nsoak: {:.0} s on {} veths (seed {}, commit {})",
        report["duration_s"].as_f64().unwrap_or(0.0),
        report["veth"].as_str().unwrap_or("?"),
        report["seed"],
        report["commit"].as_str().unwrap_or("?")
    );
    println!("{:<14} {:>8} {:>10} {:>8} {:>15} {:>17} {:>11}", "client", "ok", "own_reset", "refused", "backend_killed", "daemon_restarted", "unexpected");
    if let Some(rows) = report["outcomes"].as_object() {
        for (kind, row) in rows {
            let n = |k: &str| row[k].as_u64().unwrap_or(0);
            println!(
                "{kind:<14} {:>8} {:>10} {:>8} {:>15} {:>17} {:>11}",
                n("ok"),
                n("own_reset"),
                n("refused"),
                n("backend_killed"),
                n("daemon_restarted"),
                n("unexpected")
            );
        }
    }
    let verified: u64 = report["bytes_verified"].as_object().map(|m| m.values().filter_map(|v| v.as_u64()).sum()).unwrap_or(0);
    let h = &report["handoff"];
    println!(
        "connections {}, bytes verified {:.1} MiB; hand-offs {} (adopted after restarts {}), stalls {}, fallbacks {}",
        report["connections"],
        verified as f64 / (1 << 20) as f64,
        h["handed_off"],
        h["adopted"],
        report["stalls"],
        h["fallbacks"]
    );
    println!(
        "refreshes {}, backend kills {}, daemon restarts {}; baseline {} -> end {}",
        report["refreshes"],
        report["backend_kills"],
        report["daemon_restarts"],
        short_sample(&report["baseline"]),
        short_sample(&report["end"])
    );
    for c in checks {
        println!("  [{}] {}: {}", if c.ok { "ok" } else { "FAILED" }, c.name, c.detail);
    }
    if let Some(errors) = report["orchestration_errors"].as_array() {
        for e in errors {
            println!("  error: {}", e.as_str().unwrap_or("?"));
        }
    }
    println!("{}", if report["passed"] == true { "soak PASSED" } else { "soak FAILED" });
}

fn short_sample(s: &serde_json::Value) -> String {
    if s.is_null() {
        return "none".into();
    }
    format!("{} fds / {} KiB", s["fds"], s["rss_kib"])
}
