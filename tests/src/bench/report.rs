//! What a run produces: one [`Record`] per (mode, workload, round), written as a JSON array
//! to `target/bench/<UTC timestamp>.json`, and a table comparing each mode with `direct`,
//! each value the median over rounds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;

use super::stats::median;

/// One workload's result in one mode; `None` (JSON `null`) where a field does not apply.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Record {
    pub mode: String,
    pub workload: String,
    /// Which round of the run (each round runs every mode, in a rotated order).
    pub round: u32,
    /// Response bytes (bodies) × 8 / wall time of the transfers.
    pub gbit_s: Option<f64>,
    /// New TLS connections per second (one request each).
    pub conns_s: Option<f64>,
    /// 99th and 50th percentile of the time to a completed TCP + TLS handshake.
    pub p99_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    /// 99th percentile of the time to the first response byte on a new connection.
    pub p99_ttfb_ms: Option<f64>,
    /// The daemon's own CPU seconds (user + system) per GB (10^9 bytes) moved.
    pub lb_cpu_s_per_gb: Option<f64>,
    /// The daemon's own CPU seconds per 1,000 new connections.
    pub lb_cpu_s_per_1k_conns: Option<f64>,
    /// Growth of the daemon's resident memory per idle connection held through it.
    pub mem_bytes_per_conn: Option<f64>,
    /// Growth of the daemon's open descriptors per idle connection (2 with copy, 6 with
    /// splice's two pipes: shows which relay really ran).
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
    /// Requests or connections that failed.
    pub failures: u64,
    /// Bytes the XDP program moved between the two connections by itself during the
    /// workload (its `spliced_bytes` counter: the hand-off); `None` when the daemon has no
    /// such counter yet.
    pub xdp_spliced_bytes: Option<u64>,
    /// Every XDP counter's growth during the workload, as `lb-user stats` names them.
    pub xdp_counters: Option<BTreeMap<String, u64>>,
    /// The load balancer's interfaces with the XDP program, and `--xdp-mode`.
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

/// The current UTC time as `20250131T235959Z` (a file name that sorts by time).
pub fn utc_stamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
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

/// A metric row of the table: which workload, which field, and how to compare with direct.
struct Metric {
    workload: &'static str,
    label: &'static str,
    value: fn(&Record) -> Option<f64>,
    compare: Compare,
}

enum Compare {
    /// value / direct's value (higher is better for throughput).
    Ratio,
    /// value − direct's value (latency added).
    Added,
    /// Nothing to compare (direct has no load balancer).
    None,
}

const METRICS: &[Metric] = &[
    Metric {
        workload: "bulk-h1",
        label: "Gbit/s",
        value: |r| r.gbit_s,
        compare: Compare::Ratio,
    },
    Metric {
        workload: "bulk-h1",
        label: "LB CPU s/GB",
        value: |r| r.lb_cpu_s_per_gb,
        compare: Compare::None,
    },
    Metric {
        workload: "bulk-h1",
        label: "host CPU s/GB",
        value: |r| r.host_cpu_s_per_gb,
        compare: Compare::Ratio,
    },
    Metric {
        workload: "bulk-h1",
        label: "XDP hand-off share",
        value: handoff_share,
        compare: Compare::None,
    },
    Metric {
        workload: "bulk-h2",
        label: "Gbit/s",
        value: |r| r.gbit_s,
        compare: Compare::Ratio,
    },
    Metric {
        workload: "bulk-h2",
        label: "LB CPU s/GB",
        value: |r| r.lb_cpu_s_per_gb,
        compare: Compare::None,
    },
    Metric {
        workload: "bulk-h2",
        label: "host CPU s/GB",
        value: |r| r.host_cpu_s_per_gb,
        compare: Compare::Ratio,
    },
    Metric {
        workload: "bulk-h2",
        label: "XDP hand-off share",
        value: handoff_share,
        compare: Compare::None,
    },
    Metric {
        workload: "conns",
        label: "conns/s",
        value: |r| r.conns_s,
        compare: Compare::Ratio,
    },
    Metric {
        workload: "conns",
        label: "LB CPU s/1k conns",
        value: |r| r.lb_cpu_s_per_1k_conns,
        compare: Compare::None,
    },
    Metric {
        workload: "latency",
        label: "p99 handshake ms",
        value: |r| r.p99_ms,
        compare: Compare::Added,
    },
    Metric {
        workload: "latency",
        label: "p50 handshake ms",
        value: |r| r.p50_ms,
        compare: Compare::Added,
    },
    Metric {
        workload: "latency",
        label: "p99 1st byte ms",
        value: |r| r.p99_ttfb_ms,
        compare: Compare::Added,
    },
    Metric {
        workload: "memory",
        label: "LB bytes/conn",
        value: |r| r.mem_bytes_per_conn,
        compare: Compare::None,
    },
    Metric {
        workload: "memory",
        label: "LB fds/conn",
        value: |r| r.lb_fds_per_conn,
        compare: Compare::None,
    },
];

/// The part of the bulk bytes the XDP program moved by itself (`-` where the daemon has no
/// hand-off counter).
fn handoff_share(r: &Record) -> Option<f64> {
    Some(r.xdp_spliced_bytes? as f64 / r.bytes.filter(|b| *b > 0)? as f64)
}

/// The table: one row per metric, one column per mode, each cell the value and its
/// comparison with `direct` (× for ratios, + for added latency).
pub fn table(records: &[Record], modes: &[String]) -> String {
    let mut rows: Vec<Vec<String>> = vec![std::iter::once("workload".to_string())
        .chain(std::iter::once("metric".to_string()))
        .chain(modes.iter().cloned())
        .collect()];
    for metric in METRICS {
        if !records.iter().any(|r| r.workload == metric.workload) {
            continue;
        }
        let direct = value_of(records, "direct", metric.workload, metric.value);
        let mut row = vec![metric.workload.to_string(), metric.label.to_string()];
        for mode in modes {
            let value = value_of(records, mode, metric.workload, metric.value);
            row.push(cell(value, direct, &metric.compare, mode == "direct"));
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        for (c, text) in row.iter().enumerate() {
            let pad = widths[c] - text.chars().count();
            if c < 2 {
                let _ = write!(out, "{text}{}  ", " ".repeat(pad));
            } else {
                let _ = write!(out, "{}{text}  ", " ".repeat(pad));
            }
        }
        out = out.trim_end().to_string();
        out.push('\n');
    }
    out
}

/// The median over rounds of `f` for (`mode`, `workload`).
fn value_of(
    records: &[Record],
    mode: &str,
    workload: &str,
    f: fn(&Record) -> Option<f64>,
) -> Option<f64> {
    let values: Vec<f64> = records
        .iter()
        .filter(|r| r.mode == mode && r.workload == workload)
        .filter_map(f)
        .collect();
    median(&values)
}

fn cell(value: Option<f64>, direct: Option<f64>, compare: &Compare, is_direct: bool) -> String {
    let Some(v) = value else {
        return "-".to_string();
    };
    let shown = number(v);
    match (compare, direct) {
        (_, _) if is_direct => shown,
        (Compare::Ratio, Some(d)) if d > 0.0 => format!("{shown} ({:.2}×)", v / d),
        (Compare::Added, Some(d)) => format!("{shown} ({:+.3})", v - d),
        _ => shown,
    }
}

/// Three significant digits, more for large numbers.
fn number(v: f64) -> String {
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

/// The targets, checked for every load-balancer mode (they are set for `xdp`).
pub fn targets(records: &[Record], modes: &[String]) -> String {
    let v = |mode: &str, workload: &str, f: fn(&Record) -> Option<f64>| {
        value_of(records, mode, workload, f)
    };
    let ratio = |mode: &str, workload: &str, f: fn(&Record) -> Option<f64>| {
        Some(v(mode, workload, f)? / v("direct", workload, f)?)
    };
    let mut out =
        String::from("targets (set for xdp; shown for every mode; medians over rounds):\n");
    for mode in modes.iter().filter(|m| *m != "direct") {
        let mut checks = Vec::new();
        for workload in ["bulk-h1", "bulk-h2"] {
            checks.push(check(
                &format!("{workload} ≥ 0.9× direct"),
                ratio(mode, workload, |r| r.gbit_s),
                |v| v >= 0.9,
                "×",
            ));
            checks.push(check(
                &format!("{workload} LB CPU ≤ 0.08 s/GB"),
                v(mode, workload, |r| r.lb_cpu_s_per_gb),
                |v| v <= 0.08,
                " s",
            ));
        }
        checks.push(check(
            "conns ≥ 0.95× direct",
            ratio(mode, "conns", |r| r.conns_s),
            |v| v >= 0.95,
            "×",
        ));
        let added = v(mode, "latency", |r| r.p99_ms).zip(v("direct", "latency", |r| r.p99_ms));
        checks.push(check(
            "added p99 ≤ 0.1 ms",
            added.map(|(m, d)| m - d),
            |v| v <= 0.1,
            " ms",
        ));
        let _ = writeln!(out, "  {mode:<7} {}", checks.join("; "));
    }
    out
}

fn check(name: &str, value: Option<f64>, ok: fn(f64) -> bool, unit: &str) -> String {
    match value {
        Some(v) => format!(
            "{name}: {} {}{unit}",
            if ok(v) { "met" } else { "MISSED" },
            number(v)
        ),
        None => format!("{name}: not measured"),
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
    fn table_compares_each_mode_with_direct() {
        let rec = |mode: &str, gbit: f64| Record {
            mode: mode.into(),
            workload: "bulk-h1".into(),
            gbit_s: Some(gbit),
            ..Record::default()
        };
        let t = table(
            &[rec("direct", 10.0), rec("copy", 5.0)],
            &["direct".into(), "copy".into()],
        );
        assert!(t.contains("5.00 (0.50×)"), "{t}");
        assert!(!t.contains("p99"), "metrics without data are left out: {t}");
    }
}
