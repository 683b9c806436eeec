//! `mysql`: a MySQL or MariaDB server greets every connection with a handshake packet of
//! protocol version 10; an error packet (0xff: too many connections, host blocked) is down.
use tokio::io::AsyncReadExt;

use super::{
    conn,
    error::{quote, ProbeError},
    spec::{ProbeSpec, MAX_ANSWER},
};

const PROTOCOL_V10: u8 = 0x0a;
const ERROR_PACKET: u8 = 0xff;

pub async fn probe(spec: &ProbeSpec) -> Result<(), ProbeError> {
    let ctx = conn::ctx(spec);
    let mut tcp = conn::connect(spec).await?;
    let mut header = [0u8; 4];
    tcp.read_exact(&mut header).await.map_err(ctx.io("reading the greeting"))?;
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    if len == 0 || len > MAX_ANSWER {
        return Err(ctx.unhealthy(format!("greeting packet of {len} bytes is not a MySQL greeting")));
    }
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await.map_err(ctx.io("reading the greeting"))?;
    conn::finish(&mut tcp).await;
    match payload[0] {
        PROTOCOL_V10 => Ok(()),
        ERROR_PACKET => Err(ctx.unhealthy(describe_error(&payload[1..]))),
        version => Err(ctx.unhealthy(format!("greeting has protocol version {version}, expected 10"))),
    }
}

/// Error packet after its 0xff: a little-endian code, an optional `#` and SQL state, text.
fn describe_error(rest: &[u8]) -> String {
    let Some((code, text)) = rest.split_first_chunk::<2>() else {
        return "server refused the connection with a truncated error packet".into();
    };
    let text = match text.first() {
        Some(b'#') if text.len() >= 6 => &text[6..],
        _ => text,
    };
    format!("server refused the connection: error {}: {}", u16::from_le_bytes(*code), quote(text))
}
