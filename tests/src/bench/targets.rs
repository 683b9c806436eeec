//! The targets, checked for each kind of veth: met, MISSED, or not measured (the
//! mode or workload was not selected). A target whose mode or reference failed is MISSED,
//! never met and never a zero.
//!
//! A figure alone is its median over rounds. A ratio to a reference (`direct`, `haproxy`) is
//! the median of the ratios within each round: a round runs every mode within minutes, so
//! a machine that is slower for a while (a shared host: single rounds here differ by up to
//! 40 %) moves both sides of a pair, where the ratio of two medians could pair a fast round
//! of one with a slow round of the other. The rounds' ratios are shown beside the median.

use std::fmt::Write as _;

use super::report::{added_to_direct, first_error, gist, median_of, number, of, paired, ratio, Metric, Record};

/// How one target came out.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Met(String),
    Missed(String),
    NotMeasured(String),
}

/// A figure a target needs: its median, or why there is none.
enum Figure {
    Value(f64),
    /// Some round of the mode's workload failed and none ran to the end.
    Failed(String),
    /// Nothing was recorded for it (mode or workload not selected).
    Absent,
}

struct Checker<'a> {
    records: &'a [Record],
    veth: &'a str,
}

impl Checker<'_> {
    fn figure(&self, mode: &str, workload: &str, f: Metric) -> Figure {
        if let Some(v) = median_of(self.records, self.veth, mode, workload, f) {
            return Figure::Value(v);
        }
        match first_error(self.records, self.veth, mode, workload) {
            Some(e) => Figure::Failed(format!("{mode} {workload} FAILED: {}", gist(e))),
            None if of(self.records, self.veth, mode, workload).next().is_some() => Figure::Failed(format!("{mode} {workload}: no figure measured")),
            None => Figure::Absent,
        }
    }

    /// `mode`'s figure (or its ratio to `base`'s when `base` is given) against `ok`.
    fn check(&self, (mode, workload, f): (&str, &str, Metric), base: Option<&str>, ok: impl Fn(f64) -> bool, unit: &str) -> Outcome {
        let value = match self.figure(mode, workload, f) {
            Figure::Value(v) => v,
            Figure::Failed(why) => return Outcome::Missed(why),
            Figure::Absent => return Outcome::NotMeasured(format!("no {mode} {workload}")),
        };
        let (value, rounds) = match base.map(|b| (b, self.figure(b, workload, f))) {
            None => (value, None),
            Some((b, Figure::Value(_))) => match paired(self.records, self.veth, (mode, workload, f), b, ratio) {
                Some((median, rounds)) => (median, Some(rounds)),
                None => return Outcome::Missed(format!("no round with both {mode} and {b} {workload} measured (above 0)")),
            },
            Some((_, Figure::Failed(why))) => return Outcome::Missed(why),
            Some((b, Figure::Absent)) => return Outcome::NotMeasured(format!("no {b} {workload}")),
        };
        let shown = with_rounds(format!("{}{unit}", number(value)), rounds.as_deref());
        if ok(value) {
            Outcome::Met(shown)
        } else {
            Outcome::Missed(shown)
        }
    }

    /// `mode`'s p99 handshake minus `direct`'s measured in the same window: the median of
    /// the rounds' differences.
    fn added_p99(&self, mode: &str, limit_ms: f64) -> Outcome {
        let p99 = |r: &Record| r.p99_ms;
        match self.figure(mode, "latency", p99) {
            Figure::Failed(why) => Outcome::Missed(why),
            Figure::Absent => Outcome::NotMeasured(format!("no latency of {mode}")),
            Figure::Value(_) => {
                let Some((added, rounds)) = added_to_direct(self.records, self.veth, (mode, "latency", p99), |r| r.direct_p99_ms) else {
                    return Outcome::Missed(format!("no round of {mode} latency with direct's measured beside it"));
                };
                let shown = with_rounds(format!("{} ms", number(added)), Some(&rounds));
                if added <= limit_ms {
                    Outcome::Met(shown)
                } else {
                    Outcome::Missed(shown)
                }
            }
        }
    }

    /// Errors (failed or short requests, failed rounds) and hand-off stalls, every mode and
    /// workload: met only when there is something to check and all of it is zero.
    fn clean(&self, modes: &[String]) -> Outcome {
        let mut offenders = Vec::new();
        let mut seen = 0;
        for mode in modes {
            let mut errors = 0u64;
            let mut stalls = 0u64;
            let mut failed = Vec::new();
            for r in self.records.iter().filter(|r| r.veth == self.veth && &r.mode == mode) {
                seen += 1;
                errors += r.failures;
                // A daemon that does not report stalls is taken as having none.
                stalls += r.handoff_stalls.unwrap_or(0);
                if !r.is_ok() && !failed.contains(&r.workload) {
                    failed.push(r.workload.clone());
                }
            }
            let mut what = Vec::new();
            if !failed.is_empty() {
                what.push(format!("FAILED {}", failed.join(",")));
            }
            if errors > 0 {
                what.push(format!("{errors} errors"));
            }
            if stalls > 0 {
                what.push(format!("{stalls} stalls"));
            }
            if !what.is_empty() {
                offenders.push(format!("{mode}: {}", what.join(", ")));
            }
        }
        match (seen, offenders.is_empty()) {
            (0, _) => Outcome::NotMeasured("nothing ran".to_string()),
            (_, true) => Outcome::Met("0".to_string()),
            (_, false) => Outcome::Missed(offenders.join("; ")),
        }
    }
}

/// `shown`, followed by the rounds' values when there are several.
fn with_rounds(mut shown: String, rounds: Option<&[f64]>) -> String {
    if let Some(rounds) = rounds.filter(|r| r.len() > 1) {
        let each: Vec<String> = rounds.iter().map(|r| number(*r)).collect();
        let _ = write!(shown, "; rounds {}", each.join(", "));
    }
    shown
}

/// Every target for `veth`, named.
pub fn check_all(records: &[Record], veth: &str, modes: &[String]) -> Vec<(String, Outcome)> {
    let c = Checker { records, veth };
    let gbit = |r: &Record| r.gbit_s;
    let cpu_gb = |r: &Record| r.lb_cpu_s_per_gb;
    let mut out = Vec::new();
    for workload in ["bulk-h1", "bulk-h2"] {
        out.push((format!("{workload} auto ≥ 0.9× direct"), c.check(("auto", workload, gbit), Some("direct"), |v| v >= 0.9, "×")));
        out.push((format!("{workload} auto ≥ 1.1× haproxy"), c.check(("auto", workload, gbit), Some("haproxy"), |v| v >= 1.1, "×")));
        out.push((format!("{workload} auto LB CPU ≤ 0.08 s/GB"), c.check(("auto", workload, cpu_gb), None, |v| v <= 0.08, " s")));
        if veth == "default" {
            out.push((format!("{workload} splice ≥ haproxy"), c.check(("splice", workload, gbit), Some("haproxy"), |v| v >= 1.0, "×")));
            out.push((format!("{workload} splice LB CPU/GB ≤ haproxy's"), c.check(("splice", workload, cpu_gb), Some("haproxy"), |v| v <= 1.0, "×")));
        }
    }
    out.push(("conns auto ≥ 0.95× direct".to_string(), c.check(("auto", "conns", |r| r.conns_s), Some("direct"), |v| v >= 0.95, "×")));
    out.push(("conns auto LB CPU ≤ 0.08 s/1k conns".to_string(), c.check(("auto", "conns", |r| r.lb_cpu_s_per_1k_conns), None, |v| v <= 0.08, " s")));
    out.push((
        "pinned auto: conns/s with 100,000 handed-off flows ≥ 0.95× without".to_string(),
        c.check(("auto", "pinned", |r| Some(r.conns_s? / r.conns_s_empty_map?)), None, |v| v >= 0.95, "×"),
    ));
    out.push((
        "pinned auto: API p99 with 100,000 handed-off flows ≤ 1.25× without".to_string(),
        c.check(("auto", "pinned", |r| Some(r.api_p99_ms? / r.api_p99_ms_empty_map?)), None, |v| v <= 1.25, "×"),
    ));
    out.push(("latency auto added p99 ≤ 0.1 ms".to_string(), c.added_p99("auto", 0.1)));
    out.push(("errors and stalls 0, every mode and workload".to_string(), c.clean(modes)));
    out
}

/// The targets as printed, a block per kind of veth, and a last line counting them.
pub fn targets(records: &[Record], veths: &[String], modes: &[String]) -> String {
    let mut out = String::from("targets (medians over rounds; a ratio: the median of its rounds' ratios):\n");
    let (mut met, mut missed, mut unmeasured) = (0, 0, 0);
    for veth in veths {
        let _ = writeln!(out, "  veth {veth}:");
        for (name, outcome) in check_all(records, veth, modes) {
            let text = match outcome {
                Outcome::Met(v) => {
                    met += 1;
                    format!("met ({v})")
                }
                Outcome::Missed(v) => {
                    missed += 1;
                    format!("MISSED ({v})")
                }
                Outcome::NotMeasured(why) => {
                    unmeasured += 1;
                    format!("not measured ({why})")
                }
            };
            let _ = writeln!(out, "    {name}: {text}");
        }
    }
    let _ = writeln!(out, "  {met} met, {missed} MISSED, {unmeasured} not measured");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(veth: &str, mode: &str, workload: &str, gbit: f64) -> Record {
        Record {
            veth: veth.into(),
            mode: mode.into(),
            workload: workload.into(),
            status: "ok".into(),
            gbit_s: Some(gbit),
            lb_cpu_s_per_gb: Some(0.05),
            ..Record::default()
        }
    }

    fn outcome(all: &[(String, Outcome)], name: &str) -> Outcome {
        all.iter().find(|(n, _)| n == name).map(|(_, o)| o.clone()).unwrap_or_else(|| panic!("no target {name}: {all:?}"))
    }

    #[test]
    fn bulk_targets_compare_auto_with_direct_and_haproxy() {
        let records = [rec("wire", "direct", "bulk-h1", 10.0), rec("wire", "haproxy", "bulk-h1", 8.0), rec("wire", "auto", "bulk-h1", 9.5)];
        let all = check_all(&records, "wire", &["direct".into(), "auto".into()]);
        assert!(matches!(outcome(&all, "bulk-h1 auto ≥ 0.9× direct"), Outcome::Met(_)));
        assert!(matches!(outcome(&all, "bulk-h1 auto ≥ 1.1× haproxy"), Outcome::Met(_)));
        assert!(matches!(outcome(&all, "bulk-h2 auto ≥ 0.9× direct"), Outcome::NotMeasured(_)));
        assert!(!all.iter().any(|(n, _)| n.contains("splice")), "splice targets are for default veths");
    }

    #[test]
    fn a_ratio_pairs_the_figures_of_each_round() {
        let in_round = |mode: &str, round: u32, gbit: f64| Record { round, ..rec("default", mode, "bulk-h1", gbit) };
        // The machine slowed down in rounds 1 and 2 while direct ran, in round 2 while auto
        // ran: the ratio of the medians (4 / 8) would read 0.5.
        let mut records = vec![
            in_round("direct", 0, 10.0),
            in_round("auto", 0, 9.5),
            in_round("direct", 1, 4.0),
            in_round("auto", 1, 3.84),
            in_round("direct", 2, 8.0),
            in_round("auto", 2, 4.0),
        ];
        let all = check_all(&records, "default", &["direct".into(), "auto".into()]);
        assert_eq!(outcome(&all, "bulk-h1 auto ≥ 0.9× direct"), Outcome::Met("0.950×; rounds 0.950, 0.960, 0.500".into()));
        // A round whose reference failed pairs with nothing.
        records[2] = in_round("direct", 1, 0.0).failed("curl timed out");
        let all = check_all(&records, "default", &["direct".into(), "auto".into()]);
        assert_eq!(outcome(&all, "bulk-h1 auto ≥ 0.9× direct"), Outcome::Missed("0.725×; rounds 0.950, 0.500".into()));
    }

    #[test]
    fn a_failed_mode_misses_its_targets_and_the_clean_run() {
        let records = [rec("default", "direct", "bulk-h1", 10.0), rec("default", "auto", "bulk-h1", 0.0).failed("stalled after the hand-off")];
        let modes = ["direct".to_string(), "auto".to_string()];
        let all = check_all(&records, "default", &modes);
        match outcome(&all, "bulk-h1 auto ≥ 0.9× direct") {
            Outcome::Missed(why) => assert!(why.contains("FAILED: stalled"), "{why}"),
            other => panic!("{other:?}"),
        }
        match outcome(&all, "errors and stalls 0, every mode and workload") {
            Outcome::Missed(why) => assert!(why.contains("auto: FAILED bulk-h1"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stalls_count_and_absent_stalls_are_zero() {
        let mut stalled = rec("wire", "auto", "bulk-h1", 9.0);
        stalled.handoff_stalls = Some(2);
        let quiet = rec("wire", "direct", "bulk-h1", 9.0);
        let modes = ["direct".to_string(), "auto".to_string()];
        let all = check_all(&[quiet.clone(), stalled], "wire", &modes);
        assert_eq!(outcome(&all, "errors and stalls 0, every mode and workload"), Outcome::Missed("auto: 2 stalls".into()));
        let all = check_all(&[quiet], "wire", &modes);
        assert_eq!(outcome(&all, "errors and stalls 0, every mode and workload"), Outcome::Met("0".into()));
    }

    #[test]
    fn added_latency_takes_direct_from_the_same_window_and_old_runs_from_the_round() {
        let latency = |mode: &str, round: u32, p99: f64, beside: Option<f64>| Record {
            round,
            p99_ms: Some(p99),
            direct_p99_ms: beside,
            ..rec("default", mode, "latency", 0.0)
        };
        // Direct's own record of round 0 ran in a slow minute (9 ms): beside auto it read 3.
        let records = [latency("direct", 0, 9.0, None), latency("auto", 0, 3.05, Some(3.0)), latency("auto", 1, 5.0, Some(4.8))];
        let all = check_all(&records, "default", &["direct".into(), "auto".into()]);
        assert_eq!(outcome(&all, "latency auto added p99 ≤ 0.1 ms"), Outcome::Missed("0.125 ms; rounds 0.050, 0.200".into()));
        // A run before the same-window figure existed pairs with direct's record of the round.
        let old = [latency("direct", 0, 2.0, None), latency("auto", 0, 2.05, None)];
        let all = check_all(&old, "default", &["direct".into(), "auto".into()]);
        assert_eq!(outcome(&all, "latency auto added p99 ≤ 0.1 ms"), Outcome::Met("0.050 ms".into()));
    }
}
