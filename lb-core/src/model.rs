//! The configuration objects of the IPLB TCP service (docs/api.md), as operators write them.
//! Field names and nulls follow the IPLB API (camelCase, `port` as a string, route action
//! target as a string). Values are kept as written; `snapshot` validates and compiles them.
use serde::{Deserialize, Serialize};

/// Where clients connect: ports and addresses, source ACL, routes to farms (IPLB `/tcp/frontend`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Frontend {
    /// Assigned by the service.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(read_only))]
    pub frontend_id: Option<u32>,
    /// `443`, `8000-8010` or `80,443`; each port in 1..=49151.
    pub port: String,
    /// The zone the object applies in, or `all`.
    #[serde(default = "zone_all")]
    pub zone: String,
    /// The farm for connections no route takes; none: they are closed.
    #[serde(default)]
    pub default_farm_id: Option<u32>,
    /// Only these source addresses or CIDRs may connect.
    #[serde(default)]
    pub allowed_source: Option<Vec<String>>,
    /// These source addresses or CIDRs may not connect.
    #[serde(default)]
    pub denied_source: Option<Vec<String>>,
    /// Addresses to listen on; none means every address (IPv4 and IPv6).
    #[serde(default)]
    pub dedicated_ipfo: Option<Vec<String>>,
    /// Kept in the configuration but not listening.
    #[serde(default)]
    pub disabled: bool,
    /// A name for people; not unique.
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
    #[cfg_attr(feature = "openapi", schema(maximum = 604800))]
    pub idle_timeout: Option<u32>,
}

/// How the bytes of a routed connection move once its server is chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// How a farm spreads new connections over its servers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    /// Weighted turns (smooth: servers interleaved).
    #[default]
    Roundrobin,
    /// Fewest live connections per unit of weight.
    Leastconn,
    /// A hash of the client address (Maglev): the same client, the same server.
    Source,
    /// The lowest-id server with room (`maxconn`), then the next.
    First,
}

/// Keeping a client on the server it got, on top of the farm's algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Stickiness {
    /// By the client's address.
    #[serde(rename = "sourceIp")]
    SourceIp,
}

/// A farm's health check of its servers (IPLB's probe object).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probe {
    /// `tcp`, `tls`, `http`, `smtp`, `mysql`, `pgsql` or `oco`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Seconds between checks.
    #[serde(default)]
    pub interval: Option<u32>,
    /// How the answer is judged: `default`, `status`, `contains` or `matches`, as the type allows.
    #[serde(default, rename = "match")]
    pub match_: Option<String>,
    /// What the answer is compared with.
    #[serde(default)]
    pub pattern: Option<String>,
    /// Inverts the match.
    #[serde(default)]
    pub negate: Option<bool>,
    /// HTTP method of an `http` probe.
    #[serde(default)]
    pub method: Option<String>,
    /// URL (or path) of an `http` probe.
    #[serde(default)]
    pub url: Option<String>,
    /// Port probed instead of the server's.
    #[serde(default)]
    pub port: Option<u16>,
    /// Probe over TLS even on servers without `ssl`.
    #[serde(default)]
    pub force_ssl: Option<bool>,
}

/// A group of servers one route or frontend sends connections to (IPLB `/tcp/farm`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Farm {
    /// Assigned by the service.
    #[serde(default)]
    pub farm_id: Option<u32>,
    /// The zone the object applies in, or `all`.
    #[serde(default = "zone_all")]
    pub zone: String,
    /// Default port of its servers.
    #[serde(default)]
    pub port: Option<u16>,
    /// The algorithm; default round robin.
    #[serde(default)]
    pub balance: Option<Balance>,
    /// Keep clients on their server; none: no stickiness.
    #[serde(default)]
    pub stickiness: Option<Stickiness>,
    /// The health check; none: servers are always up.
    #[serde(default)]
    pub probe: Option<Probe>,
    /// A name for people; not unique.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Only in configuration files: the API manages servers under `/tcp/farm/{id}/server`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<Server>,
}

/// Whether a server is in service; an inactive one is kept but takes nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ServerStatus {
    /// In service.
    #[default]
    Active,
    /// Kept in the configuration, given no connection.
    Inactive,
}

/// The PROXY protocol header a server receives before the client's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocolVersion {
    /// The text header.
    V1,
    /// The binary header, with ALPN and SNI TLVs when the hello was read.
    V2,
}

/// What happens to a server's connections when its probe marks it down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum OnMarkedDown {
    /// Close them, so clients reconnect to a server that is up.
    ShutdownSessions,
}

/// One backend of a farm (IPLB `/tcp/farm/{id}/server`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Server {
    /// Assigned by the service.
    #[serde(default)]
    pub server_id: Option<u32>,
    /// IPv4 or IPv6 address.
    pub address: String,
    /// Port probed instead of the server's.
    #[serde(default)]
    pub port: Option<u16>,
    /// Default active.
    #[serde(default)]
    pub status: Option<ServerStatus>,
    /// 0..=256; 0 takes no new connections; null means 1.
    #[serde(default)]
    pub weight: Option<u16>,
    /// Serves only when no regular server of the farm can.
    #[serde(default)]
    pub backup: bool,
    /// Health checks apply to this server.
    #[serde(default)]
    pub probe: bool,
    /// Probes speak TLS to this server.
    #[serde(default)]
    pub ssl: bool,
    /// Send this PROXY protocol header first; none: no header.
    #[serde(default)]
    pub proxy_protocol_version: Option<ProxyProtocolVersion>,
    /// What happens to live connections when the probe marks the server down; none: they stay.
    #[serde(default)]
    pub on_marked_down: Option<OnMarkedDown>,
    /// Concurrent connections the `first` algorithm gives this server before the next
    /// (beyond IPLB; null = unlimited).
    #[serde(default)]
    pub maxconn: Option<u32>,
    /// A name for people; not unique.
    #[serde(default)]
    pub display_name: Option<String>,
}

/// What a matching route does: send to a farm or reject.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RouteAction {
    /// `farm` or `reject`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The farm id, as a string (IPLB's wire format).
    #[serde(default)]
    pub target: Option<String>,
}

/// A frontend's conditional choice of farm, by its rules (IPLB `/tcp/route`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Route {
    /// Assigned by the service.
    #[serde(default)]
    pub route_id: Option<u32>,
    /// The frontend whose connections the route judges.
    pub frontend_id: u32,
    /// What the route does with a matching connection.
    pub action: RouteAction,
    /// 0..=255; lower is evaluated first.
    #[serde(default)]
    pub weight: Option<u16>,
    /// A name for people; not unique.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Only in configuration files: the API manages rules under `/tcp/route/{id}/rule`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
}

/// One condition of a route, on the source or the ClientHello (IPLB `/tcp/route/{id}/rule`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Assigned by the service.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(read_only))]
    pub rule_id: Option<u32>,
    /// What is looked at: `protocol`, `sni`, `host`, `alpn` or `source`.
    pub field: String,
    /// How the field is compared with `pattern`: `is`, `in`, `contains`, `startswith`, `endswith`, `matches`, `exists`.
    #[serde(rename = "match")]
    pub match_: String,
    /// Inverts the match.
    #[serde(default)]
    pub negate: bool,
    /// What the answer is compared with.
    #[serde(default)]
    pub pattern: Option<String>,
    /// IPLB's refinement of a field; no TCP field takes one.
    #[serde(default)]
    pub sub_field: Option<String>,
    /// A name for people; not unique.
    #[serde(default)]
    pub display_name: Option<String>,
}

/// A whole TCP service configuration: what a config file holds and what a refresh applies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceConfig {
    /// Every frontend.
    #[serde(default)]
    pub frontends: Vec<Frontend>,
    /// Every farm, with its servers.
    #[serde(default)]
    pub farms: Vec<Farm>,
    /// Every route, with its rules.
    #[serde(default)]
    pub routes: Vec<Route>,
}

fn zone_all() -> String {
    "all".to_string()
}
