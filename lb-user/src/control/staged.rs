//! The staged configuration as a whole: what a refresh of one zone compiles, and the
//! `--config` import that replaces it.
use std::collections::{BTreeMap, HashSet};

use tracing::info;

use super::{Control, ControlError};
use crate::store::{Kind, Read, RuleRecord, ServerRecord, StoreError, WriteTx};
use lb_core::{
    error::ConfigError,
    model::{Farm, Frontend, Route, ServiceConfig},
    validate::{check_import, in_zone},
};

/// The staged configuration of `zone`: frontends and farms of that zone or `all`, servers
/// with their farm, routes with their frontend, rules with their route; in id order.
pub(super) fn staged_config(tx: &impl Read, zone: &str) -> Result<ServiceConfig, StoreError> {
    let frontends: Vec<Frontend> = tx.all::<Frontend>()?.into_iter().map(|(_, f)| f).filter(|f| in_zone(&f.zone, zone)).collect();
    let frontend_ids: HashSet<u32> = frontends.iter().filter_map(|f| f.frontend_id).collect();
    let mut servers: BTreeMap<u32, Vec<_>> = BTreeMap::new();
    for (_, record) in tx.all::<ServerRecord>()? {
        servers.entry(record.farm_id).or_default().push(record.server);
    }
    let farms = tx
        .all::<Farm>()?
        .into_iter()
        .filter(|(_, f)| in_zone(&f.zone, zone))
        .map(|(id, farm)| Farm { servers: servers.remove(&id).unwrap_or_default(), ..farm })
        .collect();
    let mut rules: BTreeMap<u32, Vec<_>> = BTreeMap::new();
    for (_, record) in tx.all::<RuleRecord>()? {
        rules.entry(record.route_id).or_default().push(record.rule);
    }
    let routes = tx
        .all::<Route>()?
        .into_iter()
        .filter(|(_, r)| frontend_ids.contains(&r.frontend_id))
        .map(|(id, route)| Route { rules: rules.remove(&id).unwrap_or_default(), ..route })
        .collect();
    Ok(ServiceConfig { frontends, farms, routes })
}

/// Route ids in evaluation order: reject routes first, then ascending weight, then creation.
pub(super) fn evaluation_order(routes: &[(u32, Route)]) -> Vec<u32> {
    let mut keyed: Vec<(bool, u16, u32)> = routes.iter().map(|(id, r)| (r.action.kind != "reject", r.weight.unwrap_or(0), *id)).collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, _, id)| id).collect()
}

impl Control {
    /// The configuration last applied to this daemon's zone (empty if none ever was); on a
    /// node of several, the one this node serves (known even while etcd is unreachable).
    pub fn applied_config(&self) -> Result<ServiceConfig, ControlError> {
        if let Some(membership) = &self.membership {
            return Ok(membership.serving().as_ref().clone());
        }
        Ok(self.store.read(|tx| tx.applied(self.zone()))?.unwrap_or_default())
    }

    /// Imports `config` unless the zone already has an applied configuration (a node of
    /// several started with `--config`: the first one seeds the shared store). True when it
    /// imported.
    pub fn seed(&self, config: &ServiceConfig) -> Result<bool, ControlError> {
        self.check_import(config)?;
        let seeded = self.store.write(|tx| -> Result<bool, ControlError> {
            if tx.applied(self.zone())?.is_some() {
                return Ok(false);
            }
            self.replace_staged(tx, config)?;
            Ok(true)
        })?;
        if seeded {
            info!(
                frontends = config.frontends.len(),
                farms = config.farms.len(),
                routes = config.routes.len(),
                "seeded the shared store with the configuration file"
            );
        }
        Ok(seeded)
    }

    fn replace_staged(&self, tx: &mut WriteTx, config: &ServiceConfig) -> Result<(), ControlError> {
        for kind in [Kind::Frontend, Kind::Farm, Kind::Server, Kind::Route, Kind::Rule] {
            tx.clear(kind)?;
        }
        insert_all(tx, config)?;
        for zone in &self.zones {
            let applied = staged_config(tx, zone)?;
            tx.set_applied(zone, &applied)?;
            tx.set_pending(zone, 0)?;
        }
        Ok(())
    }

    /// Checks that a configuration file can be imported; see [`check_import`].
    pub fn check_import(&self, config: &ServiceConfig) -> Result<(), ConfigError> {
        check_import(config, &self.zones)
    }

    /// Replaces the staged configuration with `config` (already applied to traffic by the
    /// caller) and records it as applied in every zone: nothing is pending afterwards.
    pub fn import(&self, config: &ServiceConfig) -> Result<(), ControlError> {
        self.check_import(config)?;
        self.store.write(|tx| self.replace_staged(tx, config))?;
        info!(
            frontends = config.frontends.len(),
            farms = config.farms.len(),
            routes = config.routes.len(),
            "imported the configuration file: it is now the staged and applied configuration"
        );
        Ok(())
    }
}

fn insert_all(tx: &mut WriteTx, config: &ServiceConfig) -> Result<(), ControlError> {
    let id = |object: &'static str, field: &'static str, id: Option<u32>| id.ok_or_else(|| ConfigError::new(object, None, field, "missing id"));
    for f in &config.frontends {
        let fid = id("frontend", "frontendId", f.frontend_id)?;
        tx.insert(fid, f)?;
        tx.reserve_ids(Kind::Frontend, fid)?;
    }
    for farm in &config.farms {
        let farm_id = id("farm", "farmId", farm.farm_id)?;
        for server in &farm.servers {
            let sid = id("server", "serverId", server.server_id)?;
            tx.insert(sid, &ServerRecord { farm_id, server: server.clone() })?;
            tx.reserve_ids(Kind::Server, sid)?;
        }
        tx.insert(farm_id, &Farm { servers: Vec::new(), ..farm.clone() })?;
        tx.reserve_ids(Kind::Farm, farm_id)?;
    }
    for route in &config.routes {
        let route_id = id("route", "routeId", route.route_id)?;
        for rule in &route.rules {
            let rid = id("rule", "ruleId", rule.rule_id)?;
            tx.insert(rid, &RuleRecord { route_id, rule: rule.clone() })?;
            tx.reserve_ids(Kind::Rule, rid)?;
        }
        tx.insert(route_id, &Route { rules: Vec::new(), ..route.clone() })?;
        tx.reserve_ids(Kind::Route, route_id)?;
    }
    Ok(())
}
