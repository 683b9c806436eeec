//! The table a run prints: per kind of veth, one block per workload, one row per mode, each
//! figure the median over rounds beside its ratio to `direct` and to `haproxy` (the limit, and
//! the load balancer a user would otherwise pick): the median of the rounds' ratios. A mode that did not run says FAILED and
//! why; errors and stalls are summed over rounds.

use std::fmt::Write as _;

use super::report::{added_to_direct, difference, first_error, gist, median_of, number, of, paired, ratio, Record};

/// What the footnote states about the run.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub rounds: u32,
    /// CPUs of this host: the daemon's tokio runtime has one worker thread per CPU.
    pub cpus: usize,
    /// HAProxy's `nbthread` and nginx stream's `worker_processes`.
    pub lb_workers: usize,
}

/// How a column shows a metric.
#[derive(Clone, Copy)]
enum Show {
    /// The median itself.
    Value,
    /// The median of the rounds' ratios to this mode's figure (report::paired).
    RatioTo(&'static str),
    /// The median of the rounds' differences to this mode's figure (milliseconds added).
    AddedTo(&'static str),
    /// The median of the rounds' differences to `direct`'s figure measured in the same
    /// window, given by the function (report::added_to_direct).
    AddedToDirect(fn(&Record) -> Option<f64>),
}

struct Column {
    header: &'static str,
    value: fn(&Record) -> Option<f64>,
    show: Show,
}

const fn col(header: &'static str, value: fn(&Record) -> Option<f64>, show: Show) -> Column {
    Column { header, value, show }
}

const BULK: &[Column] = &[
    col("Gbit/s", |r| r.gbit_s, Show::Value),
    col("×direct", |r| r.gbit_s, Show::RatioTo("direct")),
    col("×haproxy", |r| r.gbit_s, Show::RatioTo("haproxy")),
    col("LB CPU s/GB", |r| r.lb_cpu_s_per_gb, Show::Value),
    col("×haproxy", |r| r.lb_cpu_s_per_gb, Show::RatioTo("haproxy")),
    col("host CPU s/GB", |r| r.host_cpu_s_per_gb, Show::Value),
    col("×direct", |r| r.host_cpu_s_per_gb, Show::RatioTo("direct")),
    col("hand-off share", handoff_share, Show::Value),
    col("hold ms", mean_hold_ms, Show::Value),
];

const CONNS: &[Column] = &[
    col("conns/s", |r| r.conns_s, Show::Value),
    col("×direct", |r| r.conns_s, Show::RatioTo("direct")),
    col("×haproxy", |r| r.conns_s, Show::RatioTo("haproxy")),
    col("LB CPU s/1k", |r| r.lb_cpu_s_per_1k_conns, Show::Value),
    col("×haproxy", |r| r.lb_cpu_s_per_1k_conns, Show::RatioTo("haproxy")),
    col("host CPU s/1k", |r| r.host_cpu_s_per_1k_conns, Show::Value),
    col("×direct", |r| r.host_cpu_s_per_1k_conns, Show::RatioTo("direct")),
];

const LATENCY: &[Column] = &[
    col("p50 hs ms", |r| r.p50_ms, Show::Value),
    col("+direct", |r| r.p50_ms, Show::AddedToDirect(|r| r.direct_p50_ms)),
    col("p99 hs ms", |r| r.p99_ms, Show::Value),
    col("+direct", |r| r.p99_ms, Show::AddedToDirect(|r| r.direct_p99_ms)),
    col("+haproxy", |r| r.p99_ms, Show::AddedTo("haproxy")),
    col("p99 1st byte ms", |r| r.p99_ttfb_ms, Show::Value),
    col("+direct", |r| r.p99_ttfb_ms, Show::AddedToDirect(|r| r.direct_p99_ttfb_ms)),
    col("hold ms", mean_hold_ms, Show::Value),
];

const MEMORY: &[Column] = &[
    col("LB bytes/conn", |r| r.mem_bytes_per_conn, Show::Value),
    col("×haproxy", |r| r.mem_bytes_per_conn, Show::RatioTo("haproxy")),
    col("LB fds/conn", |r| r.lb_fds_per_conn, Show::Value),
];

const PINNED: &[Column] = &[
    col("conns/s", |r| r.conns_s, Show::Value),
    col("×empty map", |r| Some(r.conns_s? / r.conns_s_empty_map?), Show::Value),
    col("API p99 ms", |r| r.api_p99_ms, Show::Value),
    col("×empty map", |r| Some(r.api_p99_ms? / r.api_p99_ms_empty_map?), Show::Value),
    col("LB CPU s", |r| r.lb_cpu_s, Show::Value),
];

fn columns(workload: &str) -> &'static [Column] {
    match workload {
        "bulk-h1" | "bulk-h2" => BULK,
        "conns" => CONNS,
        "latency" => LATENCY,
        "pinned" => PINNED,
        _ => MEMORY,
    }
}

/// The part of the bulk bytes the XDP program moved by itself (`-` where the daemon has no
/// hand-off counter).
fn handoff_share(r: &Record) -> Option<f64> {
    Some(r.xdp_spliced_bytes? as f64 / r.bytes.filter(|b| *b > 0)? as f64)
}

/// How long a hand-off paused its connection on average, from the hold to going live
/// (`handoff.held_us` over `handoff.holds`; `-` for modes without hand-offs).
fn mean_hold_ms(r: &Record) -> Option<f64> {
    let handoff = r.handoff.as_ref()?;
    let holds = *handoff.get("holds").filter(|n| **n > 0)?;
    Some(*handoff.get("held_us")? as f64 / holds as f64 / 1000.0)
}

/// The whole table: a block per kind of veth in `veths`, then the footnote.
pub fn table(records: &[Record], veths: &[String], modes: &[String], workloads: &[String], setting: Setting) -> String {
    let mut out = String::new();
    for veth in veths {
        let _ = writeln!(out, "== veth {veth} ({}) ==", veth_meaning(veth));
        for workload in workloads {
            if !records.iter().any(|r| &r.veth == veth && &r.workload == workload) {
                continue;
            }
            let client = records.iter().find(|r| &r.veth == veth && &r.workload == workload && r.is_ok()).map(|r| r.client.as_str()).unwrap_or("");
            let _ = writeln!(out, "{workload}: {client}");
            out.push_str(&block(records, veth, modes, workload));
            out.push('\n');
        }
    }
    out.push_str(&footnote(setting));
    out
}

fn veth_meaning(veth: &str) -> &'static str {
    match veth {
        "default" => "kernel defaults: tx checksum offload and TSO on, GRO off",
        "wire" => "tx checksum offload off, GRO on",
        _ => "?",
    }
}

/// One workload on one kind of veth: a row per mode that has a record, in the order of
/// `modes`; a mode with no round run to the end says FAILED and why.
fn block(records: &[Record], veth: &str, modes: &[String], workload: &str) -> String {
    let cols = columns(workload);
    let mut rows: Vec<Row> =
        vec![Row::Cells(std::iter::once("mode").chain(cols.iter().map(|c| c.header)).chain(["errors", "stalls"]).map(String::from).collect())];
    for mode in modes {
        let here: Vec<&Record> = of(records, veth, mode, workload).collect();
        if here.is_empty() {
            continue;
        }
        if !here.iter().any(|r| r.is_ok()) {
            let error = first_error(records, veth, mode, workload).unwrap_or("no record");
            rows.push(Row::Failed(mode.clone(), format!("FAILED: {}", gist(error))));
            continue;
        }
        let median = |m: &str, f| median_of(records, veth, m, workload, f);
        let mut row = vec![mode.clone()];
        for c in cols {
            let v = median(mode, c.value);
            row.push(match (c.show, v) {
                (_, None) => "-".to_string(),
                (Show::Value, Some(v)) => number(v),
                (Show::RatioTo(base), Some(_)) => match paired(records, veth, (mode, workload, c.value), base, ratio) {
                    Some((r, _)) => format!("{r:.2}×"),
                    None => "-".to_string(),
                },
                (Show::AddedTo(base), Some(_)) => match paired(records, veth, (mode, workload, c.value), base, difference) {
                    Some((d, _)) => format!("{d:+.3}"),
                    None => "-".to_string(),
                },
                (Show::AddedToDirect(beside), Some(_)) => match added_to_direct(records, veth, (mode, workload, c.value), beside) {
                    Some((d, _)) => format!("{d:+.3}"),
                    None => "-".to_string(),
                },
            });
        }
        let errors: u64 = here.iter().map(|r| r.failures).sum();
        let failed_rounds = here.iter().filter(|r| !r.is_ok()).count();
        row.push(match failed_rounds {
            0 => errors.to_string(),
            n => format!("{errors} + {n} round(s) FAILED"),
        });
        let stalls: Vec<u64> = here.iter().filter_map(|r| r.handoff_stalls).collect();
        row.push(if stalls.is_empty() { "-".to_string() } else { stalls.iter().sum::<u64>().to_string() });
        rows.push(Row::Cells(row));
    }
    align(&rows)
}

enum Row {
    Cells(Vec<String>),
    /// A mode and why it has no figure: printed after the mode, across the columns.
    Failed(String, String),
}

/// Columns padded to their widest cell: the first left-aligned, numbers right-aligned.
fn align(rows: &[Row]) -> String {
    let cells: Vec<&Vec<String>> = rows
        .iter()
        .filter_map(|r| match r {
            Row::Cells(c) => Some(c),
            Row::Failed(..) => None,
        })
        .collect();
    let modes = rows.iter().map(|r| match r {
        Row::Cells(c) => c[0].chars().count(),
        Row::Failed(mode, _) => mode.chars().count(),
    });
    let first = modes.max().unwrap_or(0);
    let widths: Vec<usize> = (0..cells[0].len())
        .map(|c| match c {
            0 => first,
            _ => cells.iter().map(|r| r[c].chars().count()).max().unwrap_or(0),
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        match row {
            Row::Cells(cells) => {
                for (c, text) in cells.iter().enumerate() {
                    let pad = " ".repeat(widths[c] - text.chars().count());
                    if c == 0 {
                        let _ = write!(line, "{text}{pad}  ");
                    } else {
                        let _ = write!(line, "{pad}{text}  ");
                    }
                }
            }
            Row::Failed(mode, why) => {
                let _ = write!(line, "{mode:<first$}  {why}");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn footnote(s: Setting) -> String {
    format!(
        "Medians over {rounds} round(s); ×direct / ×haproxy: the median of the rounds' ratios \
         to that mode (each round runs every mode), +direct / +haproxy: of the milliseconds \
         added.\n\
         LB CPU: utime + stime of the load balancer's processes from /proc, read the same way \
         for all, each load balancer with {w} thread(s) (--lb-workers): lb-user (one process, \
         --worker-threads {w}; {cpus} CPUs here), haproxy (nbthread {w}), nginx-stream \
         (worker_processes {w}), in clock ticks ({tick} ms: 0.000 is less than a tick over the \
         workload). host CPU: every CPU's busy time, softirq included (clients and servers \
         too).\n\
         errors: failed or short requests, transfers and connections (a bulk download under \
         1 MiB/s over 10 s is given up), summed over rounds; stalls: the daemon's \
         handoff.stalls (- where it does not report it). hand-off share: the part of the bytes \
         moved by the kernel hand-off (lb-user stats' spliced_bytes); hold ms: how long a \
         hand-off paused its connection on average (handoff.held_us / handoff.holds).\n",
        rounds = s.rounds,
        cpus = s.cpus,
        w = s.lb_workers,
        tick = 1000.0 / crate::procfs::clock_ticks_per_second(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(veth: &str, mode: &str, gbit: f64) -> Record {
        Record { veth: veth.into(), mode: mode.into(), workload: "bulk-h1".into(), status: "ok".into(), gbit_s: Some(gbit), ..Record::default() }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rows_compare_with_direct_and_haproxy() {
        let records = [rec("wire", "direct", 10.0), rec("wire", "haproxy", 4.0), rec("wire", "auto", 5.0)];
        let setting = Setting { rounds: 1, cpus: 2, lb_workers: 1 };
        let t = table(&records, &strings(&["wire"]), &strings(&["direct", "haproxy", "auto"]), &strings(&["bulk-h1", "conns"]), setting);
        let auto = t.lines().find(|l| l.starts_with("auto")).unwrap();
        assert!(auto.contains("5.00") && auto.contains("0.50×") && auto.contains("1.25×"), "{t}");
        assert!(!t.contains("conns/s"), "workloads without records are left out: {t}");
        assert!(t.contains("== veth wire"), "{t}");
    }

    #[test]
    fn the_mean_hold_is_shown_where_the_daemon_held_flows() {
        let handoff = [("holds".to_string(), 4), ("held_us".to_string(), 10_000)].into_iter().collect();
        let xdp = Record { handoff: Some(handoff), ..rec("wire", "xdp", 5.0) };
        let none = Record { handoff: Some([("holds".to_string(), 0)].into_iter().collect()), ..rec("wire", "copy", 5.0) };
        assert_eq!(mean_hold_ms(&xdp), Some(2.5));
        assert_eq!(mean_hold_ms(&none), None);
        assert_eq!(mean_hold_ms(&rec("wire", "direct", 5.0)), None);
    }

    #[test]
    fn a_failed_mode_says_so_instead_of_a_figure() {
        let records =
            [rec("default", "direct", 10.0), Record { error: None, ..rec("default", "xdp", 0.0) }.failed("starting lb-user for mode xdp: timed out\nmore")];
        let setting = Setting { rounds: 1, cpus: 2, lb_workers: 1 };
        let t = table(&records, &strings(&["default"]), &strings(&["direct", "xdp"]), &strings(&["bulk-h1"]), setting);
        let xdp = t.lines().find(|l| l.starts_with("xdp")).unwrap();
        assert!(xdp.contains("FAILED: starting lb-user for mode xdp: timed out"), "{t}");
        assert!(!xdp.contains("more") && !xdp.contains("0.000"), "{t}");
        let lines: Vec<&str> = t.lines().collect();
        let at = |m: &str| lines.iter().position(|l| l.starts_with(m)).unwrap();
        assert!(at("direct") < at("xdp"), "rows keep the order of the modes: {t}");
    }
}
