//! `oco`: the OVHcloud monitoring agent's port (79 unless the probe's `port` says
//! otherwise) answers on connect; the server is healthy when the answer says `OK`.
use super::{
    conn::{self, End},
    error::{quote, ProbeError},
    spec::ProbeSpec,
};

const ANSWER_LIMIT: usize = 4096;

pub async fn probe(spec: &ProbeSpec) -> Result<(), ProbeError> {
    let ctx = conn::ctx(spec);
    let mut stream = conn::open(spec).await?;
    let mut answer = Vec::new();
    let end = conn::read_until(&mut stream, &mut answer, ANSWER_LIMIT, says_ok).await.map_err(ctx.io("reading the answer"))?;
    conn::finish(&mut stream).await;
    match end {
        End::Done => Ok(()),
        _ if answer.is_empty() => Err(ctx.closed("waiting for an answer")),
        _ => Err(ctx.unhealthy(format!("answer {} does not say OK", quote(&answer)))),
    }
}

fn says_ok(answer: &[u8]) -> bool {
    answer.windows(2).any(|w| w == b"OK")
}
