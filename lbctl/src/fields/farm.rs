//! `lbctl farm create|update` flags → a `model::Farm` body, its probe as a `model::Probe`.
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Args;
use lb_core::model::{Balance, Probe, Stickiness};
use serde_json::{Map, Value};

use super::{to_value, wire, Body, Fields};
use crate::error::Error;
use crate::render::{Column, Kind};

#[derive(Debug, Clone, Default, Args)]
pub struct FarmFields {
    /// Zone name, or `all`.
    #[arg(long, value_name = "ZONE")]
    pub zone: Option<String>,
    /// Default port of its servers.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Balancing method.
    #[arg(long, value_name = "METHOD",
          value_parser = PossibleValuesParser::new(["roundrobin", "leastconn", "source", "first"]).try_map(|s| wire::<Balance>(&s)))]
    pub balance: Option<Balance>,
    /// Keep a client on the same server.
    #[arg(long, value_name = "KIND", value_parser = PossibleValuesParser::new(["sourceIp"]).try_map(|s| wire::<Stickiness>(&s)))]
    pub stickiness: Option<Stickiness>,
    /// Free-form name, shown in listings.
    #[arg(long, value_name = "NAME")]
    pub display_name: Option<String>,
    /// Health probe type.
    #[arg(long, value_name = "TYPE", value_parser = ["tcp", "tls", "http", "smtp", "mysql", "pgsql", "oco"])]
    pub probe_type: Option<String>,
    /// Seconds between two probes (≥ 1; default 30).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..))]
    pub probe_interval: Option<u32>,
    /// How the probe judges the answer.
    #[arg(long, value_name = "MATCH", value_parser = ["default", "status", "contains", "matches"])]
    pub probe_match: Option<String>,
    /// What --probe-match compares the answer with.
    #[arg(long, value_name = "PATTERN")]
    pub probe_pattern: Option<String>,
    /// Invert the probe's match (needs --probe-match).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub probe_negate: Option<bool>,
    /// HTTP method of an `http` probe.
    #[arg(long, value_name = "METHOD", value_parser = ["GET", "HEAD", "OPTIONS"])]
    pub probe_method: Option<String>,
    /// URL (path) of an `http` probe.
    #[arg(long, value_name = "URL")]
    pub probe_url: Option<String>,
    /// Port probed instead of the server's.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub probe_port: Option<u16>,
    /// Probe over TLS even when the server is not `ssl`.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub probe_force_ssl: Option<bool>,
}

impl FarmFields {
    /// The probe flags given, as a probe object; `None` when no probe flag is given.
    fn probe(&self) -> Option<Probe> {
        let probe = Probe {
            kind: self.probe_type.clone(),
            interval: self.probe_interval,
            match_: self.probe_match.clone(),
            pattern: self.probe_pattern.clone(),
            negate: self.probe_negate,
            method: self.probe_method.clone(),
            url: self.probe_url.clone(),
            port: self.probe_port,
            force_ssl: self.probe_force_ssl,
        };
        (probe != Probe::default()).then_some(probe)
    }
}

impl Fields for FarmFields {
    const KIND: &'static Kind = &FARM;
    const REQUIRED: &'static [(&'static str, &'static str)] = &[];
    const NULLABLE: &'static [(&'static str, &'static str)] =
        &[("port", "port"), ("balance", "balance"), ("stickiness", "stickiness"), ("probe", "probe"), ("display-name", "displayName")];

    fn body(&self) -> Result<Map<String, Value>, Error> {
        let mut body = Body::default();
        body.set("zone", self.zone.as_ref());
        body.set("port", self.port);
        body.set("balance", self.balance);
        body.set("stickiness", self.stickiness);
        body.set("probe", self.probe().map(to_value));
        body.set("displayName", self.display_name.as_ref());
        Ok(body.into_map())
    }
}

pub static FARM: Kind = Kind {
    noun: "farm",
    collection: "farm",
    id_keys: &["farmId"],
    columns: &[
        Column::plain("ID", &["farmId"]),
        Column::plain("ZONE", &["zone"]),
        Column::plain("PORT", &["port"]),
        Column::plain("BALANCE", &["balance"]),
        Column::plain("STICKINESS", &["stickiness"]),
        Column::with("PROBE", &["probe"], probe_cell),
        Column::plain("NAME", &["displayName"]),
    ],
};

/// A probe: its type and interval (`http/30s`), the rest in `show`.
fn probe_cell(value: &Value) -> String {
    match value.get("type").or_else(|| value.get("interval")) {
        Some(_) => {
            let kind = value.get("type").and_then(Value::as_str).unwrap_or("tcp");
            match value.get("interval").and_then(Value::as_u64) {
                Some(seconds) => format!("{kind}/{seconds}s"),
                None => kind.to_string(),
            }
        }
        None => crate::render::cell(value),
    }
}
