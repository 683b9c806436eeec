//! `tls`: a full handshake offering the ALPN ids the farm's routes select on. When that
//! list is not empty, the server must select one of them: an h2 farm whose server fell back
//! to http/1.1 is down even though it still completes handshakes.
use super::{
    conn,
    error::ProbeError,
    spec::{alpn_list, ProbeSpec},
};

pub async fn probe(spec: &ProbeSpec) -> Result<(), ProbeError> {
    let ctx = conn::ctx(spec);
    let config = spec.tls.as_ref().ok_or_else(|| ctx.config("no TLS client configuration"))?;
    let tcp = conn::connect(spec).await?;
    let mut tls = conn::handshake(spec, tcp, config).await?;
    let selected = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    conn::finish(&mut tls).await;
    if spec.alpn.is_empty() {
        return Ok(());
    }
    match selected {
        Some(id) if spec.alpn.contains(&id) => Ok(()),
        Some(id) => Err(ctx.unhealthy(format!("server selected {}, expected one of {}", String::from_utf8_lossy(&id), alpn_list(&spec.alpn)))),
        None => Err(ctx.unhealthy(format!("server selected no ALPN protocol, expected one of {}", alpn_list(&spec.alpn)))),
    }
}
