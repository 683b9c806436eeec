//! What a run produces: one [`Record`] per (veth kind, mode, workload, round), written as a
//! JSON array to `target/bench/<UTC timestamp>.json`, and the medians over rounds that the
//! table (`table`) and the targets (`targets`) are made of.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::stats::median;

/// One workload's result in one mode on one kind of veth; `None` (JSON `null`) where a field
/// does not apply or was not measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
// Files of older runs lack the fields added since: read as absent.
#[serde(default)]
pub struct Record {
    /// `default` (kernel defaults: tx checksum offload and TSO on, GRO off) or `wire` (tx
    /// checksum offload off, GRO on).
    pub veth: String,
    pub mode: String,
    pub workload: String,
    /// Which round of the run (each round runs every mode, in a rotated order).
    pub round: u32,
    /// `ok`, or `failed`: the workload did not run to the end (the load balancer did not
    /// start, did not answer, or the client failed); its figures are then all `null`, and
    /// `error` says why.
    pub status: String,
    pub error: Option<String>,
    /// What ran as the load balancer: `lb-user`, or the peer's version line.
    pub lb: Option<String>,
    /// The load balancer's threads (HAProxy `nbthread`, lb-user `--worker-threads`) or
    /// worker processes (nginx `worker_processes`), `--lb-workers`.
    pub lb_workers: Option<usize>,
    /// Response bytes (bodies) × 8 / wall time of the transfers.
    pub gbit_s: Option<f64>,
    /// New TLS connections per second (one request each).
    pub conns_s: Option<f64>,
    /// `pinned`: `conns_s` with the splice map as found, and the API's 99th percentile
    /// (sequential GETs beside the connection load) with [`super::pinned::FLOWS`] handed-off
    /// flows in the map and without.
    pub conns_s_empty_map: Option<f64>,
    pub api_p99_ms: Option<f64>,
    pub api_p99_ms_empty_map: Option<f64>,
    pub pinned_flows: Option<u64>,
    /// 99th and 50th percentile of the time to a completed TCP + TLS handshake.
    pub p99_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    /// 99th percentile of the time to the first response byte on a new connection.
    pub p99_ttfb_ms: Option<f64>,
    /// `direct`'s `p50_ms`, `p99_ms` and `p99_ttfb_ms`, measured in the same minutes as this
    /// mode's: the latency workload alternates blocks of connections through the mode with
    /// blocks straight to the server, so that the host's slow moments (a shared 2-core host:
    /// a round's p99 moves by milliseconds) fall on both. Absent in `direct`'s own records
    /// and in runs before 2026-12-02.
    pub direct_p50_ms: Option<f64>,
    pub direct_p99_ms: Option<f64>,
    pub direct_p99_ttfb_ms: Option<f64>,
    /// The load balancer's own CPU seconds (user + system of its processes: our daemon, or
    /// the peer's) per GB (10^9 bytes) moved.
    pub lb_cpu_s_per_gb: Option<f64>,
    /// The load balancer's own CPU seconds per 1,000 new connections.
    pub lb_cpu_s_per_1k_conns: Option<f64>,
    /// Growth of the load balancer's resident memory per idle connection held through it.
    pub mem_bytes_per_conn: Option<f64>,
    /// Growth of the load balancer's open descriptors per idle connection (for our daemon:
    /// 2 with copy, 6 with splice's two pipes: shows which relay really ran).
    pub lb_fds_per_conn: Option<f64>,
    /// The whole host's busy CPU seconds per GB / per 1,000 connections: clients, nginx and
    /// the load balancer together, softirq included. Minus `direct`'s, it bounds what the load
    /// balancer costs in the kernel too.
    pub host_cpu_s_per_gb: Option<f64>,
    pub host_cpu_s_per_1k_conns: Option<f64>,
    /// The raw measurements behind the ratios.
    pub lb_cpu_s: Option<f64>,
    pub host_busy_s: f64,
    pub host_softirq_s: f64,
    /// Share of the host's CPUs (0 to 1) busy just before this mode started: above 0.25,
    /// something outside the benchmark was running and the numbers are suspect.
    pub host_busy_before: f64,
    pub bytes: Option<u64>,
    pub connections: Option<u64>,
    pub secs: f64,
    /// Requests, transfers or connections that failed or came short (given up after a
    /// stall included).
    pub failures: u64,
    /// Flows our daemon counted as stalled after the hand-off during the workload (the growth
    /// of `lb-user stats`'s `handoff.stalls`); `None` when the daemon does not report it.
    pub handoff_stalls: Option<u64>,
    /// Every number of `lb-user stats`'s `handoff` object, its growth during the workload.
    pub handoff: Option<BTreeMap<String, u64>>,
    /// Bytes the XDP program moved between the two connections by itself during the
    /// workload (its `spliced_bytes` counter: the hand-off); `None` when the daemon has no
    /// such counter yet.
    pub xdp_spliced_bytes: Option<u64>,
    /// Every XDP counter's growth during the workload, as `lb-user stats` names them.
    pub xdp_counters: Option<BTreeMap<String, u64>>,
    /// The load balancer's interfaces with our XDP program, and `--xdp-mode`.
    pub xdp_ifaces: Vec<String>,
    pub xdp_mode: Option<String>,
    /// What the daemon says it attached (`runtime.json`'s `xdp`: interface and mode).
    pub xdp_attached: Option<serde_json::Value>,
    /// The client command, as run.
    pub client: String,
    pub started_utc: String,
    pub note: Option<String>,
}

impl Record {
    /// This record as a workload that did not run to the end, for `error`.
    pub fn failed(mut self, error: &str) -> Self {
        self.status = "failed".to_string();
        self.error = Some(error.to_string());
        self
    }

    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }

    /// Appends `note` to the record's notes.
    pub fn add_note(&mut self, note: &str) {
        self.note = Some(match self.note.take() {
            Some(n) => format!("{n}; {note}"),
            None => note.to_string(),
        });
    }
}

/// Writes `records` as one JSON array to `<dir>/<stamp>.json`; returns the path.
pub fn write_json(dir: &Path, stamp: &str, records: &[Record]) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{stamp}.json"));
    let text = serde_json::to_string_pretty(records)?;
    fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The records of a run written by [`write_json`].
pub fn read_json(path: &Path) -> Result<Vec<Record>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a JSON array of lb-bench results", path.display()))
}

/// The distinct values of `field` over `records`, in order of first appearance.
pub fn distinct(records: &[Record], field: fn(&Record) -> &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for r in records {
        if !seen.iter().any(|s| s == field(r)) {
            seen.push(field(r).to_string());
        }
    }
    seen
}

/// The current UTC time as `20250131T235959Z` (a file name that sorts by time).
pub fn utc_stamp() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Howard Hinnant's days-to-civil: days since 1970-01-01 to (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Which figure of a record is read.
pub type Metric = fn(&Record) -> Option<f64>;

/// The median over rounds of `f` for (`veth`, `mode`, `workload`), among the records that ran
/// to the end.
pub fn median_of(records: &[Record], veth: &str, mode: &str, workload: &str, f: fn(&Record) -> Option<f64>) -> Option<f64> {
    let values: Vec<f64> = of(records, veth, mode, workload).filter(|r| r.is_ok()).filter_map(f).collect();
    median(&values)
}

/// The median over the rounds where both `mode` and `base` ran (`veth`, `workload`) of
/// `pair(mode's figure, base's figure)` (None leaves a round out), with those values in
/// round order; None without any. A round runs every mode within minutes: a machine slower
/// for a while (a shared host) moves both sides of a pair, where a ratio of two medians
/// could pair a fast round of one mode with a slow round of the other.
pub fn paired(
    records: &[Record],
    veth: &str,
    (mode, workload, f): (&str, &str, Metric),
    base: &str,
    pair: fn(f64, f64) -> Option<f64>,
) -> Option<(f64, Vec<f64>)> {
    let ok_in = |m: &str, round: u32| in_round(records, veth, m, workload, round).and_then(f);
    let mut rounds: Vec<u32> = of(records, veth, mode, workload).map(|r| r.round).collect();
    rounds.sort_unstable();
    rounds.dedup();
    let values: Vec<f64> = rounds.into_iter().filter_map(|round| pair(ok_in(mode, round)?, ok_in(base, round)?)).collect();
    Some((median(&values)?, values))
}

/// What `mode` adds to `direct`'s figure `f`, per round, as the median of the rounds with
/// their values: `f` minus `beside` (direct's figure measured in the same window), or, in
/// records without it (runs before 2026-12-02), minus `f` of direct's record of the round.
pub fn added_to_direct(records: &[Record], veth: &str, (mode, workload, f): (&str, &str, Metric), beside: Metric) -> Option<(f64, Vec<f64>)> {
    let direct_in = |round: u32| in_round(records, veth, "direct", workload, round).and_then(f);
    let mut here: Vec<&Record> = of(records, veth, mode, workload).filter(|r| r.is_ok()).collect();
    here.sort_by_key(|r| r.round);
    let values: Vec<f64> = here.into_iter().filter_map(|r| Some(f(r)? - beside(r).or_else(|| direct_in(r.round))?)).collect();
    Some((median(&values)?, values))
}

/// The record of (`veth`, `mode`, `workload`) in `round`, if that round ran to the end.
fn in_round<'a>(records: &'a [Record], veth: &'a str, mode: &'a str, workload: &'a str, round: u32) -> Option<&'a Record> {
    of(records, veth, mode, workload).find(|r| r.round == round && r.is_ok())
}

/// A round's ratio, none against a zero.
pub fn ratio(value: f64, base: f64) -> Option<f64> {
    (base > 0.0).then(|| value / base)
}

pub fn difference(value: f64, base: f64) -> Option<f64> {
    Some(value - base)
}

/// The records of (`veth`, `mode`, `workload`), every round.
pub fn of<'a>(records: &'a [Record], veth: &'a str, mode: &'a str, workload: &'a str) -> impl Iterator<Item = &'a Record> + 'a {
    records.iter().filter(move |r| r.veth == veth && r.mode == mode && r.workload == workload)
}

/// The first error of a (`veth`, `mode`, `workload`) that failed in some round.
pub fn first_error<'a>(records: &'a [Record], veth: &'a str, mode: &'a str, workload: &'a str) -> Option<&'a str> {
    of(records, veth, mode, workload).find_map(|r| r.error.as_deref())
}

/// The gist of an error in one line: its first line, and the first line of a log quoted in
/// it that says what went wrong (`Error: …` from our daemon, `[ALERT] …` from HAProxy,
/// `[emerg] …` from nginx).
pub fn gist(error: &str) -> String {
    let mut lines = error.lines();
    let mut text = lines.next().unwrap_or("").trim().to_string();
    if let Some(cause) = lines.find(|l| {
        let l = l.trim_start();
        l.starts_with("Error:") || l.contains("[ALERT]") || l.contains("[emerg]")
    }) {
        text = format!("{} … {}", text.trim_end_matches(':'), cause.trim());
    }
    const MAX: usize = 160;
    if text.chars().count() > MAX {
        text = text.chars().take(MAX - 1).collect::<String>() + "…";
    }
    text
}

/// Three significant digits, more for large numbers.
pub fn number(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn medians_leave_failed_rounds_out() {
        let rec = |veth: &str, round: u32, gbit: Option<f64>| Record {
            veth: veth.into(),
            mode: "auto".into(),
            workload: "bulk-h1".into(),
            round,
            status: "ok".into(),
            gbit_s: gbit,
            ..Record::default()
        };
        let records = [rec("wire", 0, Some(4.0)), rec("wire", 1, Some(2.0)), rec("wire", 2, None).failed("stalled"), rec("default", 0, Some(9.0))];
        let gbit = |r: &Record| r.gbit_s;
        assert_eq!(median_of(&records, "wire", "auto", "bulk-h1", gbit), Some(3.0));
        assert_eq!(median_of(&records, "default", "auto", "bulk-h1", gbit), Some(9.0));
        assert_eq!(first_error(&records, "wire", "auto", "bulk-h1"), Some("stalled"));
        assert_eq!(first_error(&records, "default", "auto", "bulk-h1"), None);
    }

    #[test]
    fn a_saved_run_reads_back_as_written_and_older_files_lack_fields() {
        let dir = tempfile::tempdir().unwrap();
        let written = [Record {
            veth: "wire".into(),
            mode: "auto".into(),
            workload: "conns".into(),
            round: 2,
            status: "ok".into(),
            conns_s: Some(812.5),
            ..Record::default()
        }];
        let path = write_json(dir.path(), "20261201T000000Z", &written).unwrap();
        let read = read_json(&path).unwrap();
        assert_eq!((read[0].veth.as_str(), read[0].round, read[0].conns_s), ("wire", 2, Some(812.5)));
        assert_eq!(distinct(&read, |r| &r.mode), ["auto"]);
        // A file of an older run, without the fields added since.
        let old = dir.path().join("old.json");
        std::fs::write(&old, r#"[{"veth": "default", "mode": "direct", "workload": "bulk-h1", "round": 0, "status": "ok", "gbit_s": 3.5}]"#).unwrap();
        assert_eq!(read_json(&old).unwrap()[0].gbit_s, Some(3.5));
        std::fs::write(&old, "{}").unwrap();
        assert!(format!("{:#}", read_json(&old).unwrap_err()).contains("not a JSON array of lb-bench results"));
    }

    #[test]
    fn errors_are_cut_to_their_gist() {
        let e = "did not start: lb-user exited before it was ready; its log:\n\
                 2026 INFO created a store\n\
                 Error: the verifier refused the tc program: LoadError {\n    io_error";
        assert_eq!(
            gist(e),
            "did not start: lb-user exited before it was ready; its log … \
             Error: the verifier refused the tc program: LoadError {"
        );
        assert_eq!(gist("plain"), "plain");
        assert_eq!(gist(&"x".repeat(500)).chars().count(), 160);
    }
}
