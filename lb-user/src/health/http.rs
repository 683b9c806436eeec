//! `http`: one HTTP/1.1 request (`method` GET, HEAD or OPTIONS, `url`, `Host` and
//! `Connection: close`), over TLS when the server has `ssl` or the probe `forceSsl`. The
//! response is read up to 64 KiB. Match `default`: a 2xx or 3xx status; `status`: one of
//! the listed codes; `contains` / `matches`: the body; `negate` inverts the match.
use tokio::io::AsyncWriteExt;

use super::{
    conn::{self, End, Stream},
    error::{Ctx, ProbeError},
    http_response::{body_complete, decode_body, head_end, parse_head, Framing, Head},
    spec::{Check, ProbeSpec, MAX_ANSWER},
};

pub async fn probe(spec: &ProbeSpec) -> Result<(), ProbeError> {
    let ctx = conn::ctx(spec);
    let mut stream = conn::open(spec).await?;
    let request =
        format!("{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: lb-health-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n", spec.method, spec.url, spec.addr);
    stream.write_all(request.as_bytes()).await.map_err(ctx.io("sending the request"))?;
    stream.flush().await.map_err(ctx.io("sending the request"))?;
    let what = format!("{} {}", spec.method, spec.url);
    let mut buf = Vec::new();
    let head = read_head(&mut stream, &mut buf, ctx, spec.method == "HEAD").await.map_err(|e| match e {
        ProbeError::Unhealthy { probe, message } => ProbeError::Unhealthy { probe, message: format!("{what}: {message}") },
        other => other,
    })?;
    let status_ok = match &spec.check {
        Check::Default => Some(((200..400).contains(&head.status), "a 2xx or 3xx status".to_string())),
        Check::Status(codes) => {
            let list: Vec<String> = codes.iter().map(u16::to_string).collect();
            Some((codes.contains(&head.status), format!("status {}", list.join(" or "))))
        }
        Check::Contains(_) | Check::Matches(_) => None,
    };
    if let Some((hit, wanted)) = status_ok {
        conn::finish(&mut stream).await;
        return match (hit, spec.negate) {
            (true, false) | (false, true) => Ok(()),
            (false, false) => Err(ctx.unhealthy(format!("{what} answered {}, expected {wanted}", head.status))),
            (true, true) => Err(ctx.unhealthy(format!("{what} answered {}, expected anything but {wanted} (negated match)", head.status))),
        };
    }
    let body = read_body(&mut stream, &mut buf, &head, ctx).await?;
    conn::finish(&mut stream).await;
    spec.expect_text(&format!("body of {what}"), &body)
}

/// Reads up to the final head, skipping interim 1xx responses; `buf` keeps what follows it.
async fn read_head(stream: &mut Stream, buf: &mut Vec<u8>, ctx: Ctx, head_request: bool) -> Result<Head, ProbeError> {
    loop {
        let end = conn::read_until(stream, buf, MAX_ANSWER, |b| head_end(b).is_some()).await.map_err(ctx.io("reading the response"))?;
        let Some(len) = head_end(buf) else {
            return Err(match end {
                End::Full => ctx.unhealthy(format!("response head larger than {MAX_ANSWER} bytes")),
                _ if buf.is_empty() => ctx.closed("waiting for an answer"),
                _ => ctx.closed("reading the response head"),
            });
        };
        let head = parse_head(&buf[..len], head_request).map_err(|m| ctx.unhealthy(m))?;
        if (100..200).contains(&head.status) && head.status != 101 {
            buf.drain(..len);
            continue;
        }
        return Ok(head);
    }
}

/// The body as far as it arrives within the size bound (a truncated body is matched as is).
async fn read_body(stream: &mut Stream, buf: &mut Vec<u8>, head: &Head, ctx: Ctx) -> Result<Vec<u8>, ProbeError> {
    if head.framing != Framing::None {
        let start = head.len;
        conn::read_until(stream, buf, MAX_ANSWER, |b| body_complete(head.framing, &b[start..])).await.map_err(ctx.io("reading the response body"))?;
    }
    Ok(decode_body(head.framing, &buf[head.len..]))
}
