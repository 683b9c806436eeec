//! The daemon's configuration file, in the API's object model (camelCase JSON; servers nested
//! in farms, rules nested in routes), with small builders so tests state configs concisely:
//!
//! ```
//! use lb_tests::config::*;
//! let cfg = Config::new()
//!     .frontend(Frontend::new(1, "443").default_farm(2))
//!     .farm(Farm::new(1, "h2").server(Server::new(1, "10.77.2.2", 8443)))
//!     .farm(Farm::new(2, "h1").server(Server::new(2, "10.77.2.4", 8443)))
//!     .route(Route::to_farm(1, 1, 1).rule(Rule::new("protocol", "is", "http/2.0")));
//! assert!(cfg.to_json().contains("\"defaultFarmId\": 2"));
//! ```

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    pub frontends: Vec<Frontend>,
    pub farms: Vec<Farm>,
    pub routes: Vec<Route>,
}

impl Config {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn frontend(mut self, frontend: Frontend) -> Self {
        self.frontends.push(frontend);
        self
    }
    pub fn farm(mut self, farm: Farm) -> Self {
        self.farms.push(farm);
        self
    }
    pub fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| panic!("config serialises: {e}"))
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Frontend {
    pub frontend_id: u32,
    /// `443`, `8000-8010` or `80,443`.
    pub port: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_farm_id: Option<u32>,
    pub allowed_source: Vec<String>,
    pub denied_source: Vec<String>,
    /// Seconds a client has to send a complete ClientHello (daemon default 5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inspect_timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedicated_ipfo: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `auto`, `xdp`, `splice` or `copy` (daemon default `auto`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fastpath: Option<String>,
    /// Seconds a relayed connection may stay idle (daemon default 900; 0: never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<u32>,
}

impl Frontend {
    pub fn new(frontend_id: u32, port: &str) -> Self {
        Self {
            frontend_id,
            port: port.to_string(),
            default_farm_id: None,
            allowed_source: Vec::new(),
            denied_source: Vec::new(),
            inspect_timeout: None,
            max_connections: None,
            dedicated_ipfo: None,
            zone: None,
            disabled: None,
            display_name: None,
            fastpath: None,
            idle_timeout: None,
        }
    }
    /// Seconds a relayed connection may stay idle before the daemon closes it.
    pub fn idle_timeout(mut self, seconds: u32) -> Self {
        self.idle_timeout = Some(seconds);
        self
    }
    /// How routed connections' bytes move: `auto`, `xdp`, `splice` or `copy`.
    pub fn fastpath(mut self, fastpath: &str) -> Self {
        self.fastpath = Some(fastpath.to_string());
        self
    }
    pub fn default_farm(mut self, farm_id: u32) -> Self {
        self.default_farm_id = Some(farm_id);
        self
    }
    pub fn allowed(mut self, cidrs: &[&str]) -> Self {
        self.allowed_source = cidrs.iter().map(|c| c.to_string()).collect();
        self
    }
    pub fn denied(mut self, cidrs: &[&str]) -> Self {
        self.denied_source = cidrs.iter().map(|c| c.to_string()).collect();
        self
    }
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = Some(n);
        self
    }
    pub fn inspect_timeout(mut self, seconds: u64) -> Self {
        self.inspect_timeout = Some(seconds);
        self
    }
    pub fn dedicated_ipfo(mut self, addresses: &[&str]) -> Self {
        self.dedicated_ipfo = Some(addresses.iter().map(|a| a.to_string()).collect());
        self
    }
    pub fn named(mut self, name: &str) -> Self {
        self.display_name = Some(name.to_string());
        self
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Farm {
    pub farm_id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `roundrobin`, `leastconn`, `source` or `first`.
    pub balance: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stickiness: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<Probe>,
    pub servers: Vec<Server>,
}

impl Farm {
    pub fn new(farm_id: u32, name: &str) -> Self {
        Self {
            farm_id,
            display_name: Some(name.to_string()),
            port: None,
            balance: "roundrobin".to_string(),
            stickiness: None,
            zone: None,
            probe: None,
            servers: Vec::new(),
        }
    }
    /// The farm's health probe (applies to servers with `probe: true`).
    pub fn probe(mut self, probe: Probe) -> Self {
        self.probe = Some(probe);
        self
    }
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
    pub fn balance(mut self, balance: &str) -> Self {
        self.balance = balance.to_string();
        self
    }
    /// `stickiness: sourceIp`.
    pub fn sticky(mut self) -> Self {
        self.stickiness = Some("sourceIp".to_string());
        self
    }
    pub fn server(mut self, server: Server) -> Self {
        self.servers.push(server);
        self
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Server {
    pub server_id: u32,
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_protocol_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maxconn: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_marked_down: Option<String>,
}

impl Server {
    pub fn new(server_id: u32, address: &str, port: u16) -> Self {
        Self {
            server_id,
            address: address.to_string(),
            port: Some(port),
            weight: Some(1),
            status: None,
            backup: None,
            proxy_protocol_version: None,
            maxconn: None,
            on_marked_down: None,
            display_name: None,
            probe: None,
            ssl: None,
        }
    }
    /// `onMarkedDown: shutdown-sessions`: its open connections close when it goes down.
    pub fn shutdown_sessions_when_down(mut self) -> Self {
        self.on_marked_down = Some("shutdown-sessions".to_string());
        self
    }
    /// `probe: true`: the farm's probe checks this server.
    pub fn probed(mut self) -> Self {
        self.probe = Some(true);
        self
    }
    /// `ssl: true`: probes speak TLS to this server.
    pub fn ssl(mut self) -> Self {
        self.ssl = Some(true);
        self
    }
    pub fn maxconn(mut self, maxconn: u32) -> Self {
        self.maxconn = Some(maxconn);
        self
    }
    pub fn weight(mut self, weight: u16) -> Self {
        self.weight = Some(weight);
        self
    }
    pub fn named(mut self, name: &str) -> Self {
        self.display_name = Some(name.to_string());
        self
    }
}

/// A farm's health probe (`type` `tcp`, `tls`, `http`, `smtp`, `mysql`, `pgsql`, `oco`).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    #[serde(rename = "type")]
    pub kind: String,
    /// Seconds between probes (≥ 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<u32>,
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negate: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub force_ssl: Option<bool>,
}

impl Probe {
    pub fn new(kind: &str) -> Self {
        Self { kind: kind.to_string(), ..Self::default() }
    }
    pub fn interval(mut self, seconds: u32) -> Self {
        self.interval = Some(seconds);
        self
    }
    /// `match` (`default`, `status`, `contains`, `matches`) and its `pattern`.
    pub fn matching(mut self, match_: &str, pattern: &str) -> Self {
        self.match_ = Some(match_.to_string());
        self.pattern = Some(pattern.to_string());
        self
    }
    pub fn negate(mut self) -> Self {
        self.negate = Some(true);
        self
    }
    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_string());
        self
    }
    pub fn url(mut self, url: &str) -> Self {
        self.url = Some(url.to_string());
        self
    }
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
    pub fn force_ssl(mut self) -> Self {
        self.force_ssl = Some(true);
        self
    }
}

/// A route's action: `{"type":"farm","target":"<farmId>"}` or `{"type":"reject"}`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Action {
    Farm { target: String },
    Reject,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub route_id: u32,
    pub frontend_id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u8>,
    pub action: Action,
    pub rules: Vec<Rule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

impl Route {
    /// A route of `frontend_id` sending matching connections to `farm_id`.
    pub fn to_farm(route_id: u32, frontend_id: u32, farm_id: u32) -> Self {
        Self { route_id, frontend_id, weight: None, action: Action::Farm { target: farm_id.to_string() }, rules: Vec::new(), display_name: None }
    }
    /// A route of `frontend_id` closing matching connections.
    pub fn reject(route_id: u32, frontend_id: u32) -> Self {
        Self { action: Action::Reject, ..Self::to_farm(route_id, frontend_id, 0) }
    }
    pub fn weight(mut self, weight: u8) -> Self {
        self.weight = Some(weight);
        self
    }
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<u32>,
    /// `protocol`, `sni`, `alpn` or `source`.
    pub field: String,
    #[serde(rename = "match")]
    pub match_: String,
    pub pattern: String,
    pub negate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_field: Option<String>,
}

impl Rule {
    pub fn new(field: &str, match_: &str, pattern: &str) -> Self {
        Self { rule_id: None, field: field.to_string(), match_: match_.to_string(), pattern: pattern.to_string(), negate: false, sub_field: None }
    }
    pub fn negate(mut self) -> Self {
        self.negate = true;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_serialises_in_the_spec_object_model() {
        let cfg = Config::new()
            .frontend(Frontend::new(1, "443").default_farm(3).denied(&["10.77.1.3/32"]).inspect_timeout(1))
            .farm(Farm::new(1, "h2").port(8443).server(Server::new(1, "10.77.2.2", 8443)))
            .route(Route::to_farm(1, 1, 1).weight(0).rule(Rule::new("protocol", "is", "http/2.0")))
            .route(Route::reject(2, 1).rule(Rule::new("sni", "is", "blocked.lb.test")));
        let v: serde_json::Value = serde_json::from_str(&cfg.to_json()).unwrap();
        assert_eq!(v["frontends"][0]["defaultFarmId"], 3);
        assert_eq!(v["frontends"][0]["deniedSource"][0], "10.77.1.3/32");
        assert_eq!(v["frontends"][0]["inspectTimeout"], 1);
        assert_eq!(v["farms"][0]["servers"][0]["serverId"], 1);
        assert_eq!(v["routes"][0]["action"], serde_json::json!({"type": "farm", "target": "1"}));
        assert_eq!(v["routes"][0]["rules"][0]["match"], "is");
        assert_eq!(v["routes"][1]["action"], serde_json::json!({"type": "reject"}));
    }
}
