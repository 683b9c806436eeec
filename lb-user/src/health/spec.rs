//! What one probe task checks, resolved once from a farm's probe and a server: the address
//! (the probe's `port` overriding the server's), whether it speaks TLS, the ALPN a `tls`
//! probe offers, the match and the time bounds. Probing itself reads only this.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use regex::{Regex, RegexBuilder};
use rustls::ClientConfig;

use super::{
    error::{quote, Ctx, ProbeError},
    tls_config,
};
use crate::dataplane::snapshot::ServerPlan;
use lb_core::model::Probe;
use lb_core::probe::PROBES;

/// Interval when the farm's probe does not set one (IPLB's default).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// A probe never takes longer than this, whatever its interval.
pub const MAX_PROBE_TIME: Duration = Duration::from_secs(10);
/// Bound on how much of an answer a probe reads (an HTTP response, a banner).
pub const MAX_ANSWER: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tcp,
    Tls,
    Http,
    Smtp,
    Mysql,
    Pgsql,
    Oco,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Tls => "tls",
            Kind::Http => "http",
            Kind::Smtp => "smtp",
            Kind::Mysql => "mysql",
            Kind::Pgsql => "pgsql",
            Kind::Oco => "oco",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        [Kind::Tcp, Kind::Tls, Kind::Http, Kind::Smtp, Kind::Mysql, Kind::Pgsql, Kind::Oco].into_iter().find(|k| k.name() == name)
    }
}

/// The probe's `match`, compiled.
#[derive(Debug, Clone)]
pub enum Check {
    /// The probe's own notion of success (for `http`: a 2xx or 3xx status).
    Default,
    /// `status`: one of these HTTP status codes.
    Status(Vec<u16>),
    /// `contains`: the answer (HTTP body, banner) contains the pattern.
    Contains(String),
    /// `matches`: the regular expression finds a match in the answer; `Err` when the pattern
    /// does not compile (validation refuses it, so only a hand-built probe gets here).
    Matches(Result<Regex, String>),
}

impl Check {
    fn compile(probe: &Probe) -> Self {
        let pattern = probe.pattern.clone().unwrap_or_default();
        match probe.match_.as_deref().unwrap_or("default") {
            "status" => Check::Status(pattern.split(',').filter_map(|c| c.trim().parse().ok()).collect()),
            "contains" => Check::Contains(pattern),
            "matches" => Check::Matches(
                RegexBuilder::new(&pattern).size_limit(1 << 20).build().map_err(|e| format!("regular expression {pattern:?} does not compile: {e}")),
            ),
            _ => Check::Default,
        }
    }

    /// Whether `text` satisfies a `contains` or `matches` check, and how to say it.
    pub fn text_matches(&self, text: &str) -> Result<(bool, String), String> {
        match self {
            Check::Contains(p) => Ok((text.contains(p.as_str()), format!("contain {p:?}"))),
            Check::Matches(Ok(re)) => Ok((re.is_match(text), format!("match /{}/", re.as_str()))),
            Check::Matches(Err(e)) => Err(e.clone()),
            Check::Default | Check::Status(_) => Ok((true, "be anything".into())),
        }
    }
}

/// Everything a probe task needs; built once per task.
#[derive(Debug, Clone)]
pub struct ProbeSpec {
    pub kind: Kind,
    pub farm_id: u32,
    pub server_id: u32,
    pub addr: SocketAddr,
    /// The connection is TLS (`tls` always; `http` with `ssl` or `forceSsl`; `tcp`, `smtp`
    /// and `oco` with `ssl`). `mysql` and `pgsql` negotiate TLS in their own protocol and
    /// are probed in clear.
    pub tls: Option<Arc<ClientConfig>>,
    /// ALPN ids a `tls` probe offers and requires the server to select one of.
    pub alpn: Vec<Vec<u8>>,
    pub check: Check,
    pub negate: bool,
    pub method: String,
    pub url: String,
    pub interval: Duration,
    /// Bound on one whole probe: min(interval, 10 s).
    pub timeout: Duration,
}

impl ProbeSpec {
    /// `probe` is the farm's (or the default `tcp` probe), `alpn` the farm's probe ALPN.
    pub fn new(farm_id: u32, probe: &Probe, server: &ServerPlan, alpn: &[Vec<u8>]) -> Result<Self, String> {
        let name = probe.kind.as_deref().unwrap_or("tcp");
        let kind = Kind::parse(name).ok_or_else(|| format!("unknown probe type {name:?}"))?;
        let default_port = PROBES.iter().find(|k| k.name == name).and_then(|k| k.default_port);
        let port = probe.port.or(default_port).unwrap_or(server.address.port());
        let interval = probe.interval.map_or(DEFAULT_INTERVAL, |s| Duration::from_secs(s.max(1).into()));
        let uses_tls = match kind {
            Kind::Tls => true,
            Kind::Http => server.ssl || probe.force_ssl == Some(true),
            Kind::Tcp | Kind::Smtp | Kind::Oco => server.ssl,
            Kind::Mysql | Kind::Pgsql => false,
        };
        let offered: Vec<Vec<u8>> = match kind {
            Kind::Tls => alpn.to_vec(),
            // The probe speaks HTTP/1.1 and says so.
            Kind::Http => vec![b"http/1.1".to_vec()],
            _ => Vec::new(),
        };
        let tls = if uses_tls { Some(tls_config::client_config(offered)?) } else { None };
        Ok(Self {
            kind,
            farm_id,
            server_id: server.id,
            addr: SocketAddr::new(server.address.ip(), port),
            tls,
            alpn: if kind == Kind::Tls { alpn.to_vec() } else { Vec::new() },
            check: Check::compile(probe),
            negate: probe.negate == Some(true),
            method: probe.method.clone().unwrap_or_else(|| "GET".into()),
            url: probe.url.clone().unwrap_or_else(|| "/".into()),
            interval,
            timeout: interval.min(MAX_PROBE_TIME),
        })
    }

    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// Applies a `contains` or `matches` check (and `negate`) to `answer`, which `what`
    /// names in the error (`banner`, `body of GET /`).
    pub fn expect_text(&self, what: &str, answer: &[u8]) -> Result<(), ProbeError> {
        let ctx = Ctx { probe: self.name(), addr: self.addr };
        let text = String::from_utf8_lossy(answer);
        let (hit, wanted) = self.check.text_matches(&text).map_err(|e| ctx.config(e))?;
        match (hit, self.negate) {
            (true, false) | (false, true) => Ok(()),
            (false, false) => Err(ctx.unhealthy(format!("{what} {} does not {wanted}", quote(answer)))),
            (true, true) => Err(ctx.unhealthy(format!("{what} {} does {wanted} (negated match)", quote(answer)))),
        }
    }
}

/// `h2, http/1.1` for messages.
pub fn alpn_list(ids: &[Vec<u8>]) -> String {
    ids.iter().map(|id| String::from_utf8_lossy(id).into_owned()).collect::<Vec<_>>().join(", ")
}
