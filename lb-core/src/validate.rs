//! Checking configuration objects: on each write (one staged object, with what it
//! references looked up in the same transaction as the write) and on import. A write is
//! judged by compiling a small configuration made of the object and what it references
//! with [`snapshot::compile`](crate::snapshot::compile), the validation a refresh runs, so
//! that writes and refreshes judge alike; no balancer table is built for it.
//!
//! The daemon's staging code calls in here; nothing here knows about the store.
use std::collections::HashSet;

use crate::{
    error::ConfigError,
    model::{Farm, Frontend, ServiceConfig},
    snapshot,
};

/// The zone name of objects present in every zone.
pub const ALL_ZONES: &str = "all";

/// Whether an object of `object_zone` is part of `zone`'s configuration.
pub fn in_zone(object_zone: &str, zone: &str) -> bool {
    object_zone == zone || object_zone == ALL_ZONES
}

/// `zone` must be one of the service's zones, or `all`.
pub fn check_zone(object: &'static str, id: u32, zone: &str, zones: &[String]) -> Result<(), ConfigError> {
    if zone == ALL_ZONES || zones.iter().any(|z| z == zone) {
        return Ok(());
    }
    Err(ConfigError::new(object, Some(id), "zone", format!("unknown zone {zone:?}; this service has {} (or all)", zones.join(", "))))
}

/// Whether an object of `user_zone` may use a farm of `farm_zone`: a refresh of any zone
/// where the user exists must find the farm.
pub fn farm_usable(farm_zone: &str, user_zone: &str) -> bool {
    farm_zone == ALL_ZONES || farm_zone == user_zone
}

/// Whether two objects are applied together in some zone.
pub fn zones_meet(a: &str, b: &str) -> bool {
    a == ALL_ZONES || b == ALL_ZONES || a == b
}

/// A referenced frontend, stripped of its own references.
pub fn stub_frontend(frontend: &Frontend) -> Frontend {
    Frontend { default_farm_id: None, ..frontend.clone() }
}

/// A referenced farm, without its servers.
pub fn stub_farm(farm: &Farm) -> Farm {
    Farm { servers: Vec::new(), ..farm.clone() }
}

/// Everything a refresh would check of `config`, without building its run-time state.
pub fn validate(config: &ServiceConfig) -> Result<(), ConfigError> {
    snapshot::compile(config).map(|_| ())
}

/// On create, the id is not the client's yet: errors about the new object name none.
pub fn unnamed(mut e: ConfigError, object: &str, id: u32) -> ConfigError {
    if e.object == object && e.id == Some(id) {
        e.id = None;
    }
    e
}

/// Checks that a configuration file can be imported: every zone known, ids unique across
/// the service (rule ids included). Its compilation is [`snapshot::compile`]'s.
pub fn check_import(config: &ServiceConfig, zones: &[String]) -> Result<(), ConfigError> {
    for f in &config.frontends {
        check_zone("frontend", f.frontend_id.unwrap_or(0), &f.zone, zones)?;
    }
    for f in &config.farms {
        check_zone("farm", f.farm_id.unwrap_or(0), &f.zone, zones)?;
    }
    let mut rule_ids = HashSet::new();
    for rule in config.routes.iter().flat_map(|r| &r.rules) {
        let id = rule.rule_id.unwrap_or(0);
        if !rule_ids.insert(id) {
            return Err(ConfigError::new("rule", Some(id), "ruleId", "duplicate id: rule ids are unique across routes"));
        }
    }
    Ok(())
}
