//! Staged routes and their rules. A route follows its frontend's zone, a rule its route's;
//! deleting a route deletes its rules.
use serde::Serialize;
use tracing::info;
use utoipa::ToSchema;

use super::{farms::route_target, staged::evaluation_order, Control, ControlError};
use crate::store::{Kind, Read, RuleRecord, WriteTx};
use lb_core::{
    error::ConfigError,
    model::{Farm, Frontend, Route, Rule, ServiceConfig},
    routing::CompiledRule,
    validate::{farm_usable, stub_farm, stub_frontend, unnamed, validate, ALL_ZONES},
};

/// Whether traffic follows a route as it is staged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum RouteStatus {
    /// Applied as staged.
    Ok,
    /// Staged, never applied: waits for a refresh.
    ToCreate,
    /// Changed since it was applied (itself or its rules): waits for a refresh.
    ToUpdate,
}

/// A route with its rules (nested, in id order) and its status.
#[derive(Debug, Clone)]
pub struct RouteView {
    pub route: Route,
    pub status: RouteStatus,
}

fn invalid_new(e: ControlError, object: &str, id: u32) -> ControlError {
    match e {
        ControlError::Invalid(e) => ControlError::Invalid(unnamed(e, object, id)),
        other => other,
    }
}

fn rules_of(tx: &impl Read, route_id: u32) -> Result<Vec<(u32, Rule)>, ControlError> {
    Ok(tx.all::<RuleRecord>()?.into_iter().filter(|(_, r)| r.route_id == route_id).map(|(id, r)| (id, r.rule)).collect())
}

fn route_in(tx: &impl Read, id: u32) -> Result<Route, ControlError> {
    tx.get::<Route>(id)?.ok_or_else(|| ControlError::missing("route", id))
}

impl Control {
    /// Route ids in evaluation order: reject first, then ascending weight, then creation.
    pub fn route_ids(&self) -> Result<Vec<u32>, ControlError> {
        Ok(evaluation_order(&self.store.read(|tx| tx.all::<Route>())?))
    }

    pub fn route(&self, id: u32) -> Result<RouteView, ControlError> {
        self.store.read(|tx| {
            let route = Route { rules: rules_of(tx, id)?.into_iter().map(|(_, r)| r).collect(), ..route_in(tx, id)? };
            let applied = tx.applied(self.zone())?.unwrap_or_default();
            let status = match applied.routes.iter().find(|r| r.route_id == Some(id)) {
                None => RouteStatus::ToCreate,
                Some(r) if *r == route => RouteStatus::Ok,
                Some(_) => RouteStatus::ToUpdate,
            };
            Ok(RouteView { route, status })
        })
    }

    pub fn create_route(&self, route: Route) -> Result<Route, ControlError> {
        self.store.write(|tx| {
            let mut route = route.clone();
            let id = tx.next_id(Kind::Route)?;
            route.route_id = Some(id);
            route.rules.clear();
            let zone = check_route(tx, &route).map_err(|e| invalid_new(e, "route", id))?;
            tx.insert(id, &route)?;
            self.bump(tx, &zone)?;
            info!(route = id, frontend = route.frontend_id, "route staged");
            Ok(route)
        })
    }

    pub fn update_route(&self, id: u32, change: impl Fn(Route) -> Result<Route, ControlError>) -> Result<(), ControlError> {
        self.store.write(|tx| {
            let old = route_in(tx, id)?;
            let old_zone = route_zone(tx, &old)?;
            let mut new = Route { route_id: Some(id), ..change(old)? };
            new.rules.clear();
            let zone = check_route(tx, &new)?;
            tx.insert(id, &new)?;
            self.bump(tx, &old_zone)?;
            if zone != old_zone {
                self.bump(tx, &zone)?;
            }
            info!(route = id, "route change staged");
            Ok(())
        })
    }

    /// Deletes a route and its rules.
    pub fn delete_route(&self, id: u32) -> Result<(), ControlError> {
        self.store.write(|tx| {
            let old = route_in(tx, id)?;
            let zone = route_zone(tx, &old)?;
            for (rule_id, _) in rules_of(tx, id)? {
                tx.remove::<RuleRecord>(rule_id)?;
            }
            tx.remove::<Route>(id)?;
            self.bump(tx, &zone)?;
            info!(route = id, "route deletion staged (with its rules)");
            Ok(())
        })
    }

    pub fn rule_ids(&self, route_id: u32) -> Result<Vec<u32>, ControlError> {
        self.store.read(|tx| {
            route_in(tx, route_id)?;
            Ok(rules_of(tx, route_id)?.into_iter().map(|(id, _)| id).collect())
        })
    }

    pub fn rule(&self, route_id: u32, id: u32) -> Result<Rule, ControlError> {
        self.store.read(|tx| rule_in(tx, route_id, id))
    }

    pub fn create_rule(&self, route_id: u32, rule: Rule) -> Result<Rule, ControlError> {
        self.store.write(|tx| {
            let mut rule = rule.clone();
            let route = route_in(tx, route_id)?;
            let id = tx.next_id(Kind::Rule)?;
            rule.rule_id = Some(id);
            CompiledRule::compile(&rule, id).map_err(|e| unnamed(e, "rule", id))?;
            tx.insert(id, &RuleRecord { route_id, rule: rule.clone() })?;
            self.bump_route(tx, &route)?;
            info!(route = route_id, rule = id, "rule staged");
            Ok(rule)
        })
    }

    pub fn update_rule(&self, route_id: u32, id: u32, change: impl Fn(Rule) -> Result<Rule, ControlError>) -> Result<(), ControlError> {
        self.store.write(|tx| {
            let old = rule_in(tx, route_id, id)?;
            let route = route_in(tx, route_id)?;
            let new = Rule { rule_id: Some(id), ..change(old)? };
            CompiledRule::compile(&new, id)?;
            tx.insert(id, &RuleRecord { route_id, rule: new })?;
            self.bump_route(tx, &route)?;
            info!(route = route_id, rule = id, "rule change staged");
            Ok(())
        })
    }

    pub fn delete_rule(&self, route_id: u32, id: u32) -> Result<(), ControlError> {
        self.store.write(|tx| {
            rule_in(tx, route_id, id)?;
            let route = route_in(tx, route_id)?;
            tx.remove::<RuleRecord>(id)?;
            self.bump_route(tx, &route)?;
            info!(route = route_id, rule = id, "rule deletion staged");
            Ok(())
        })
    }

    fn bump_route(&self, tx: &mut WriteTx, route: &Route) -> Result<(), ControlError> {
        let zone = route_zone(tx, route)?;
        Ok(self.bump(tx, &zone)?)
    }
}

fn rule_in(tx: &impl Read, route_id: u32, id: u32) -> Result<Rule, ControlError> {
    route_in(tx, route_id)?;
    match tx.get::<RuleRecord>(id)? {
        Some(record) if record.route_id == route_id => Ok(record.rule),
        _ => Err(ControlError::NotFound(format!("rule {id} does not exist in route {route_id}"))),
    }
}

/// A route's zone is its frontend's.
fn route_zone(tx: &impl Read, route: &Route) -> Result<String, ControlError> {
    Ok(tx.get::<Frontend>(route.frontend_id)?.map(|f| f.zone).unwrap_or_else(|| ALL_ZONES.to_string()))
}

/// Checks a route against its frontend and target farm; returns its zone.
fn check_route(tx: &impl Read, route: &Route) -> Result<String, ControlError> {
    let id = route.route_id.unwrap_or(0);
    let frontend = tx
        .get::<Frontend>(route.frontend_id)?
        .ok_or_else(|| ConfigError::new("route", Some(id), "frontendId", format!("frontend {} does not exist", route.frontend_id)))?;
    let mut farms = Vec::new();
    // A missing farm is reported by the compilation below.
    if let Some(farm) = route_target(route).map(|farm_id| tx.get::<Farm>(farm_id)).transpose()?.flatten() {
        if !farm_usable(&farm.zone, &frontend.zone) {
            let farm_id = farm.farm_id.unwrap_or(0);
            return Err(ConfigError::new(
                "route",
                Some(id),
                "action.target",
                format!("farm {farm_id} is in zone {:?}, not in the zone of frontend {} ({:?}) nor in all", farm.zone, route.frontend_id, frontend.zone),
            )
            .into());
        }
        farms.push(stub_farm(&farm));
    }
    validate(&ServiceConfig { frontends: vec![stub_frontend(&frontend)], farms, routes: vec![route.clone()] })?;
    Ok(frontend.zone)
}
