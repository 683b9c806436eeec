//! curl in the client namespace: one process making `count` sequential transfers of one URL
//! (URL globbing, `?[1-N]`), each reported by its `--write-out` line.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::netns::command_in;
use crate::proc::output_with_timeout;

const WRITE_OUT: &str = "%{http_code} %{size_download} %{time_total} %{time_appconnect} %{time_starttransfer}\\n";

/// One transfer as curl timed it; times are seconds from the transfer's start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transfer {
    pub code: u16,
    pub bytes: u64,
    pub total_s: f64,
    /// TCP and TLS handshakes done (0 when the connection was reused).
    pub appconnect_s: f64,
    /// First response byte received.
    pub starttransfer_s: f64,
}

/// The window over which curl measures a transfer's speed against [`Limits::floor`].
pub const SLOW_SECS: u64 = 10;

/// How long curl may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Each transfer (`--max-time`).
    pub each: Duration,
    /// A transfer slower than this many bytes per second over [`SLOW_SECS`] is given up
    /// (`--speed-limit`): a stalled or trickling connection.
    pub floor: u64,
    /// The whole run (curl is killed past it).
    pub whole: Duration,
}

/// `curl <flags> https://<target><path>?[1-count]`, verifying the server with `ca`, within
/// `limits`: a transfer given up counts as failed (its code or size wrong). Fails when curl
/// printed no transfer at all, or ran past the whole run's limit.
pub fn transfers(ns: &str, target: SocketAddr, path: &str, count: usize, ca: &Path, flags: &[&str], limits: Limits) -> Result<Vec<Transfer>> {
    let url = format!("https://{target}{path}?[1-{count}]");
    let mut cmd = command_in(ns, "curl");
    cmd.args(["-sS", "-o", "/dev/null", "-w", WRITE_OUT, "--connect-timeout", "5"])
        .args(["--max-time", &limits.each.as_secs().max(1).to_string()])
        .args(["--speed-limit", &limits.floor.max(1).to_string()])
        .args(["--speed-time", &SLOW_SECS.to_string()])
        .arg("--cacert")
        .arg(ca)
        .args(flags)
        .arg(&url);
    let out = output_with_timeout(&mut cmd, limits.whole).with_context(|| format!("curl {flags:?} {url}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let transfers = parse(&text)?;
    if transfers.is_empty() {
        bail!("curl {flags:?} {url} made no transfer ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(transfers)
}

pub fn parse(text: &str) -> Result<Vec<Transfer>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let num = |i: usize| -> Result<f64> { f.get(i).and_then(|v| v.parse().ok()).with_context(|| format!("field {i} of curl line {line:?}")) };
            Ok(Transfer { code: num(0)? as u16, bytes: num(1)? as u64, total_s: num(2)?, appconnect_s: num(3)?, starttransfer_s: num(4)? })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_out_lines_are_read() {
        let t = parse("200 268435456 0.512 0.003 0.004\n000 0 0.001 0.000 0.000\n").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].code, t[0].bytes), (200, 268_435_456));
        assert!((t[0].appconnect_s - 0.003).abs() < 1e-12);
        assert_eq!(t[1].code, 0);
    }
}
