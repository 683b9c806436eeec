//! One mode on one topology: start its load balancer, check the path, run the workloads, and
//! record whatever happens. A mode or workload that fails leaves records that say so (never
//! a figure); when a load balancer stops answering, its remaining workloads are recorded as
//! failed instead of each waiting for its own timeout, and the run goes on to the next mode.

use anyhow::Result;

use super::interrupt;
use super::mode::{Lb, Mode};
use super::nginx::Nginx;
use super::report::Record;
use super::workloads::{Run, Sizes};
use crate::certs::Certs;
use crate::Topology;

/// What every mode on one topology shares.
pub struct Bench<'a> {
    pub topo: &'a Topology,
    pub certs: &'a Certs,
    pub nginx: &'a Nginx,
    pub sizes: Sizes,
    pub workloads: &'a [String],
    pub xdp_mode: &'a str,
    pub lb_workers: usize,
    pub started_utc: &'a str,
}

impl Bench<'_> {
    /// Runs every workload of `mode` in `round`, appending one record per workload to
    /// `records`. Returns whether all of them ran cleanly (no failed workload, no error);
    /// fails only when the run was interrupted.
    pub fn run_mode(&self, mode: Mode, round: u32, host_busy_before: f64, records: &mut Vec<Record>) -> Result<bool> {
        let lb = mode.start_lb(self.topo, self.xdp_mode, self.lb_workers);
        let (lb, start_error) = match lb {
            Ok(lb) => (lb, None),
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        let run = Run {
            topo: self.topo,
            certs: self.certs,
            nginx: self.nginx,
            sizes: self.sizes,
            mode,
            lb: lb.as_ref(),
            xdp_mode: self.xdp_mode.to_string(),
            lb_workers: self.lb_workers,
            started_utc: self.started_utc.to_string(),
            round,
            host_busy_before,
        };
        let veth = self.topo.veth().name();
        let failed = |records: &mut Vec<Record>, from: usize, why: &str| {
            for workload in &self.workloads[from..] {
                records.push(run.blank(workload).failed(why));
            }
            eprintln!("lb-bench: {veth} round {round} {mode}: FAILED: {why}");
        };
        if let Some(e) = start_error {
            interrupt::check()?;
            failed(records, 0, &format!("did not start: {e}"));
            return Ok(false);
        }
        if let Err(e) = run.check_path() {
            interrupt::check()?;
            failed(records, 0, &format!("no answer through the load balancer: {e:#}"));
            print_log(lb.as_ref(), &self.nginx.error_log_tail());
            return Ok(false);
        }
        let mut clean = true;
        for (i, workload) in self.workloads.iter().enumerate() {
            interrupt::check()?;
            let record = match run.workload(workload) {
                Ok(r) => r,
                Err(e) => {
                    interrupt::check()?;
                    run.blank(workload).failed(&format!("{e:#}"))
                }
            };
            eprintln!("lb-bench: {veth:<7} round {round} {mode:<12} {workload:<8} {}", summary(&record));
            let trouble = !record.is_ok() || record.failures > 0;
            records.push(record);
            if !trouble {
                continue;
            }
            clean = false;
            // Is the load balancer still there and answering? If not, the workloads left
            // would each only wait for their own timeouts.
            let alive = lb.as_ref().is_none_or(Lb::is_alive);
            let answer = if alive { run.check_path().err().map(|e| format!("{e:#}")) } else { Some("its process exited".to_string()) };
            if let Some(why) = answer {
                failed(records, i + 1, &format!("skipped: the load balancer stopped answering after {workload}: {why}"));
                break;
            }
        }
        if !clean {
            print_log(lb.as_ref(), &self.nginx.error_log_tail());
        }
        Ok(clean)
    }
}

fn print_log(lb: Option<&Lb>, nginx_errors: &str) {
    if let Some(lb) = lb {
        eprintln!("--- load balancer log ---\n{}\n--- end of load balancer log ---", lb.log_excerpt());
    }
    if !nginx_errors.trim().is_empty() {
        eprintln!("--- nginx (servers) error log ---\n{nginx_errors}\n--- end ---");
    }
}

/// One line per record, as the run goes.
pub fn summary(r: &Record) -> String {
    if let Some(e) = &r.error {
        return format!("FAILED: {e}");
    }
    let mut parts = Vec::new();
    let mut add = |name: &str, v: Option<f64>| {
        if let Some(v) = v {
            parts.push(format!("{name} {v:.3}"));
        }
    };
    add("Gbit/s", r.gbit_s);
    add("conns/s", r.conns_s);
    add("p99 ms", r.p99_ms);
    add("LB CPU s/GB", r.lb_cpu_s_per_gb);
    add("LB CPU s/1k conns", r.lb_cpu_s_per_1k_conns);
    add("bytes/conn", r.mem_bytes_per_conn);
    add("fds/conn", r.lb_fds_per_conn);
    if r.failures > 0 {
        parts.push(format!("{} FAILED", r.failures));
    }
    if let Some(s) = r.handoff_stalls.filter(|s| *s > 0) {
        parts.push(format!("{s} hand-off stalls"));
    }
    if let Some(b) = r.xdp_spliced_bytes.filter(|b| *b > 0) {
        parts.push(format!("kernel hand-off moved {b} bytes"));
    }
    if let Some(note) = &r.note {
        parts.push(format!("({note})"));
    }
    parts.join(", ")
}

/// Records for every (mode, workload) of a topology that could not be set up at all.
pub fn failed_setup(veth: &str, modes: &[Mode], workloads: &[String], round: u32, started_utc: &str, why: &str) -> Vec<Record> {
    let mut out = Vec::new();
    for mode in modes {
        for workload in workloads {
            out.push(
                Record {
                    veth: veth.to_string(),
                    mode: mode.name().to_string(),
                    workload: workload.clone(),
                    round,
                    started_utc: started_utc.to_string(),
                    ..Record::default()
                }
                .failed(why),
            );
        }
    }
    out
}
