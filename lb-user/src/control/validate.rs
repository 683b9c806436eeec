//! Checking one staged object on write. Each check compiles a small configuration made of
//! the object and what it references (with `Snapshot::compile`, the validation a refresh
//! runs), so that writes and refreshes judge alike; references are looked up in the same
//! transaction as the write.
use crate::snapshot::Snapshot;
use lb_core::{error::ConfigError, model::{Farm, Frontend, ServiceConfig}};

use super::staged::ALL_ZONES;

/// `zone` must be one of the service's zones, or `all`.
pub(super) fn check_zone(object: &'static str, id: u32, zone: &str, zones: &[String]) -> Result<(), ConfigError> {
    if zone == ALL_ZONES || zones.iter().any(|z| z == zone) {
        return Ok(());
    }
    Err(ConfigError::new(object, Some(id), "zone", format!("unknown zone {zone:?}; this service has {} (or all)", zones.join(", "))))
}

/// Whether an object of `user_zone` may use a farm of `farm_zone`: a refresh of any zone
/// where the user exists must find the farm.
pub(super) fn farm_usable(farm_zone: &str, user_zone: &str) -> bool {
    farm_zone == ALL_ZONES || farm_zone == user_zone
}

/// Whether two objects are applied together in some zone.
pub(super) fn zones_meet(a: &str, b: &str) -> bool {
    a == ALL_ZONES || b == ALL_ZONES || a == b
}

/// A referenced frontend, stripped of its own references.
pub(super) fn stub_frontend(frontend: &Frontend) -> Frontend {
    Frontend { default_farm_id: None, ..frontend.clone() }
}

/// A referenced farm, without its servers.
pub(super) fn stub_farm(farm: &Farm) -> Farm {
    Farm { servers: Vec::new(), ..farm.clone() }
}

pub(super) fn compile(config: &ServiceConfig) -> Result<(), ConfigError> {
    Snapshot::compile(config).map(|_| ())
}

/// On create, the id is not the client's yet: errors about the new object name none.
pub(super) fn unnamed(mut e: ConfigError, object: &str, id: u32) -> ConfigError {
    if e.object == object && e.id == Some(id) {
        e.id = None;
    }
    e
}
