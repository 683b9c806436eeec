//! One probe of one server, whatever its type, bounded in time by the spec's timeout.
use super::{
    error::ProbeError,
    http, mysql, oco, pgsql, smtp,
    spec::{Kind, ProbeSpec},
    tcp, tls,
};

pub async fn probe_once(spec: &ProbeSpec) -> Result<(), ProbeError> {
    let probe = async {
        match spec.kind {
            Kind::Tcp => tcp::probe(spec).await,
            Kind::Tls => tls::probe(spec).await,
            Kind::Http => http::probe(spec).await,
            Kind::Smtp => smtp::probe(spec).await,
            Kind::Mysql => mysql::probe(spec).await,
            Kind::Pgsql => pgsql::probe(spec).await,
            Kind::Oco => oco::probe(spec).await,
        }
    };
    tokio::time::timeout(spec.timeout, probe).await.unwrap_or(Err(ProbeError::Timeout { probe: spec.name(), addr: spec.addr, timeout: spec.timeout }))
}
