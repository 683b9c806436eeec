//! `pgsql`: sends an SSLRequest, the first message of a PostgreSQL session; a server
//! answers `S` (TLS accepted) or `N` (refused), either way it is up. An error response
//! (`E`) or anything else is down.
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    conn,
    error::{quote, ProbeError},
    spec::ProbeSpec,
};

/// Length 8, then the SSLRequest code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
/// Bound on an error response read for its message.
const ERROR_LIMIT: usize = 1024;

pub async fn probe(spec: &ProbeSpec) -> Result<(), ProbeError> {
    let ctx = conn::ctx(spec);
    let mut tcp = conn::connect(spec).await?;
    tcp.write_all(&SSL_REQUEST).await.map_err(ctx.io("sending the SSLRequest"))?;
    let answer = tcp.read_u8().await.map_err(ctx.io("reading the answer to the SSLRequest"))?;
    match answer {
        b'S' | b'N' => {
            conn::finish(&mut tcp).await;
            Ok(())
        }
        b'E' => {
            let mut rest = Vec::new();
            // The message is only for the error text; a failed read leaves it empty.
            let _ = conn::read_until(&mut tcp, &mut rest, ERROR_LIMIT, |_| false).await;
            let message = error_message(&rest).map_or_else(String::new, |m| format!(": {}", quote(m)));
            Err(ctx.unhealthy(format!("server answered the SSLRequest with an error{message}")))
        }
        other => Err(ctx.unhealthy(format!("server answered the SSLRequest with {}, expected S or N", quote(&[other])))),
    }
}

/// The `M` field of an ErrorResponse body (after its type byte): length, then fields of a
/// type byte and a NUL-terminated string.
fn error_message(body: &[u8]) -> Option<&[u8]> {
    let mut fields = body.get(4..)?;
    while let Some((&kind, rest)) = fields.split_first() {
        if kind == 0 {
            return None;
        }
        let end = rest.iter().position(|&b| b == 0)?;
        if kind == b'M' {
            return Some(&rest[..end]);
        }
        fields = &rest[end + 1..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::error_message;

    #[test]
    fn health_pgsql_error_message_is_read_from_the_m_field() {
        let body = b"\0\0\0\x20SFATAL\0MUnsupported frontend protocol\0\0";
        assert_eq!(error_message(body), Some(&b"Unsupported frontend protocol"[..]));
        assert_eq!(error_message(b"\0\0"), None);
        assert_eq!(error_message(b"\0\0\0\x08SFATAL"), None);
    }
}
