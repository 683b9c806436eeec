//! Real `curl` requests from inside a namespace.

use std::path::Path;

use anyhow::{Context, Result};

use crate::client::backend_from_body;
use crate::netns::run_in;

/// What curl reported for one request.
#[derive(Debug, Clone)]
pub struct CurlResult {
    /// `%{http_version}`: `2`, `1.1`, or `0` when no response arrived.
    pub http_version: String,
    /// `%{http_code}`: `000` (0) when no response arrived.
    pub code: u16,
    pub body: String,
    pub exit_ok: bool,
    pub stderr: String,
}

impl CurlResult {
    /// The answering backend's name (from the body `<name> <HTTP version>`).
    pub fn backend(&self) -> String {
        backend_from_body(&self.body)
    }
    /// `HTTP/2 200` style summary.
    pub fn status_line(&self) -> String {
        format!("HTTP/{} {}", self.http_version, self.code)
    }
}

/// `curl <version_flag> https://<host>:<port>/` from namespace `ns`, resolving `host` to `ip`,
/// trusting `ca`; bounded by `--max-time 5`.
pub fn curl_get(ns: &str, version_flag: &str, host: &str, port: u16, ip: &str, ca: &Path) -> Result<CurlResult> {
    curl_with_header(ns, version_flag, host, port, ip, ca, None).map(|(result, _)| result)
}

/// [`curl_get`], also returning the value of the response's header `header` (empty when the
/// response had none), read with curl's `%header{NAME}` (curl 7.84+). Values with spaces are
/// cut at the first one.
pub fn curl_get_header(ns: &str, version_flag: &str, host: &str, port: u16, ip: &str, ca: &Path, header: &str) -> Result<(CurlResult, String)> {
    curl_with_header(ns, version_flag, host, port, ip, ca, Some(header))
}

fn curl_with_header(ns: &str, version_flag: &str, host: &str, port: u16, ip: &str, ca: &Path, header: Option<&str>) -> Result<(CurlResult, String)> {
    let url = if port == 443 { format!("https://{host}/") } else { format!("https://{host}:{port}/") };
    let resolve = format!("{host}:{port}:{ip}");
    let ca = ca.display().to_string();
    let trailer_format = match header {
        Some(name) => format!("%{{http_version}} %{{http_code}} %header{{{name}}}"),
        None => "%{http_version} %{http_code}".to_string(),
    };
    let args = ["curl", version_flag, "-sS", "-o", "-", "-w", &trailer_format, "--max-time", "5", "--resolve", &resolve, "--cacert", &ca, &url];
    let out = run_in(ns, &args).with_context(|| format!("running curl {version_flag} {url}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // The body ends with '\n'; the -w trailer follows on the last line.
    let (body, trailer) = match stdout.rfind('\n') {
        Some(i) => (stdout[..=i].to_string(), stdout[i + 1..].to_string()),
        None => (String::new(), stdout.clone()),
    };
    let mut fields = trailer.split_whitespace();
    let http_version = fields.next().unwrap_or("0").to_string();
    let code = fields.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    let value = fields.next().unwrap_or_default().to_string();
    let result = CurlResult { http_version, code, body, exit_ok: out.status.success(), stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() };
    Ok((result, value))
}
