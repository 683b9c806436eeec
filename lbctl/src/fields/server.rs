//! `lbctl server create|update` flags → a `model::Server` body.
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Args;
use lb_core::model::{OnMarkedDown, ProxyProtocolVersion, ServerStatus};
use serde_json::{Map, Value};

use super::{wire, Body, Fields};
use crate::error::Error;
use crate::render::{state_cell, Column, Kind};

#[derive(Debug, Clone, Default, Args)]
pub struct ServerFields {
    /// IPv4 or IPv6 address of the server.
    #[arg(long, value_name = "IP")]
    pub address: Option<String>,
    /// Port of the server (else the farm's).
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// `inactive` takes the server out of the farm.
    #[arg(long, value_name = "STATUS",
          value_parser = PossibleValuesParser::new(["active", "inactive"]).try_map(|s| wire::<ServerStatus>(&s)))]
    pub status: Option<ServerStatus>,
    /// Weight, 0..256 (0 takes no new connections; unset means 1).
    #[arg(long, value_name = "WEIGHT", value_parser = clap::value_parser!(u16).range(0..=256))]
    pub weight: Option<u16>,
    /// Use only when every non-backup server is down.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub backup: Option<bool>,
    /// Apply the farm's health probe to this server.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub probe: Option<bool>,
    /// Probes speak TLS to this server.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub ssl: Option<bool>,
    /// Send a PROXY protocol header to the server.
    #[arg(long, value_name = "VERSION",
          value_parser = PossibleValuesParser::new(["v1", "v2"]).try_map(|s| wire::<ProxyProtocolVersion>(&s)))]
    pub proxy_protocol: Option<ProxyProtocolVersion>,
    /// What happens to open connections when the server is marked down.
    #[arg(long, value_name = "ACTION",
          value_parser = PossibleValuesParser::new(["shutdown-sessions"]).try_map(|s| wire::<OnMarkedDown>(&s)))]
    pub on_marked_down: Option<OnMarkedDown>,
    /// Free-form name, shown in listings.
    #[arg(long, value_name = "NAME")]
    pub display_name: Option<String>,
}

impl Fields for ServerFields {
    const KIND: &'static Kind = &SERVER;
    const REQUIRED: &'static [(&'static str, &'static str)] = &[("address", "address")];
    const NULLABLE: &'static [(&'static str, &'static str)] = &[
        ("port", "port"),
        ("status", "status"),
        ("weight", "weight"),
        ("proxy-protocol", "proxyProtocolVersion"),
        ("on-marked-down", "onMarkedDown"),
        ("display-name", "displayName"),
    ];

    fn body(&self) -> Result<Map<String, Value>, Error> {
        let mut body = Body::default();
        body.set("address", self.address.as_ref());
        body.set("port", self.port);
        body.set("status", self.status);
        body.set("weight", self.weight);
        body.set("backup", self.backup);
        body.set("probe", self.probe);
        body.set("ssl", self.ssl);
        body.set("proxyProtocolVersion", self.proxy_protocol);
        body.set("onMarkedDown", self.on_marked_down);
        body.set("displayName", self.display_name.as_ref());
        Ok(body.into_map())
    }
}

pub static SERVER: Kind = Kind {
    noun: "server",
    collection: "server",
    id_keys: &["serverId"],
    columns: &[
        Column::plain("ID", &["serverId"]),
        Column::plain("ADDRESS", &["address"]),
        Column::plain("PORT", &["port"]),
        Column::plain("STATUS", &["status"]),
        Column::plain("WEIGHT", &["weight"]),
        Column::plain("BACKUP", &["backup"]),
        Column::plain("PROBE", &["probe"]),
        Column::plain("SSL", &["ssl"]),
        Column::plain("PROXY", &["proxyProtocolVersion"]),
        Column::with("STATE", &["serverState"], state_cell),
        Column::plain("NAME", &["displayName"]),
    ],
};
