//! A sans-io reader of HTTP/1.x responses, for the `http` probe: bytes in, the status and
//! the body's framing out; then whether the body is complete and its decoded bytes. Lengths
//! come from the peer, so every one is checked against what was actually received.

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: a HEAD request, 1xx, 204, 304.
    None,
    Length(usize),
    Chunked,
    /// Until the server closes.
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Bytes of the status line and headers, blank line included.
    pub len: usize,
    pub framing: Framing,
}

/// Where the head ends (just after its blank line), once it is complete.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    while let Some(i) = buf[start..].iter().position(|&b| b == b'\n') {
        let line = &buf[start..start + i];
        if line.is_empty() || line == b"\r" {
            return Some(start + i + 1);
        }
        start += i + 1;
    }
    None
}

/// Parses a complete head (`head_end` bytes). `head_request`: the request was HEAD, so no
/// body follows whatever the headers say.
pub fn parse_head(head: &[u8], head_request: bool) -> Result<Head, String> {
    let text = std::str::from_utf8(head).map_err(|_| "response head is not text".to_string())?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(format!("{:?} is not an HTTP/1.x status line", truncate(status_line)));
    }
    let status: u16 = code.parse().ok().filter(|c| (100..=599).contains(c)).ok_or_else(|| format!("{code:?} is not a status code"))?;
    let mut length = None;
    let mut chunked = false;
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("header line {:?} has no colon", truncate(line)));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value.parse().map_err(|_| format!("Content-Length {:?} is not a number", truncate(value)))?;
            if length.is_some_and(|m| m != n) {
                return Err("conflicting Content-Length headers".into());
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.rsplit(',').next().is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        }
    }
    let framing = if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    Ok(Head { status, len: head.len(), framing })
}

/// Whether `body` (the bytes after the head) holds the whole body.
pub fn body_complete(framing: Framing, body: &[u8]) -> bool {
    match framing {
        Framing::None => true,
        Framing::Length(n) => body.len() >= n,
        Framing::Chunked => dechunk(body).1,
        Framing::UntilClose => false,
    }
}

/// The body's bytes as far as they were received (chunked framing removed).
pub fn decode_body(framing: Framing, body: &[u8]) -> Vec<u8> {
    match framing {
        Framing::None => Vec::new(),
        Framing::Length(n) => body[..n.min(body.len())].to_vec(),
        Framing::Chunked => dechunk(body).0,
        Framing::UntilClose => body.to_vec(),
    }
}

/// Decodes chunks; the flag says the last (zero-size) chunk was seen. A malformed or
/// truncated chunk ends decoding with what came before it.
fn dechunk(mut rest: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        let Some(eol) = rest.iter().position(|&b| b == b'\n') else { return (out, false) };
        let line = std::str::from_utf8(&rest[..eol]).unwrap_or_default();
        let size_hex = line.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_hex, 16) else { return (out, false) };
        if size == 0 {
            return (out, true);
        }
        rest = &rest[eol + 1..];
        if rest.len() < size {
            out.extend_from_slice(rest);
            return (out, false);
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size..];
        rest = rest.strip_prefix(b"\r\n").or_else(|| rest.strip_prefix(b"\n")).unwrap_or(rest);
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_http_head_is_found_and_parsed() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        let end = head_end(raw).unwrap();
        assert_eq!(&raw[end..], b"hello");
        let head = parse_head(&raw[..end], false).unwrap();
        assert_eq!((head.status, head.framing), (200, Framing::Length(5)));
        assert!(body_complete(head.framing, b"hello"));
        assert!(!body_complete(head.framing, b"hel"));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n"), None);
        assert_eq!(parse_head(&raw[..end], true).unwrap().framing, Framing::None);
    }

    #[test]
    fn health_http_bad_heads_are_refused() {
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n", false).unwrap_err().contains("status line"));
        assert!(parse_head(b"HTTP/1.1 2000 OK\r\n\r\n", false).is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nbroken\r\n\r\n", false).unwrap_err().contains("colon"));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false).is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", false).is_err());
    }

    #[test]
    fn health_http_chunked_bodies_are_decoded() {
        let head = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", false).unwrap();
        assert_eq!(head.framing, Framing::Chunked);
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
        assert!(body_complete(head.framing, body));
        assert_eq!(decode_body(head.framing, body), b"hello world");
        assert!(!body_complete(head.framing, &body[..12]));
        assert_eq!(decode_body(head.framing, &body[..12]), b"hello");
        assert_eq!(dechunk(b"zz\r\n"), (vec![], false));
    }

    #[test]
    fn health_http_bodyless_statuses_need_no_body() {
        for raw in [&b"HTTP/1.1 204 No Content\r\n\r\n"[..], b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n"] {
            assert_eq!(parse_head(raw, false).unwrap().framing, Framing::None);
        }
        assert_eq!(parse_head(b"HTTP/1.0 200 OK\r\n\r\n", false).unwrap().framing, Framing::UntilClose);
    }
}
