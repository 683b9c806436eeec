//! `smtp`: the server greets with a 220 reply and answers `EHLO` with 250 (over TLS when
//! the server has `ssl`: SMTPS). Replies may span lines (`250-…` then `250 …`).
use tokio::io::AsyncWriteExt;

use super::{
    conn::{self, End, Stream},
    error::{quote, Ctx, ProbeError},
    spec::{ProbeSpec, MAX_ANSWER},
};

pub async fn probe(spec: &ProbeSpec) -> Result<(), ProbeError> {
    let ctx = conn::ctx(spec);
    let tcp = conn::connect(spec).await?;
    // EHLO names the client by its address literal (RFC 5321 §4.1.3).
    let helo = match tcp.local_addr() {
        Ok(a) if a.is_ipv6() => format!("[IPv6:{}]", a.ip()),
        Ok(a) => format!("[{}]", a.ip()),
        Err(_) => "lb-health.invalid".into(),
    };
    let mut stream = conn::wrap(spec, tcp).await?;
    let (code, banner) = read_reply(&mut stream, ctx, "reading the banner").await?;
    if code != 220 {
        return Err(ctx.unhealthy(format!("banner {} is not a 220 greeting", quote(&banner))));
    }
    stream.write_all(format!("EHLO {helo}\r\n").as_bytes()).await.map_err(ctx.io("sending EHLO"))?;
    let (code, reply) = read_reply(&mut stream, ctx, "reading the EHLO reply").await?;
    if code != 250 {
        return Err(ctx.unhealthy(format!("EHLO answered {}, expected 250", quote(&reply))));
    }
    let _ = stream.write_all(b"QUIT\r\n").await;
    conn::finish(&mut stream).await;
    Ok(())
}

/// One complete reply: its code and its text.
async fn read_reply(stream: &mut Stream, ctx: Ctx, step: &'static str) -> Result<(u16, Vec<u8>), ProbeError> {
    let mut reply = Vec::new();
    let end = conn::read_until(stream, &mut reply, MAX_ANSWER, |b| reply_end(b).is_some()).await.map_err(ctx.io(step))?;
    match (end, reply_end(&reply)) {
        (_, Some(last_line)) => {
            let code = reply.get(last_line..last_line + 3).and_then(|c| std::str::from_utf8(c).ok()).and_then(|c| c.parse().ok()).unwrap_or(0);
            Ok((code, reply))
        }
        (End::Full, None) => Err(ctx.unhealthy(format!("{step}: reply longer than {MAX_ANSWER} bytes"))),
        (_, None) if reply.is_empty() => Err(ctx.closed(step)),
        (_, None) => Err(ctx.unhealthy(format!("{step}: {} is not a complete SMTP reply", quote(&reply)))),
    }
}

/// Where the last line of a complete reply starts: the first whole line that is not a
/// continuation (`250-…`). A line without a code also ends it (and fails the check).
fn reply_end(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    while let Some(len) = buf[start..].iter().position(|&b| b == b'\n') {
        let line = buf[start..start + len].strip_suffix(b"\r").unwrap_or(&buf[start..start + len]);
        let continued = line.len() >= 4 && line[..3].iter().all(u8::is_ascii_digit) && line[3] == b'-';
        if !continued {
            return Some(start);
        }
        start += len + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::reply_end;

    #[test]
    fn health_smtp_reply_ends_on_a_line_without_continuation() {
        assert_eq!(reply_end(b"220 ready\r\n"), Some(0));
        assert_eq!(reply_end(b"250-a\r\n250-b\r\n"), None);
        assert_eq!(reply_end(b"250-a\r\n250 b\r\n"), Some(7));
        assert_eq!(reply_end(b"250\n"), Some(0));
        assert_eq!(reply_end(b"220 partial"), None);
        assert_eq!(reply_end(b"HTTP/1.1 400 Bad Request\r\n"), Some(0));
    }
}
