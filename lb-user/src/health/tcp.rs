//! `tcp`: the server accepts a connection (over TLS when it has `ssl`). With a `contains`
//! or `matches` match, its banner — the first line it sends, up to 4 KiB — must match.
use super::{
    conn::{self, End},
    error::ProbeError,
    spec::{Check, ProbeSpec},
};

const BANNER_LIMIT: usize = 4096;

pub async fn probe(spec: &ProbeSpec) -> Result<(), ProbeError> {
    let ctx = conn::ctx(spec);
    let mut stream = conn::open(spec).await?;
    if matches!(spec.check, Check::Default) {
        conn::finish(&mut stream).await;
        return Ok(());
    }
    let mut banner = Vec::new();
    let end = conn::read_until(&mut stream, &mut banner, BANNER_LIMIT, |b| b.contains(&b'\n')).await.map_err(ctx.io("reading the banner"))?;
    conn::finish(&mut stream).await;
    if banner.is_empty() && end == End::Eof {
        return Err(ctx.closed("waiting for a banner"));
    }
    let line = match banner.iter().position(|&b| b == b'\n') {
        Some(i) => &banner[..=i],
        None => &banner[..],
    };
    spec.expect_text("banner", line)
}
