//! Counters read before and after a workload: the load balancer's CPU time and memory, the
//! host's CPU time by kind, a namespace's TCP connection openings, and our daemon's XDP and
//! hand-off counters.
//!
//! The load balancer's CPU time (utime + stime of every thread of its processes: our daemon's
//! one process, or a peer's process tree) is what it costs in its own processes, read the same
//! way for ours and for the peers. The kernel work of its sockets, of forwarding and of the XDP
//! program runs largely in softirq context, charged to whichever process was interrupted: it
//! cannot be pinned on the load balancer, so the host's totals are recorded beside it
//! (everything runs on this host: clients, nginx, the load balancer) and compared between
//! modes instead.

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::daemon::Daemon;
use crate::netns::run_in;
use crate::proc::run_ok;
use crate::procfs;

/// One reading of every counter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// The load balancer's CPU seconds (none in `direct`).
    pub lb_cpu_s: Option<f64>,
    /// Host CPU seconds spent busy (everything but idle and iowait), and in softirq.
    pub host_busy_s: f64,
    pub host_softirq_s: f64,
}

/// What changed between two samples.
#[derive(Debug, Clone, Copy, Default)]
pub struct Delta {
    pub lb_cpu_s: Option<f64>,
    pub host_busy_s: f64,
    pub host_softirq_s: f64,
}

impl Sample {
    /// Reads the counters; `lb_pids` are the load balancer's processes when one runs.
    pub fn now(lb_pids: Option<&[u32]>) -> Result<Self> {
        let (host_busy_s, host_softirq_s) = host_cpu()?;
        let lb_cpu_s = lb_pids.map(|pids| pids.iter().map(|p| procfs::cpu_seconds(*p)).sum::<Result<f64>>()).transpose()?;
        Ok(Self { lb_cpu_s, host_busy_s, host_softirq_s })
    }

    pub fn until(&self, later: &Sample) -> Delta {
        Delta {
            lb_cpu_s: later.lb_cpu_s.zip(self.lb_cpu_s).map(|(b, a)| b - a),
            host_busy_s: later.host_busy_s - self.host_busy_s,
            host_softirq_s: later.host_softirq_s - self.host_softirq_s,
        }
    }
}

/// The share of the host's CPUs (0 to 1) busy below which a step may start.
pub const QUIET: f64 = 0.25;

/// Waits (up to `max`) until the host's CPUs were less than [`QUIET`] busy over a second:
/// work left from the previous step (connections closing, a daemon stopping, writeback)
/// would otherwise be charged to the next. Returns the last busy share seen, so that a
/// result measured on a host busy with something else (another build, other tests) says so.
pub fn wait_quiet(max: Duration) -> Result<f64> {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    let deadline = std::time::Instant::now() + max;
    loop {
        let before = Sample::now(None)?;
        std::thread::sleep(Duration::from_secs(1));
        let share = before.until(&Sample::now(None)?).host_busy_s / cpus;
        if share < QUIET || std::time::Instant::now() >= deadline {
            return Ok(share);
        }
    }
}

/// (busy, softirq) seconds of every CPU, from the first line of `/proc/stat`:
/// `cpu user nice system idle iowait irq softirq steal guest guest_nice` in clock ticks.
fn host_cpu() -> Result<(f64, f64)> {
    let stat = fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    parse_host_cpu(&stat, procfs::clock_ticks_per_second())
}

pub fn parse_host_cpu(stat: &str, hz: f64) -> Result<(f64, f64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu ")).context("no cpu line in /proc/stat")?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    let field = |i: usize| v.get(i).copied().unwrap_or(0);
    // guest and guest_nice are already counted in user and nice.
    let busy = field(0) + field(1) + field(2) + field(5) + field(6) + field(7);
    Ok((busy as f64 / hz, field(6) as f64 / hz))
}

/// TCP active openings (connect calls that sent a SYN) counted in namespace `ns`, from its
/// `/proc/net/snmp`: the number of connections a client really made.
pub fn tcp_active_opens(ns: &str) -> Result<u64> {
    let out = run_in(ns, &["cat", "/proc/net/snmp"])?;
    parse_active_opens(&String::from_utf8_lossy(&out.stdout))
}

/// `Tcp:` comes as a header line of names and a line of values.
pub fn parse_active_opens(snmp: &str) -> Result<u64> {
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next(), tcp.next());
    let (names, values) = names.zip(values).context("no Tcp lines in /proc/net/snmp")?;
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "ActiveOpens")
        .and_then(|(_, v)| v.parse().ok())
        .context("no Tcp ActiveOpens in /proc/net/snmp")
}

/// `lb-user stats` as JSON; `None` when it cannot be read (no XDP attached).
pub fn daemon_stats(daemon: &Daemon) -> Option<serde_json::Value> {
    let out = run_ok(Command::new(crate::lb_user_bin()).arg("stats").arg("--data-dir").arg(daemon.data_dir()), Duration::from_secs(10)).ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// The numbers of one object of `lb-user stats` (`counters`: the XDP program's; `handoff`:
/// the daemon's hand-off statistics), whatever names this daemon has.
pub fn numbers_of(stats: &serde_json::Value, object: &str) -> Option<BTreeMap<String, u64>> {
    let fields = stats.get(object)?.as_object()?;
    Some(fields.iter().filter_map(|(k, v)| Some((k.clone(), v.as_u64()?))).collect())
}

/// `root` and every process descended from it (nginx's master and its workers), from the
/// parent pids in `/proc/<pid>/stat`.
pub fn process_tree(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(ppid) = fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|stat| parent_of(&stat)) {
                parents.push((pid, ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    tree
}

/// The parent pid in a `/proc/<pid>/stat` line: the second field after the command name
/// (which is in parentheses and may hold anything).
pub fn parent_of(stat: &str) -> Option<u32> {
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `pid` runs: it exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(')')?.1.split_whitespace().next()?.to_string();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// Resident memory and descriptors of several processes, summed.
pub fn usage_of(pids: &[u32]) -> Result<procfs::Usage> {
    let mut total = procfs::Usage { fds: 0, rss_kib: 0 };
    for pid in pids {
        let u = procfs::usage(*pid)?;
        total.fds += u.fds;
        total.rss_kib += u.rss_kib;
    }
    Ok(total)
}

/// `after − before` for every counter of `after` (one missing from `before` was 0).
pub fn counters_delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, a)| {
            let b = before.get(k).copied().unwrap_or(0);
            (k.clone(), a.saturating_sub(b))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_cpu_counts_busy_and_softirq_ticks() {
        let stat = "cpu  100 10 50 1000 20 5 15 0 0 0\ncpu0 1 2 3\n";
        let (busy, softirq) = parse_host_cpu(stat, 100.0).unwrap();
        assert!((busy - 1.8).abs() < 1e-9, "{busy}");
        assert!((softirq - 0.15).abs() < 1e-9, "{softirq}");
    }

    #[test]
    fn counters_missing_before_count_from_zero() {
        let before = BTreeMap::from([("a".to_string(), 5)]);
        let after = BTreeMap::from([("a".to_string(), 7), ("stalls".to_string(), 2)]);
        let delta = counters_delta(&before, &after);
        assert_eq!(delta.get("a"), Some(&2));
        assert_eq!(delta.get("stalls"), Some(&2));
    }

    #[test]
    fn parent_pid_follows_the_command_name() {
        assert_eq!(parent_of("42 (nginx: worker) S 41 42 1 0"), Some(41));
        assert_eq!(parent_of("7 (a) b) R 1 7"), Some(1));
        assert_eq!(parent_of("garbage"), None);
    }

    #[test]
    fn active_opens_are_read_by_name() {
        let snmp = "Ip: Forwarding\nIp: 1\nTcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens\nTcp: 1 200 120000 -1 512 3\n";
        assert_eq!(parse_active_opens(snmp).unwrap(), 512);
    }
}
