//! `lbctl frontend create|update` flags → a `model::Frontend` body.
use clap::Args;
use serde_json::{Map, Value};

use super::{Body, Fields};
use crate::error::Error;
use crate::render::{Column, Kind};

#[derive(Debug, Clone, Default, Args)]
pub struct FrontendFields {
    /// Port(s) to listen on: `443`, `8000-8010` or `80,443`, each in 1..49151.
    #[arg(long, value_name = "PORTS")]
    pub port: Option<String>,
    /// Zone name, or `all`.
    #[arg(long, value_name = "ZONE")]
    pub zone: Option<String>,
    /// Farm that takes connections no route matches (else they are closed).
    #[arg(long, value_name = "FARM_ID")]
    pub default_farm: Option<u32>,
    /// Client CIDR allowed in (repeatable or comma-separated); not with --denied-source.
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    pub allowed_source: Vec<String>,
    /// Client CIDR refused before any TCP handshake (repeatable or comma-separated).
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    pub denied_source: Vec<String>,
    /// Address to listen on (repeatable or comma-separated); default every address.
    #[arg(long, value_name = "ADDRESS", value_delimiter = ',')]
    pub dedicated_ipfo: Vec<String>,
    /// Disable the frontend (`--disabled=false` enables it again).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub disabled: Option<bool>,
    /// Free-form name, shown in listings.
    #[arg(long, value_name = "NAME")]
    pub display_name: Option<String>,
    /// Seconds a client has to send its whole ClientHello (default 5).
    #[arg(long, value_name = "SECONDS")]
    pub inspect_timeout: Option<f64>,
    /// Live connections before new ones wait in the kernel's queue (default 20000).
    #[arg(long, value_name = "COUNT")]
    pub max_connections: Option<u32>,
    /// How routed bytes move: auto (XDP hand-off after the daemon's byte threshold), xdp
    /// (hand-off right after the ClientHello), splice or copy.
    #[arg(long, value_name = "MODE", value_parser = ["auto", "xdp", "splice", "copy"])]
    pub fastpath: Option<String>,
    /// Seconds a relayed connection may stay idle before it is closed (default 900; 0: never).
    #[arg(long, value_name = "SECONDS")]
    pub idle_timeout: Option<u32>,
}

impl Fields for FrontendFields {
    const KIND: &'static Kind = &FRONTEND;
    const REQUIRED: &'static [(&'static str, &'static str)] = &[("port", "port")];
    const NULLABLE: &'static [(&'static str, &'static str)] = &[
        ("default-farm", "defaultFarmId"),
        ("allowed-source", "allowedSource"),
        ("denied-source", "deniedSource"),
        ("dedicated-ipfo", "dedicatedIpfo"),
        ("display-name", "displayName"),
        ("inspect-timeout", "inspectTimeout"),
        ("max-connections", "maxConnections"),
        ("fastpath", "fastpath"),
        ("idle-timeout", "idleTimeout"),
    ];

    fn body(&self) -> Result<Map<String, Value>, Error> {
        let mut body = Body::default();
        body.set("port", self.port.as_ref());
        body.set("zone", self.zone.as_ref());
        body.set("defaultFarmId", self.default_farm);
        body.list("allowedSource", &self.allowed_source);
        body.list("deniedSource", &self.denied_source);
        body.list("dedicatedIpfo", &self.dedicated_ipfo);
        body.set("disabled", self.disabled);
        body.set("displayName", self.display_name.as_ref());
        body.set("inspectTimeout", self.inspect_timeout);
        body.set("maxConnections", self.max_connections);
        body.set("fastpath", self.fastpath.as_ref());
        body.set("idleTimeout", self.idle_timeout);
        Ok(body.into_map())
    }
}

pub static FRONTEND: Kind = Kind {
    noun: "frontend",
    collection: "frontend",
    id_keys: &["frontendId"],
    columns: &[
        Column::plain("ID", &["frontendId"]),
        Column::plain("PORT", &["port"]),
        Column::plain("ZONE", &["zone"]),
        Column::plain("DEFAULT FARM", &["defaultFarmId"]),
        Column::plain("ALLOWED", &["allowedSource"]),
        Column::plain("DENIED", &["deniedSource"]),
        Column::plain("IPFO", &["dedicatedIpfo"]),
        Column::plain("DISABLED", &["disabled"]),
        Column::plain("FASTPATH", &["fastpath"]),
        Column::plain("NAME", &["displayName"]),
    ],
};
