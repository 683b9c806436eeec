//! Health-probe settings of a farm: the catalogue of probe types IPLB allows (what
//! `/availableFarmProbes` lists) and their validation. Checking servers is the job of the
//! health module; this only decides whether a probe is well formed.
use regex::RegexBuilder;

use crate::{error::ConfigError, model::Probe};

/// One probe type and what it accepts.
#[derive(Debug, Clone, Copy)]
pub struct ProbeKind {
    /// The `type` value.
    pub name: &'static str,
    /// Allowed `match` values; `default` means "the probe's own notion of success".
    pub matches: &'static [&'static str],
    /// Allowed `method` values (empty: the probe takes no method).
    pub methods: &'static [&'static str],
    /// Whether `url` applies.
    pub url: bool,
    /// The port probed when `port` is null (`None`: the server's port).
    pub default_port: Option<u16>,
}

/// Every probe type SPEC allows, as `/availableFarmProbes` lists them.
pub const PROBES: &[ProbeKind] = &[
    ProbeKind { name: "tcp", matches: &["default", "contains", "matches"], methods: &[], url: false, default_port: None },
    ProbeKind { name: "tls", matches: &["default"], methods: &[], url: false, default_port: None },
    ProbeKind { name: "http", matches: &["default", "status", "contains", "matches"], methods: &["GET", "HEAD", "OPTIONS"], url: true, default_port: None },
    ProbeKind { name: "smtp", matches: &["default"], methods: &[], url: false, default_port: None },
    ProbeKind { name: "mysql", matches: &["default"], methods: &[], url: false, default_port: None },
    ProbeKind { name: "pgsql", matches: &["default"], methods: &[], url: false, default_port: None },
    ProbeKind { name: "oco", matches: &["default"], methods: &[], url: false, default_port: Some(79) },
];

/// Checks a farm's probe; errors name the farm and the `probe.*` field.
pub fn validate(probe: &Probe, farm_id: u32) -> Result<(), ConfigError> {
    let err = |field: &'static str, message: String| ConfigError::new("farm", Some(farm_id), field, message);
    let name = probe.kind.as_deref().unwrap_or("tcp");
    let Some(kind) = PROBES.iter().find(|k| k.name == name) else {
        let names: Vec<&str> = PROBES.iter().map(|k| k.name).collect();
        return Err(err("probe.type", format!("unknown probe type {name:?}; expected one of {}", names.join(", "))));
    };
    let match_ = probe.match_.as_deref().unwrap_or("default");
    if probe.negate == Some(true) && match_ == "default" {
        return Err(err("probe.negate", "A probe can not negate without a match".into()));
    }
    if !kind.matches.contains(&match_) {
        return Err(err("probe.match", format!("a {name} probe does not take match {match_:?}; expected one of {}", kind.matches.join(", "))));
    }
    let pattern = probe.pattern.as_deref().unwrap_or("");
    match match_ {
        "default" => {}
        _ if pattern.is_empty() => return Err(err("probe.pattern", format!("match {match_:?} needs a pattern"))),
        "status" => {
            for code in pattern.split(',').map(str::trim) {
                if !code.parse::<u16>().is_ok_and(|c| (100..=599).contains(&c)) {
                    return Err(err("probe.pattern", format!("{code:?} is not an HTTP status code")));
                }
            }
        }
        "matches" => {
            RegexBuilder::new(pattern)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| err("probe.pattern", format!("regular expression {pattern:?} does not compile: {e}")))?;
        }
        _ => {}
    }
    if let Some(method) = probe.method.as_deref() {
        if !kind.methods.contains(&method) {
            let expected = if kind.methods.is_empty() { "it takes none".to_string() } else { format!("expected one of {}", kind.methods.join(", ")) };
            return Err(err("probe.method", format!("a {name} probe does not take method {method:?}; {expected}")));
        }
    }
    if let Some(url) = probe.url.as_deref() {
        if !kind.url {
            return Err(err("probe.url", format!("a {name} probe takes no url")));
        }
        if !url.starts_with('/') || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err("probe.url", format!("{url:?} is not a path starting with /")));
        }
    }
    if probe.port == Some(0) {
        return Err(err("probe.port", "port must be in 1..=65535".into()));
    }
    if probe.interval.is_some_and(|i| i < 1) {
        return Err(err("probe.interval", "interval must be at least 1 second".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(kind: &str, match_: Option<&str>, pattern: Option<&str>) -> Probe {
        Probe { kind: Some(kind.into()), match_: match_.map(Into::into), pattern: pattern.map(Into::into), ..Default::default() }
    }

    fn field(p: &Probe) -> Option<&'static str> {
        validate(p, 3).err().map(|e| e.field)
    }

    #[test]
    fn negate_without_a_match_is_refused_with_the_iplb_message() {
        let p = Probe { negate: Some(true), ..Default::default() };
        let e = validate(&p, 3).unwrap_err();
        assert_eq!((e.id, e.field, e.message.as_str()), (Some(3), "probe.negate", "A probe can not negate without a match"));
        let p = Probe { negate: Some(true), ..probe("http", Some("default"), None) };
        assert_eq!(field(&p), Some("probe.negate"));
        let p = Probe { negate: Some(true), ..probe("http", Some("status"), Some("200")) };
        assert_eq!(field(&p), None);
    }

    #[test]
    fn each_field_is_checked_against_the_probe_type() {
        assert_eq!(field(&Probe::default()), None, "tcp is the default");
        assert_eq!(field(&probe("icmp", None, None)), Some("probe.type"));
        assert_eq!(field(&probe("tls", Some("status"), Some("200"))), Some("probe.match"));
        assert_eq!(field(&probe("http", Some("contains"), None)), Some("probe.pattern"));
        assert_eq!(field(&probe("http", Some("status"), Some("200, 2000"))), Some("probe.pattern"));
        assert_eq!(field(&probe("tcp", Some("matches"), Some("("))), Some("probe.pattern"));
        assert_eq!(field(&probe("tcp", Some("matches"), Some("^220 "))), None);
        assert_eq!(field(&Probe { method: Some("GET".into()), ..probe("tcp", None, None) }), Some("probe.method"));
        assert_eq!(field(&Probe { method: Some("POST".into()), ..probe("http", None, None) }), Some("probe.method"));
        assert_eq!(field(&Probe { url: Some("/health".into()), method: Some("HEAD".into()), ..probe("http", None, None) }), None);
        assert_eq!(field(&Probe { url: Some("health".into()), ..probe("http", None, None) }), Some("probe.url"));
        assert_eq!(field(&Probe { url: Some("/".into()), ..probe("smtp", None, None) }), Some("probe.url"));
        assert_eq!(field(&Probe { port: Some(0), ..probe("oco", None, None) }), Some("probe.port"));
        assert_eq!(field(&Probe { interval: Some(0), ..Probe::default() }), Some("probe.interval"));
    }
}
