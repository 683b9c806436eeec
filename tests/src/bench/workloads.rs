//! The workloads, each measured in one mode: bulk transfer over TLS (HTTP/1.1 with curl, and
//! HTTP/2 with h2load), new TLS connections per second (h2load, one request per connection),
//! connection latency (curl, sequential fresh connections, so that no queue inflates it) and
//! the load balancer's memory per idle TLS connection (the kit's rustls client holding them
//! open). Every client run is bounded in time, and a stalled transfer is given up and counted
//! as failed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::curl::Limits;
use super::mode::{Lb, Mode};
use super::nginx::{Nginx, BIG_PATH, CLOSE_PATH};
use super::report::Record;
use super::usage::{counters_delta, daemon_stats, numbers_of, tcp_active_opens, usage_of, Sample};
use super::{curl, h2load, interrupt, pinned, stats};
use crate::certs::Certs;
use crate::client::{ClientOpts, TlsClient};
use crate::netns::in_netns;
use crate::Topology;

/// How much each workload does.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Downloads of the big file per bulk workload.
    pub bulk_downloads: usize,
    /// New connections (one request each) and how many h2load clients make them at once.
    pub conns: usize,
    pub conns_clients: usize,
    /// Sequential new connections timed for the latency percentiles.
    pub latency_samples: usize,
    /// Idle TLS connections held open through the load balancer.
    pub memory_conns: usize,
}

impl Sizes {
    pub const DEFAULT: Sizes = Sizes { bulk_downloads: 4, conns: 3000, conns_clients: 16, latency_samples: 1000, memory_conns: 1000 };
    pub const QUICK: Sizes = Sizes { bulk_downloads: 3, conns: 600, conns_clients: 8, latency_samples: 200, memory_conns: 200 };
}

/// The XDP counter of bytes moved by the hand-off (`lb-user stats`), once the daemon has it.
pub const SPLICED_BYTES: &str = "spliced_bytes";
/// The hand-off statistic of flows that stopped moving (`lb-user stats`'s `handoff`), once
/// the daemon has it.
pub const STALLS: &str = "stalls";

pub const WORKLOADS: [&str; 6] = ["bulk-h1", "bulk-h2", "conns", "latency", "memory", "pinned"];

/// Everything a workload needs: the world, and this mode's load balancer (if any).
pub struct Run<'a> {
    pub topo: &'a Topology,
    pub certs: &'a Certs,
    pub nginx: &'a Nginx,
    pub sizes: Sizes,
    pub mode: Mode,
    pub lb: Option<&'a Lb>,
    pub xdp_mode: String,
    /// Every load balancer's threads or worker processes (`--lb-workers`).
    pub lb_workers: usize,
    pub started_utc: String,
    pub round: u32,
    /// Share of the host's CPUs busy just before the mode started.
    pub host_busy_before: f64,
}

/// Blocks the latency workload's connections come in, alternating between the mode and
/// `direct`: enough that a slow minute of the host falls on both.
const LATENCY_BLOCKS: usize = 10;

/// `total` split into `parts` counts as even as can be, none empty.
fn blocks(total: usize, parts: usize) -> impl Iterator<Item = usize> {
    let parts = parts.clamp(1, total.max(1));
    (0..parts).map(move |i| total / parts + usize::from(i < total % parts)).filter(|&c| c > 0)
}

/// One side's connections in the latency workload: those timed, and how many of the blocks'
/// untimed first connections failed.
struct Blocks {
    timed: Vec<curl::Transfer>,
    warm_up_failures: u64,
}

impl Blocks {
    fn with_capacity(n: usize) -> Self {
        Self { timed: Vec::with_capacity(n), warm_up_failures: 0 }
    }
}

/// p50 and p99 of the handshake, and p99 of the first byte, in milliseconds.
fn latencies(transfers: &[&curl::Transfer]) -> (Option<f64>, Option<f64>, Option<f64>) {
    let handshakes: Vec<f64> = transfers.iter().map(|t| t.appconnect_s * 1e3).collect();
    let first_bytes: Vec<f64> = transfers.iter().map(|t| t.starttransfer_s * 1e3).collect();
    (stats::quantile(&handshakes, 0.5), stats::quantile(&handshakes, 0.99), stats::quantile(&first_bytes, 0.99))
}

/// Generous bounds: a run that exceeds them is broken, not slow. A small request may take
/// [`SMALL`]'s time, a whole client run of small requests [`CLIENT_TIMEOUT`]; a bulk download
/// is given [`Run::bulk_limits`].
const SMALL: Limits = Limits { each: Duration::from_secs(10), floor: 1, whole: Duration::from_secs(15) };
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
/// The slowest a bulk download may go over [`curl::SLOW_SECS`] before it is given up as
/// stalled or trickling (1 MiB/s: over a hundred times slower than any mode here).
pub const BULK_FLOOR: u64 = 1 << 20;
/// h2load gives a connection up after this long without a byte (`-N`); a trickle is only
/// bounded by the whole run's limit.
const H2LOAD_IDLE: &str = "10s";
const BYTES_PER_GB: f64 = 1e9;

impl Run<'_> {
    pub fn workload(&self, name: &str) -> Result<Record> {
        interrupt::check()?;
        match name {
            "bulk-h1" => self.bulk_h1(),
            "bulk-h2" => self.bulk_h2(),
            "conns" => self.conns(),
            "latency" => self.latency(),
            "memory" => self.memory(),
            "pinned" => self.pinned(),
            other => anyhow::bail!("unknown workload {other:?} ({})", WORKLOADS.join(", ")),
        }
        .with_context(|| format!("workload {name} in mode {}", self.mode))
    }

    /// One small request in each farm, so that a broken setup fails before any measurement
    /// (and a load balancer that broke during a workload is found before the next).
    pub fn check_path(&self) -> Result<()> {
        for (flag, target) in [("--http1.1", self.mode.h1_target()), ("--http2", self.mode.h2_target())] {
            let t = curl::transfers(self.topo.cli(), target, CLOSE_PATH, 1, &self.certs.ca_pem(), &[flag], SMALL)?;
            if t.iter().any(|t| t.code != 200) {
                anyhow::bail!("curl {flag} https://{target}{CLOSE_PATH} in mode {}: {t:?}", self.mode);
            }
        }
        Ok(())
    }

    fn bulk_h1(&self) -> Result<Record> {
        let n = self.sizes.bulk_downloads;
        let measured =
            self.measure(|| curl::transfers(self.topo.cli(), self.mode.h1_target(), BIG_PATH, n, &self.certs.ca_pem(), &["--http1.1"], self.bulk_limits()))?;
        let transfers = &measured.value;
        let ok: Vec<_> = transfers.iter().filter(|t| t.code == 200 && t.bytes == self.nginx.big_len()).collect();
        if ok.is_empty() {
            anyhow::bail!("none of the {n} downloads completed: {}", described(transfers, self.nginx.big_len()));
        }
        let bytes: u64 = ok.iter().map(|t| t.bytes).sum();
        let secs: f64 = ok.iter().map(|t| t.total_s).sum();
        let mut r = self.record("bulk-h1", &measured, format!("curl --http1.1 https://{}{BIG_PATH}?[1-{n}]", self.mode.h1_target()));
        r.failures = (n - ok.len()) as u64;
        self.per_gb(&mut r, bytes, secs);
        Ok(r)
    }

    fn bulk_h2(&self) -> Result<Record> {
        let n = self.sizes.bulk_downloads;
        let url = format!("https://{}{BIG_PATH}", self.mode.h2_target());
        let args = vec!["-n".to_string(), n.to_string(), "-c1".into(), "-m1".into(), "-N".into(), H2LOAD_IDLE.into(), url.clone()];
        let timeout = self.bulk_limits().whole;
        let measured = self.measure(|| h2load::run(self.topo.cli(), &args, timeout))?;
        let report = measured.value;
        let mut r = self.record("bulk-h2", &measured, format!("h2load {}", args.join(" ")));
        // Short transfers count too, whatever h2load made of them.
        let whole = report.data_bytes / self.nginx.big_len().max(1);
        r.failures = report.failed.max((n as u64).saturating_sub(whole));
        self.per_gb(&mut r, report.data_bytes, report.secs);
        Ok(r)
    }

    fn conns(&self) -> Result<Record> {
        let (n, c) = (self.sizes.conns, self.sizes.conns_clients);
        let url = format!("https://{}{CLOSE_PATH}", self.mode.h1_target());
        let args = vec!["--h1".to_string(), "-n".into(), n.to_string(), "-c".into(), c.to_string(), "-N".into(), H2LOAD_IDLE.into(), url];
        let opens_before = tcp_active_opens(self.topo.cli())?;
        let measured = self.measure(|| h2load::run(self.topo.cli(), &args, CLIENT_TIMEOUT))?;
        let connections = tcp_active_opens(self.topo.cli())? - opens_before;
        let report = measured.value;
        let mut r = self.record("conns", &measured, format!("h2load {}", args.join(" ")));
        r.failures = report.failed.max((n as u64).saturating_sub(report.succeeded));
        r.secs = report.secs;
        r.connections = Some(connections);
        // Counted by the kernel, not assumed from the requests: each response closes its
        // connection, so h2load has to open a new one per request.
        r.conns_s = Some(connections as f64 / report.secs);
        let thousands = connections as f64 / 1000.0;
        r.lb_cpu_s_per_1k_conns = r.lb_cpu_s.map(|s| s / thousands);
        r.host_cpu_s_per_1k_conns = Some(r.host_busy_s / thousands);
        Ok(r)
    }

    /// New connections (as `conns`) with API requests beside them, once with the splice map
    /// as the workload finds it and once with [`pinned::FLOWS`] more handed-off flows in it:
    /// the daemon's scans of a full map must cost neither accepts nor API answers.
    fn pinned(&self) -> Result<Record> {
        let daemon = self.lb.and_then(Lb::daemon).filter(|_| matches!(self.mode, Mode::Xdp | Mode::Auto));
        let Some(daemon) = daemon else {
            let measured = self.measure(|| Ok(()))?;
            let mut r = self.record("pinned", &measured, String::new());
            r.add_note("not applicable: only the xdp and auto modes have a splice map");
            return Ok(r);
        };
        let runtime = daemon.runtime();
        let map_id = runtime["kernel"]["splice"].as_u64().context("runtime.json has no kernel.splice map id")? as u32;
        let api = runtime["api"].as_str().context("runtime.json has no api address (the bench starts the daemon with --api)")?;
        let url = format!("http://{api}/ipLoadbalancing/test/tcp/farm");
        let empty = self.conns_beside_api(&url)?;
        let flows = pinned::SyntheticFlows::add(map_id, pinned::FLOWS)?;
        // A few of the reaper's scans over the full map before the clock starts.
        std::thread::sleep(Duration::from_secs(1));
        let full = self.measure(|| self.conns_beside_api(&url))?;
        let entries = flows.entries();
        drop(flows);
        let (conns, api_ms) = &full.value;
        let mut r = self.record("pinned", &full, format!("h2load --h1 -n {} -c {} beside sequential GET {url}", self.sizes.conns, self.sizes.conns_clients));
        r.failures = conns.failed.max((self.sizes.conns as u64).saturating_sub(conns.succeeded)) + empty.0.failed;
        r.conns_s = Some(conns.succeeded as f64 / conns.secs);
        r.conns_s_empty_map = Some(empty.0.succeeded as f64 / empty.0.secs);
        r.api_p99_ms = stats::quantile(api_ms, 0.99);
        r.api_p99_ms_empty_map = stats::quantile(&empty.1, 0.99);
        r.pinned_flows = Some(pinned::FLOWS as u64);
        r.add_note(&format!("{entries} synthetic splice entries; {} and {} API requests", empty.1.len(), api_ms.len()));
        Ok(r)
    }

    /// The `conns` load from the client namespace and, meanwhile, sequential API requests
    /// from the load balancer's: h2load's report and each request's milliseconds.
    fn conns_beside_api(&self, url: &str) -> Result<(h2load::H2loadReport, Vec<f64>)> {
        let args = vec![
            "--h1".to_string(),
            "-n".into(),
            self.sizes.conns.to_string(),
            "-c".into(),
            self.sizes.conns_clients.to_string(),
            "-N".into(),
            H2LOAD_IDLE.into(),
            format!("https://{}{CLOSE_PATH}", self.mode.h1_target()),
        ];
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let api = scope.spawn(|| pinned::api_latencies(self.topo.lb(), url, 100_000, &stop));
            let conns = h2load::run(self.topo.cli(), &args, CLIENT_TIMEOUT);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let api = api.join().map_err(|_| anyhow::anyhow!("the API client thread panicked"))?;
            Ok((conns?, api?))
        })
    }

    /// Sequential fresh connections through the mode, alternating in blocks with as many
    /// straight to the server (`direct`), so that what the mode adds is measured against
    /// `direct` in the same minutes, not in another part of the round.
    fn latency(&self) -> Result<Record> {
        let n = self.sizes.latency_samples;
        let target = self.mode.h1_target();
        let flags = ["--http1.1", "--no-sessionid"];
        let ca = self.certs.ca_pem();
        // A curl process's first transfer also loads the CA file and warms its TLS library:
        // one slow handshake per block would be the top 1 % of ten blocks of 100. Each block
        // makes one more connection, not timed; a failed one still counts as an error.
        let run = |to, count: usize, side: &mut Blocks| -> Result<()> {
            let mut transfers = curl::transfers(self.topo.cli(), to, CLOSE_PATH, count + 1, &ca, &flags, Limits { whole: CLIENT_TIMEOUT, ..SMALL })?;
            let warm_up = transfers.remove(0);
            side.warm_up_failures += u64::from(warm_up.code != 200);
            side.timed.append(&mut transfers);
            Ok(())
        };
        let measured = self.measure(|| {
            let (mut through, mut beside) = (Blocks::with_capacity(n), Blocks::with_capacity(n));
            if self.mode == Mode::Direct {
                run(target, n, &mut through)?;
                return Ok((through, beside));
            }
            let direct = Mode::Direct.h1_target();
            for (i, count) in blocks(n, LATENCY_BLOCKS).enumerate() {
                if interrupt::requested() {
                    break;
                }
                // Each goes first in every other pair of blocks: neither always runs right
                // after the other's connections closed.
                let (first, second) =
                    if i % 2 == 0 { ((target, &mut through), (direct, &mut beside)) } else { ((direct, &mut beside), (target, &mut through)) };
                run(first.0, count, first.1)?;
                run(second.0, count, second.1)?;
            }
            Ok((through, beside))
        })?;
        let (through, beside) = &measured.value;
        let ok: Vec<_> = through.timed.iter().filter(|t| t.code == 200).collect();
        if ok.is_empty() {
            anyhow::bail!("none of the {n} requests succeeded: {}", described(&through.timed, 3));
        }
        let mut r = self.record("latency", &measured, format!("curl {} https://{target}{CLOSE_PATH}?[1-{n}]", flags.join(" ")));
        r.failures = (n - ok.len()) as u64 + through.warm_up_failures;
        r.connections = Some(ok.len() as u64);
        (r.p50_ms, r.p99_ms, r.p99_ttfb_ms) = latencies(&ok);
        if !beside.timed.is_empty() {
            let direct_ok: Vec<_> = beside.timed.iter().filter(|t| t.code == 200).collect();
            (r.direct_p50_ms, r.direct_p99_ms, r.direct_p99_ttfb_ms) = latencies(&direct_ok);
            let direct_failed = (beside.timed.len() - direct_ok.len()) as u64 + beside.warm_up_failures;
            r.add_note(&format!(
                "{LATENCY_BLOCKS} blocks alternating with {} connections straight to the server ({direct_failed} failed): direct_p99_ms; secs and CPU cover both",
                beside.timed.len(),
            ));
        }
        Ok(r)
    }

    fn memory(&self) -> Result<Record> {
        let client = format!("{} rustls TLS connections held idle", self.sizes.memory_conns);
        let Some(lb) = self.lb else {
            let measured = self.measure(|| Ok(()))?;
            let mut r = self.record("memory", &measured, client);
            r.add_note("no load balancer in this mode");
            return Ok(r);
        };
        let pids = lb.pids()?;
        let opts = ClientOpts::new(self.certs.roots(), "h1.lb.test", self.mode.h1_target()).alpn(&["http/1.1"]).timeout(Duration::from_secs(10));
        let wanted = self.sizes.memory_conns;
        let measured = self.measure(|| {
            let before = usage_of(&pids)?;
            let (held, failures, after) = in_netns(self.topo.cli(), || {
                let deadline = Instant::now() + CLIENT_TIMEOUT;
                let (mut held, mut failures) = (Vec::with_capacity(wanted), 0u64);
                while held.len() + (failures as usize) < wanted && Instant::now() < deadline && !interrupt::requested() {
                    // A handshake completes only once the load balancer has connected to the
                    // server and forwarded the hello: both of its sockets exist when this
                    // returns.
                    match TlsClient::connect(&opts) {
                        Ok(conn) => held.push(conn),
                        Err(_) => failures += 1,
                    }
                }
                // Let the load balancer settle (relay tasks spawned, buffers touched).
                std::thread::sleep(Duration::from_millis(500));
                let after = usage_of(&pids)?;
                Ok((held.len(), failures, after))
            })?;
            Ok((before, held, failures, after))
        })?;
        let (before, held, failures, after) = measured.value;
        if held == 0 {
            anyhow::bail!("none of the {wanted} TLS connections was established ({failures} failed)");
        }
        let mut r = self.record("memory", &measured, client);
        // Connections never attempted before the deadline count as failed too.
        r.failures = failures.max((wanted - held) as u64);
        r.connections = Some(held as u64);
        let grew_kib = after.rss_kib as f64 - before.rss_kib as f64;
        r.mem_bytes_per_conn = Some(grew_kib * 1024.0 / held as f64);
        r.lb_fds_per_conn = Some((after.fds as f64 - before.fds as f64) / held as f64);
        r.add_note("resident memory of the load balancer's processes only; kernel socket and pipe buffers are not counted");
        Ok(r)
    }

    /// Runs `f` between two samples of the counters (and of our daemon's XDP and hand-off
    /// counters).
    fn measure<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<Measured<T>> {
        let pids = self.lb.map(Lb::pids).transpose()?;
        let daemon = self.lb.and_then(Lb::daemon);
        let stats_before = daemon.and_then(daemon_stats);
        let before = Sample::now(pids.as_deref())?;
        let started = Instant::now();
        let value = f()?;
        let secs = started.elapsed().as_secs_f64();
        let after = Sample::now(pids.as_deref())?;
        let stats_after = daemon.and_then(daemon_stats);
        let delta_of = |object: &str| {
            let before = stats_before.as_ref()?;
            let after = numbers_of(stats_after.as_ref()?, object)?;
            // An object the daemon had not published yet (no hand-off so far) is all zeros.
            let before = numbers_of(before, object).unwrap_or_default();
            Some(counters_delta(&before, &after))
        };
        Ok(Measured { value, delta: before.until(&after), secs, xdp: delta_of("counters"), handoff: delta_of("handoff") })
    }

    fn record<T>(&self, workload: &str, m: &Measured<T>, client: String) -> Record {
        let mut r = self.blank(workload);
        r.lb_cpu_s = m.delta.lb_cpu_s;
        r.host_busy_s = m.delta.host_busy_s;
        r.host_softirq_s = m.delta.host_softirq_s;
        r.secs = m.secs;
        r.xdp_spliced_bytes = m.xdp.as_ref().and_then(|c| c.get(SPLICED_BYTES).copied());
        r.xdp_counters = m.xdp.clone();
        r.handoff_stalls = m.handoff.as_ref().and_then(|h| h.get(STALLS).copied());
        if r.handoff_stalls.is_some_and(|s| s > 0) {
            // The daemon logs each stall with its flow and sequence numbers: kept with the
            // result, since the daemon's directory goes with it.
            if let Some(daemon) = self.lb.and_then(Lb::daemon) {
                let log = std::fs::read_to_string(daemon.log_path()).unwrap_or_default();
                let stalls: Vec<&str> = log.lines().filter(|l| l.contains("flow stalled")).take(5).collect();
                r.add_note(&format!("stalls logged: {}", stalls.join(" | ")));
            }
        }
        r.handoff = m.handoff.clone();
        r.client = client;
        let bulk = workload.starts_with("bulk");
        let expects_handoff = self.mode == Mode::Xdp || (self.mode == Mode::Auto && bulk);
        if expects_handoff && r.xdp_spliced_bytes.unwrap_or(0) == 0 {
            r.add_note("no kernel hand-off happened: the daemon relayed every byte itself");
        }
        r
    }

    /// A record of this mode and `workload` with nothing measured yet: the start of every
    /// record, and what a workload that could not run leaves (see [`Record::failed`]).
    pub fn blank(&self, workload: &str) -> Record {
        let mut r = Record {
            veth: self.topo.veth().name().to_string(),
            mode: self.mode.name().to_string(),
            workload: workload.to_string(),
            round: self.round,
            status: "ok".to_string(),
            host_busy_before: self.host_busy_before,
            lb: self.lb.map(describe),
            lb_workers: self.lb.is_some().then_some(self.lb_workers),
            xdp_ifaces: self.mode.xdp_ifaces(),
            xdp_mode: self.mode.is_ours().then(|| self.xdp_mode.clone()),
            xdp_attached: self.lb.and_then(Lb::daemon).map(|d| d.runtime()["xdp"].clone()),
            started_utc: self.started_utc.clone(),
            ..Record::default()
        };
        if self.host_busy_before >= super::usage::QUIET {
            r.add_note(&format!("the host was {:.0}% busy with other work before this mode started", self.host_busy_before * 100.0));
        }
        r
    }

    /// A bulk download may take as long as at 4 MiB/s (30 s at least), and go no slower than
    /// [`BULK_FLOOR`]; the workload's downloads, that long each and 10 s.
    fn bulk_limits(&self) -> Limits {
        let each = Duration::from_secs((self.nginx.big_len() >> 22).max(30));
        Limits { each, floor: BULK_FLOOR, whole: each * self.sizes.bulk_downloads as u32 + Duration::from_secs(10) }
    }

    /// Throughput and CPU per GB from `bytes` moved in `secs` of transfer time.
    fn per_gb(&self, r: &mut Record, bytes: u64, secs: f64) {
        r.bytes = Some(bytes);
        r.secs = secs;
        if bytes == 0 || secs <= 0.0 {
            return;
        }
        let gb = bytes as f64 / BYTES_PER_GB;
        r.gbit_s = Some(bytes as f64 * 8.0 / secs / 1e9);
        r.lb_cpu_s_per_gb = r.lb_cpu_s.map(|s| s / gb);
        r.host_cpu_s_per_gb = Some(r.host_busy_s / gb);
    }
}

/// Transfers as a failure report reads them: code, bytes of `expected`, time; the first few.
fn described(transfers: &[curl::Transfer], expected: u64) -> String {
    let mut parts: Vec<String> = transfers.iter().take(3).map(|t| format!("HTTP {}, {} of {expected} bytes in {:.1} s", t.code, t.bytes, t.total_s)).collect();
    if transfers.len() > 3 {
        parts.push(format!("… ({} in all)", transfers.len()));
    }
    parts.join("; ")
}

/// What ran as the load balancer: `lb-user`, or the peer's own version line.
fn describe(lb: &Lb) -> String {
    match lb {
        Lb::Ours(_) => "lb-user".to_string(),
        Lb::Peer(p) => p.version().to_string(),
    }
}

struct Measured<T> {
    value: T,
    delta: super::usage::Delta,
    secs: f64,
    xdp: Option<BTreeMap<String, u64>>,
    handoff: Option<BTreeMap<String, u64>>,
}

#[cfg(test)]
mod tests {
    use super::blocks;

    #[test]
    fn blocks_split_the_samples_evenly_and_lose_none() {
        assert_eq!(blocks(1000, 10).collect::<Vec<_>>(), vec![100; 10]);
        assert_eq!(blocks(23, 10).collect::<Vec<_>>(), vec![3, 3, 3, 2, 2, 2, 2, 2, 2, 2]);
        assert_eq!(blocks(3, 10).collect::<Vec<_>>(), vec![1, 1, 1]);
        assert_eq!(blocks(0, 10).count(), 0);
    }
}
