//! The configuration objects of the IPLB TCP service (docs/api.md), as operators write them.
//! Field names and nulls follow the IPLB API (camelCase, `port` as a string, route action
//! target as a string). Values are kept as written; `snapshot` validates and compiles them.
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Frontend {
    /// Assigned by the service.
    #[serde(default)]
    #[schema(read_only)]
    pub frontend_id: Option<u32>,
    /// `443`, `8000-8010` or `80,443`; each port in 1..=49151.
    pub port: String,
    #[serde(default = "zone_all")]
    pub zone: String,
    #[serde(default)]
    pub default_farm_id: Option<u32>,
    #[serde(default)]
    pub allowed_source: Option<Vec<String>>,
    #[serde(default)]
    pub denied_source: Option<Vec<String>>,
    /// Addresses to listen on; none means every address (IPv4 and IPv6).
    #[serde(default)]
    pub dedicated_ipfo: Option<Vec<String>>,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub display_name: Option<String>,
    /// Seconds a client has to complete its ClientHello (beyond IPLB). Default 5.
    #[serde(default)]
    pub inspect_timeout: Option<f64>,
    /// Live connections before the frontend stops accepting new ones, which then wait in
    /// the kernel's queue (beyond IPLB). Default 20,000.
    #[serde(default)]
    pub max_connections: Option<u32>,
    /// How a routed connection's bytes move (beyond IPLB). Default `auto`.
    #[serde(default)]
    pub fastpath: Option<Fastpath>,
    /// Seconds a relayed connection may stay idle (neither side sending) before the daemon
    /// closes it; 0 disables the timeout (beyond IPLB). Default 900. Connections handed to
    /// the XDP program follow the daemon's `--handoff-idle-timeout` instead.
    #[serde(default)]
    #[schema(maximum = 604800)]
    pub idle_timeout: Option<u32>,
}

/// How the bytes of a routed connection move once its server is chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Fastpath {
    /// Handed off to the XDP program once the connection has moved the daemon's hand-off
    /// threshold of bytes (short connections stay in user space), splice(2) before that and
    /// whenever the hand-off is not possible.
    #[default]
    Auto,
    /// Handed off to the XDP program as soon as the ClientHello is forwarded; splice(2)
    /// when the hand-off is not possible.
    Xdp,
    /// splice(2) through a pipe, copy when the kernel refuses.
    Splice,
    /// Read and write through user-space buffers.
    Copy,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    #[default]
    Roundrobin,
    Leastconn,
    Source,
    First,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum Stickiness {
    #[serde(rename = "sourceIp")]
    SourceIp,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probe {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub interval: Option<u32>,
    #[serde(default, rename = "match")]
    pub match_: Option<String>,
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub negate: Option<bool>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub force_ssl: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Farm {
    #[serde(default)]
    pub farm_id: Option<u32>,
    #[serde(default = "zone_all")]
    pub zone: String,
    /// Default port of its servers.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub balance: Option<Balance>,
    #[serde(default)]
    pub stickiness: Option<Stickiness>,
    #[serde(default)]
    pub probe: Option<Probe>,
    #[serde(default)]
    pub display_name: Option<String>,
    /// Only in configuration files: the API manages servers under `/tcp/farm/{id}/server`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<Server>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServerStatus {
    #[default]
    Active,
    Inactive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocolVersion {
    V1,
    V2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnMarkedDown {
    ShutdownSessions,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Server {
    #[serde(default)]
    pub server_id: Option<u32>,
    pub address: String,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub status: Option<ServerStatus>,
    /// 0..=256; 0 takes no new connections; null means 1.
    #[serde(default)]
    pub weight: Option<u16>,
    #[serde(default)]
    pub backup: bool,
    #[serde(default)]
    pub probe: bool,
    #[serde(default)]
    pub ssl: bool,
    #[serde(default)]
    pub proxy_protocol_version: Option<ProxyProtocolVersion>,
    #[serde(default)]
    pub on_marked_down: Option<OnMarkedDown>,
    /// Concurrent connections the `first` algorithm gives this server before the next
    /// (beyond IPLB; null = unlimited).
    #[serde(default)]
    pub maxconn: Option<u32>,
    #[serde(default)]
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteAction {
    #[serde(rename = "type")]
    pub kind: String,
    /// The farm id, as a string (IPLB's wire format).
    #[serde(default)]
    pub target: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Route {
    #[serde(default)]
    pub route_id: Option<u32>,
    pub frontend_id: u32,
    pub action: RouteAction,
    /// 0..=255; lower is evaluated first.
    #[serde(default)]
    pub weight: Option<u16>,
    #[serde(default)]
    pub display_name: Option<String>,
    /// Only in configuration files: the API manages rules under `/tcp/route/{id}/rule`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Assigned by the service.
    #[serde(default)]
    #[schema(read_only)]
    pub rule_id: Option<u32>,
    pub field: String,
    #[serde(rename = "match")]
    pub match_: String,
    #[serde(default)]
    pub negate: bool,
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub sub_field: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
}

/// A whole TCP service configuration: what a config file holds and what a refresh applies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceConfig {
    #[serde(default)]
    pub frontends: Vec<Frontend>,
    #[serde(default)]
    pub farms: Vec<Farm>,
    #[serde(default)]
    pub routes: Vec<Route>,
}

fn zone_all() -> String {
    "all".to_string()
}
