//! A blocking HTTP/1.1 GET over an established stream, and the response parser.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::client::HttpResponse;

pub(crate) fn http1_get<S: Read + Write>(stream: &mut S, host: &str, path: &str, timeout: Duration) -> Result<HttpResponse> {
    http1_request(stream, host, path, timeout, false)
}

/// One GET on `stream`; with `keep_alive` the request does not ask the server to close, so that
/// the next request can use the same connection (the response is read up to its length only).
pub(crate) fn http1_request<S: Read + Write>(stream: &mut S, host: &str, path: &str, timeout: Duration, keep_alive: bool) -> Result<HttpResponse> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lb-tests\r\nConnection: {connection}\r\n\r\n");
    stream.write_all(request.as_bytes()).context("sending HTTP/1.1 request")?;
    stream.flush()?;
    let deadline = Instant::now() + timeout * 2;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(resp) = parse_http1(&buf, false)? {
            return Ok(resp);
        }
        if Instant::now() >= deadline || buf.len() > 16 << 20 {
            bail!("HTTP/1.1 response incomplete after {} bytes", buf.len());
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !buf.is_empty() => break,
            Err(e) => return Err(e).context("reading HTTP/1.1 response"),
        }
    }
    parse_http1(&buf, true)?.ok_or_else(|| anyhow!("HTTP/1.1 response truncated: {:?}", String::from_utf8_lossy(&buf)))
}

/// Parses a complete response; `Ok(None)` if more bytes are needed (unless `eof`).
fn parse_http1(buf: &[u8], eof: bool) -> Result<Option<HttpResponse>> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default().to_string();
    let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    let rest = &buf[head_end + 4..];
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let body = if let Some(len) = header("content-length") {
        let len: usize = len.parse().context("content-length")?;
        if rest.len() < len {
            return Ok(None);
        }
        rest[..len].to_vec()
    } else if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        match dechunk(rest)? {
            Some(body) => body,
            None => return Ok(None),
        }
    } else if eof {
        rest.to_vec()
    } else {
        return Ok(None);
    };
    Ok(Some(HttpResponse { alpn: None, version, status, headers, body: String::from_utf8_lossy(&body).into_owned() }))
}

fn dechunk(mut rest: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).with_context(|| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(Some(body));
        }
        if rest.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}
