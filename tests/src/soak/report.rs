//! The end of a soak: its checks, the human summary and the JSON report.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

use crate::daemon::{Handoff, Stats};

/// One end check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// The figures it compared.
    pub detail: String,
}

impl Check {
    pub fn new(name: &'static str, ok: bool, detail: impl Into<String>) -> Self {
        Self { name, ok, detail: detail.into() }
    }
}

/// Resource use of a daemon instance at one moment.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    pub pid: u32,
    /// Seconds since the start of the run.
    pub at_s: f64,
    pub fds: usize,
    pub rss_kib: u64,
}

/// The hand-off statistics and kernel counters of one daemon instance, read just before it
/// was stopped (or at the end).
#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    pub pid: u32,
    pub started_at_s: f64,
    pub read_at_s: f64,
    pub handoff: Value,
    pub counters: Value,
}

impl Instance {
    pub fn from_stats(pid: u32, started_at_s: f64, read_at_s: f64, stats: &Stats) -> Self {
        let h = stats.handoff.clone().unwrap_or_default();
        let c = stats.counters;
        Self {
            pid,
            started_at_s,
            read_at_s,
            handoff: handoff_json(&h),
            // Every counter of the table, under its name.
            counters: serde_json::to_value(c).unwrap_or_default(),
        }
    }
}

fn handoff_json(h: &Handoff) -> Value {
    json!({
        "attempts": h.attempts, "handed_off": h.handed_off, "active": h.active, "ended": h.ended,
        "adopted": h.adopted, "stalls": h.stalls, "unroutable": h.unroutable,
        "probes": h.probes, "dead_peers": h.dead_peers,
        "fallbacks": h.fallbacks, "by_frontend": h.by_frontend,
    })
}

/// Sums the hand-off figures of every instance (each daemon counts from zero).
pub fn handoff_totals(instances: &[Instance]) -> Value {
    let field = |name: &str| -> u64 { instances.iter().map(|i| i.handoff[name].as_u64().unwrap_or(0)).sum() };
    let mut fallbacks = std::collections::BTreeMap::<String, u64>::new();
    for i in instances {
        if let Some(map) = i.handoff["fallbacks"].as_object() {
            for (reason, n) in map {
                *fallbacks.entry(reason.clone()).or_default() += n.as_u64().unwrap_or(0);
            }
        }
    }
    json!({
        "attempts": field("attempts"), "handed_off": field("handed_off"), "adopted": field("adopted"),
        "ended": field("ended"), "stalls": field("stalls"), "unroutable": field("unroutable"),
        "probes": field("probes"), "dead_peers": field("dead_peers"),
        "fallbacks": fallbacks,
    })
}

/// Writes `report` to `<dir>/<stamp>.json`; returns the path.
pub fn write_json(dir: &Path, stamp: &str, report: &Value) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{stamp}.json"));
    fs::write(&path, serde_json::to_string_pretty(report)?).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
