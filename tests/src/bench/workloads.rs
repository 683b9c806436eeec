//! The workloads, each measured in one mode: bulk transfer over TLS (HTTP/1.1 with curl, and
//! HTTP/2 with h2load), new TLS connections per second (h2load, one request per connection),
//! connection latency (curl, sequential fresh connections, so that no queue inflates it) and
//! the daemon's memory per idle TLS connection (the kit's rustls client holding them open).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::mode::Mode;
use super::nginx::{Nginx, BIG_PATH, CLOSE_PATH};
use super::report::Record;
use super::usage::{counters_delta, tcp_active_opens, xdp_counters, Sample};
use super::{curl, h2load, interrupt, stats};
use crate::certs::Certs;
use crate::client::{ClientOpts, TlsClient};
use crate::daemon::Daemon;
use crate::netns::in_netns;
use crate::{procfs, Topology};

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
    pub const DEFAULT: Sizes = Sizes {
        bulk_downloads: 4,
        conns: 3000,
        conns_clients: 16,
        latency_samples: 1000,
        memory_conns: 1000,
    };
    pub const QUICK: Sizes = Sizes {
        bulk_downloads: 3,
        conns: 600,
        conns_clients: 8,
        latency_samples: 200,
        memory_conns: 200,
    };
}

/// The XDP counter of bytes moved by the hand-off (`lb-user stats`), once the daemon has it.
pub const SPLICED_BYTES: &str = "spliced_bytes";

pub const WORKLOADS: [&str; 5] = ["bulk-h1", "bulk-h2", "conns", "latency", "memory"];

/// Everything a workload needs: the world, and this mode's load balancer (if any).
pub struct Run<'a> {
    pub topo: &'a Topology,
    pub certs: &'a Certs,
    pub nginx: &'a Nginx,
    pub sizes: Sizes,
    pub mode: Mode,
    pub daemon: Option<&'a Daemon>,
    pub xdp_mode: String,
    pub started_utc: String,
    pub round: u32,
    /// Share of the host's CPUs busy just before the mode started.
    pub host_busy_before: f64,
}

/// Generous bounds: a run that exceeds them is broken, not slow.
const BULK_TIMEOUT: Duration = Duration::from_secs(300);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
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
            other => anyhow::bail!("unknown workload {other:?} ({})", WORKLOADS.join(", ")),
        }
        .with_context(|| format!("workload {name} in mode {}", self.mode))
    }

    /// One small request in each farm, so that a broken setup fails before any measurement.
    pub fn check_path(&self) -> Result<()> {
        for (flag, target) in [
            ("--http1.1", self.mode.h1_target()),
            ("--http2", self.mode.h2_target()),
        ] {
            let t = curl::transfers(
                self.topo.cli(),
                target,
                CLOSE_PATH,
                1,
                &self.certs.ca_pem(),
                &[flag],
                CLIENT_TIMEOUT,
            )?;
            if t.iter().any(|t| t.code != 200) {
                anyhow::bail!(
                    "curl {flag} https://{target}{CLOSE_PATH} in mode {}: {t:?}",
                    self.mode
                );
            }
        }
        Ok(())
    }

    fn bulk_h1(&self) -> Result<Record> {
        let n = self.sizes.bulk_downloads;
        let measured = self.measure(|| {
            curl::transfers(
                self.topo.cli(),
                self.mode.h1_target(),
                BIG_PATH,
                n,
                &self.certs.ca_pem(),
                &["--http1.1"],
                BULK_TIMEOUT,
            )
        })?;
        let transfers = &measured.value;
        let ok: Vec<_> = transfers
            .iter()
            .filter(|t| t.code == 200 && t.bytes == self.nginx.big_len())
            .collect();
        let bytes: u64 = ok.iter().map(|t| t.bytes).sum();
        let secs: f64 = ok.iter().map(|t| t.total_s).sum();
        let mut r = self.record(
            "bulk-h1",
            &measured,
            format!(
                "curl --http1.1 https://{}{BIG_PATH}?[1-{n}]",
                self.mode.h1_target()
            ),
        );
        r.failures = (n - ok.len()) as u64;
        self.per_gb(&mut r, bytes, secs);
        Ok(r)
    }

    fn bulk_h2(&self) -> Result<Record> {
        let n = self.sizes.bulk_downloads;
        let url = format!("https://{}{BIG_PATH}", self.mode.h2_target());
        let args = vec![
            "-n".to_string(),
            n.to_string(),
            "-c1".into(),
            "-m1".into(),
            url.clone(),
        ];
        let measured = self.measure(|| h2load::run(self.topo.cli(), &args, BULK_TIMEOUT))?;
        let report = measured.value;
        let mut r = self.record("bulk-h2", &measured, format!("h2load {}", args.join(" ")));
        r.failures = report.failed;
        self.per_gb(&mut r, report.data_bytes, report.secs);
        Ok(r)
    }

    fn conns(&self) -> Result<Record> {
        let (n, c) = (self.sizes.conns, self.sizes.conns_clients);
        let url = format!("https://{}{CLOSE_PATH}", self.mode.h1_target());
        let args = vec![
            "--h1".to_string(),
            "-n".into(),
            n.to_string(),
            "-c".into(),
            c.to_string(),
            url,
        ];
        let opens_before = tcp_active_opens(self.topo.cli())?;
        let measured = self.measure(|| h2load::run(self.topo.cli(), &args, CLIENT_TIMEOUT))?;
        let connections = tcp_active_opens(self.topo.cli())? - opens_before;
        let report = measured.value;
        let mut r = self.record("conns", &measured, format!("h2load {}", args.join(" ")));
        r.failures = report.failed;
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

    fn latency(&self) -> Result<Record> {
        let n = self.sizes.latency_samples;
        let target = self.mode.h1_target();
        let flags = ["--http1.1", "--no-sessionid"];
        let measured = self.measure(|| {
            curl::transfers(
                self.topo.cli(),
                target,
                CLOSE_PATH,
                n,
                &self.certs.ca_pem(),
                &flags,
                CLIENT_TIMEOUT,
            )
        })?;
        let ok: Vec<_> = measured.value.iter().filter(|t| t.code == 200).collect();
        let handshakes: Vec<f64> = ok.iter().map(|t| t.appconnect_s * 1e3).collect();
        let first_bytes: Vec<f64> = ok.iter().map(|t| t.starttransfer_s * 1e3).collect();
        let mut r = self.record(
            "latency",
            &measured,
            format!(
                "curl {} https://{target}{CLOSE_PATH}?[1-{n}]",
                flags.join(" ")
            ),
        );
        r.failures = (n - ok.len()) as u64;
        r.connections = Some(ok.len() as u64);
        r.p99_ms = stats::quantile(&handshakes, 0.99);
        r.p50_ms = stats::quantile(&handshakes, 0.5);
        r.p99_ttfb_ms = stats::quantile(&first_bytes, 0.99);
        Ok(r)
    }

    fn memory(&self) -> Result<Record> {
        let client = format!(
            "{} rustls TLS connections held idle",
            self.sizes.memory_conns
        );
        let Some(daemon) = self.daemon else {
            let measured = self.measure(|| Ok(()))?;
            let mut r = self.record("memory", &measured, client);
            r.add_note("no load balancer in this mode");
            return Ok(r);
        };
        let pid = daemon.pid()?;
        let opts = ClientOpts::new(self.certs.roots(), "h1.lb.test", self.mode.h1_target())
            .alpn(&["http/1.1"])
            .timeout(Duration::from_secs(10));
        let wanted = self.sizes.memory_conns;
        let measured = self.measure(|| {
            let before = procfs::usage(pid)?;
            let (held, failures, after) = in_netns(self.topo.cli(), || {
                let deadline = Instant::now() + Duration::from_secs(120);
                let (mut held, mut failures) = (Vec::with_capacity(wanted), 0u64);
                while held.len() + (failures as usize) < wanted
                    && Instant::now() < deadline
                    && !interrupt::requested()
                {
                    // A handshake completes only once the daemon has connected to the server
                    // and forwarded the hello: both of its sockets exist when this returns.
                    match TlsClient::connect(&opts) {
                        Ok(conn) => held.push(conn),
                        Err(_) => failures += 1,
                    }
                }
                // Let the daemon settle (relay tasks spawned, buffers touched).
                std::thread::sleep(Duration::from_millis(500));
                let after = procfs::usage(pid)?;
                Ok((held.len(), failures, after))
            })?;
            Ok((before, held, failures, after))
        })?;
        let (before, held, failures, after) = measured.value;
        let mut r = self.record("memory", &measured, client);
        r.failures = failures;
        r.connections = Some(held as u64);
        if held > 0 {
            let grew_kib = after.rss_kib as f64 - before.rss_kib as f64;
            r.mem_bytes_per_conn = Some(grew_kib * 1024.0 / held as f64);
            r.lb_fds_per_conn = Some((after.fds as f64 - before.fds as f64) / held as f64);
        }
        r.add_note(
            "resident memory of the daemon only; kernel socket and pipe buffers are not counted",
        );
        Ok(r)
    }

    /// Runs `f` between two samples of the counters (and of the XDP program's counters).
    fn measure<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<Measured<T>> {
        let pid = self.daemon.map(Daemon::pid).transpose()?;
        let xdp_before = self.daemon.and_then(xdp_counters);
        let before = Sample::now(pid)?;
        let started = Instant::now();
        let value = f()?;
        let secs = started.elapsed().as_secs_f64();
        let after = Sample::now(pid)?;
        let xdp_after = self.daemon.and_then(xdp_counters);
        let xdp = xdp_before
            .zip(xdp_after)
            .map(|(b, a)| counters_delta(&b, &a));
        Ok(Measured {
            value,
            delta: before.until(&after),
            secs,
            xdp,
        })
    }

    fn record<T>(&self, workload: &str, m: &Measured<T>, client: String) -> Record {
        let mut r = Record {
            mode: self.mode.name().to_string(),
            workload: workload.to_string(),
            round: self.round,
            host_busy_before: self.host_busy_before,
            lb_cpu_s: m.delta.lb_cpu_s,
            host_busy_s: m.delta.host_busy_s,
            host_softirq_s: m.delta.host_softirq_s,
            secs: m.secs,
            xdp_spliced_bytes: m.xdp.as_ref().and_then(|c| c.get(SPLICED_BYTES).copied()),
            xdp_counters: m.xdp.clone(),
            xdp_ifaces: self.mode.xdp_ifaces(),
            xdp_mode: (self.mode != Mode::Direct).then(|| self.xdp_mode.clone()),
            xdp_attached: self.daemon.map(|d| d.runtime()["xdp"].clone()),
            client,
            started_utc: self.started_utc.clone(),
            ..Record::default()
        };
        if self.host_busy_before >= super::usage::QUIET {
            r.add_note(&format!(
                "the host was {:.0}% busy with other work before this mode started",
                self.host_busy_before * 100.0
            ));
        }
        if self.mode == Mode::Xdp && r.xdp_spliced_bytes.unwrap_or(0) == 0 {
            r.add_note("no XDP hand-off happened: the daemon relayed every byte itself");
        }
        r
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

struct Measured<T> {
    value: T,
    delta: super::usage::Delta,
    secs: f64,
    xdp: Option<BTreeMap<String, u64>>,
}
