//! A process's resource use as `/proc` reports it: open file descriptors and resident memory,
//! to check that a daemon returns to its baseline after hostile or faulty traffic, and the CPU
//! time it used (for the benchmark).
// Unsafe here: sysconf(_SC_CLK_TCK) to turn /proc ticks into seconds.
#![allow(unsafe_code)]

use std::fs;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Open descriptors and resident set size of one process at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Entries of `/proc/<pid>/fd`.
    pub fds: usize,
    /// `VmRSS` of `/proc/<pid>/status`, in KiB.
    pub rss_kib: u64,
}

/// The number of open file descriptors of `pid`.
pub fn open_fds(pid: u32) -> Result<usize> {
    let dir = format!("/proc/{pid}/fd");
    Ok(fs::read_dir(&dir).with_context(|| format!("listing {dir}"))?.count())
}

/// The resident set size of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in {path}"))
}

pub fn usage(pid: u32) -> Result<Usage> {
    Ok(Usage { fds: open_fds(pid)?, rss_kib: rss_kib(pid)? })
}

/// Polls `pid` (every 50 ms, up to `timeout`) until its descriptors are back to `fds`.
/// Returns the usage then and how long it took, or the last usage seen on timeout.
pub fn wait_for_fds(pid: u32, fds: usize, timeout: Duration) -> Result<(Usage, Option<Duration>)> {
    let started = Instant::now();
    loop {
        let now = usage(pid)?;
        if now.fds == fds {
            return Ok((now, Some(started.elapsed())));
        }
        if started.elapsed() >= timeout {
            return Ok((now, None));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// CPU time (user + system, every thread) `pid` has used so far, in seconds, from
/// `/proc/<pid>/stat` (clock-tick resolution, 10 ms on most systems).
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces: fields are counted
    // after the last ')'. There, index 0 is field 3 (state); utime and stime are fields 14, 15.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).with_context(|| format!("no ')' in {path}"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64> { fields.get(i).and_then(|f| f.parse().ok()).with_context(|| format!("field {} of {path}", i + 3)) };
    Ok((ticks(11)? + ticks(12)?) as f64 / clock_ticks_per_second())
}

/// `sysconf(_SC_CLK_TCK)`: the unit of `/proc` CPU times.
pub fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}
