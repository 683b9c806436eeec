//! h2load (nghttp2's load generator) in the client namespace, and what it prints.

use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::netns::command_in;
use crate::proc::output_with_timeout;

/// The summary h2load prints at the end of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct H2loadReport {
    /// `finished in`: the run's wall time.
    pub secs: f64,
    pub req_per_s: f64,
    pub succeeded: u64,
    /// failed + errored + timeout.
    pub failed: u64,
    /// Response body bytes (`traffic: ... (N) data`).
    pub data_bytes: u64,
}

/// Runs `h2load <args>` in `ns`, bounded by `timeout`; fails when it exits with an error
/// or no request succeeded.
pub fn run(ns: &str, args: &[String], timeout: Duration) -> Result<H2loadReport> {
    let mut cmd = command_in(ns, "h2load");
    cmd.args(args);
    let out = output_with_timeout(&mut cmd, timeout).with_context(|| format!("h2load {args:?}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("h2load {args:?} failed ({}): {}{}", out.status, stdout.trim(), String::from_utf8_lossy(&out.stderr).trim());
    }
    let report = parse(&stdout).with_context(|| format!("reading h2load's output:\n{stdout}"))?;
    if report.succeeded == 0 {
        bail!("h2load {args:?}: no request succeeded:\n{stdout}");
    }
    Ok(report)
}

pub fn parse(text: &str) -> Result<H2loadReport> {
    let line = |prefix: &str| text.lines().find_map(|l| l.trim().strip_prefix(prefix)).with_context(|| format!("no `{prefix}` line"));
    // finished in 346.87ms, 1441.48 req/s, 0B/s
    let finished = line("finished in ")?;
    let mut parts = finished.split(',').map(str::trim);
    let secs = parse_duration(parts.next().unwrap_or(""))?;
    let req_per_s = parts.next().and_then(|p| p.strip_suffix(" req/s")).and_then(|p| p.parse().ok()).context("req/s in the `finished in` line")?;
    // requests: 500 total, 500 started, 500 done, 500 succeeded, 0 failed, 0 errored, 0 timeout
    let requests = line("requests: ")?;
    let count = |name: &str| -> Result<u64> {
        requests
            .split(',')
            .find_map(|p| p.trim().strip_suffix(name).map(str::trim))
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("`{name}` in the requests line"))
    };
    let failed = count(" failed")? + count(" errored")? + count(" timeout")?;
    // traffic: 0B (0) total, 87.40KB (89500) headers (space savings 0.00%), 1.46KB (1500) data
    let traffic = line("traffic: ")?;
    let data_bytes = traffic
        .split(',')
        .find(|p| p.trim_end().ends_with(" data"))
        .and_then(|p| p.split_once('(')?.1.split_once(')').map(|(n, _)| n.to_string()))
        .and_then(|n| n.parse().ok())
        .context("data bytes in the traffic line")?;
    Ok(H2loadReport { secs, req_per_s, succeeded: count(" succeeded")?, failed, data_bytes })
}

/// `346.87ms`, `12.5s`, `980us` as seconds.
fn parse_duration(text: &str) -> Result<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else {
        bail!("duration {text:?} has no unit");
    };
    Ok(number.parse::<f64>().with_context(|| format!("duration {text:?}"))? * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "\
starting benchmark...
progress: 100% done

finished in 346.87ms, 1441.48 req/s, 0B/s
requests: 500 total, 500 started, 500 done, 498 succeeded, 1 failed, 1 errored, 0 timeout
status codes: 500 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 0B (0) total, 87.40KB (89500) headers (space savings 0.00%), 1.46KB (1500) data
                     min         max         mean         sd        +/- sd
time for request:      140us     11.32ms      3.34ms      1.52ms    70.80%
";

    #[test]
    fn summary_lines_are_read() {
        let r = parse(OUTPUT).unwrap();
        assert!((r.secs - 0.34687).abs() < 1e-9);
        assert!((r.req_per_s - 1441.48).abs() < 1e-9);
        assert_eq!((r.succeeded, r.failed, r.data_bytes), (498, 2, 1500));
    }

    #[test]
    fn durations_in_every_unit() {
        assert!((parse_duration("980us").unwrap() - 0.00098).abs() < 1e-12);
        assert!((parse_duration("12.5s").unwrap() - 12.5).abs() < 1e-12);
        assert!(parse_duration("12").is_err());
    }
}
