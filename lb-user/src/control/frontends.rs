//! Staged frontends.
use tracing::info;

use super::{Control, ControlError};
use crate::store::{Kind, Read};
use lb_core::{
    error::ConfigError,
    model::{Farm, Frontend, Route, ServiceConfig},
    validate::{check_zone, farm_usable, stub_farm, stub_frontend, unnamed, validate, zones_meet},
};

impl Control {
    pub fn frontend_ids(&self) -> Result<Vec<u32>, ControlError> {
        Ok(self.store.read(|tx| tx.all::<Frontend>())?.into_iter().map(|(id, _)| id).collect())
    }

    pub fn frontend(&self, id: u32) -> Result<Frontend, ControlError> {
        self.store.read(|tx| tx.get::<Frontend>(id))?.ok_or_else(|| ControlError::missing("frontend", id))
    }

    pub fn create_frontend(&self, frontend: Frontend) -> Result<Frontend, ControlError> {
        self.store.write(|tx| {
            let mut frontend = frontend.clone();
            let id = tx.next_id(Kind::Frontend)?;
            frontend.frontend_id = Some(id);
            self.check_frontend(tx, &frontend).map_err(|e| match e {
                ControlError::Invalid(e) => ControlError::Invalid(unnamed(e, "frontend", id)),
                other => other,
            })?;
            tx.insert(id, &frontend)?;
            self.bump(tx, &frontend.zone)?;
            info!(frontend = id, zone = %frontend.zone, "frontend staged");
            Ok(frontend)
        })
    }

    /// Replaces frontend `id` with what `change` makes of it.
    pub fn update_frontend(&self, id: u32, change: impl Fn(Frontend) -> Result<Frontend, ControlError>) -> Result<(), ControlError> {
        self.store.write(|tx| {
            let old = tx.get::<Frontend>(id)?.ok_or_else(|| ControlError::missing("frontend", id))?;
            let new = Frontend { frontend_id: Some(id), ..change(old.clone())? };
            self.check_frontend(tx, &new)?;
            tx.insert(id, &new)?;
            self.bump(tx, &old.zone)?;
            if new.zone != old.zone {
                self.bump(tx, &new.zone)?;
            }
            info!(frontend = id, "frontend change staged");
            Ok(())
        })
    }

    pub fn delete_frontend(&self, id: u32) -> Result<(), ControlError> {
        self.store.write(|tx| {
            let old = tx.get::<Frontend>(id)?.ok_or_else(|| ControlError::missing("frontend", id))?;
            let routes: Vec<String> = tx.all::<Route>()?.into_iter().filter(|(_, r)| r.frontend_id == id).map(|(rid, _)| rid.to_string()).collect();
            if !routes.is_empty() {
                return Err(ControlError::Conflict(format!("frontend {id} is still used by route(s) {}; delete them first", routes.join(", "))));
            }
            tx.remove::<Frontend>(id)?;
            self.bump(tx, &old.zone)?;
            info!(frontend = id, "frontend deletion staged");
            Ok(())
        })
    }

    fn check_frontend(&self, tx: &impl Read, frontend: &Frontend) -> Result<(), ControlError> {
        let id = frontend.frontend_id.unwrap_or(0);
        check_zone("frontend", id, &frontend.zone, &self.zones)?;
        let mut farms = Vec::new();
        if let Some(farm_id) = frontend.default_farm_id {
            // A missing farm is reported by the compilation below.
            if let Some(farm) = tx.get::<Farm>(farm_id)? {
                if !farm_usable(&farm.zone, &frontend.zone) {
                    return Err(ConfigError::new(
                        "frontend",
                        Some(id),
                        "defaultFarmId",
                        format!("farm {farm_id} is in zone {:?}, not in the frontend's zone {:?} nor in all", farm.zone, frontend.zone),
                    )
                    .into());
                }
                farms.push(stub_farm(&farm));
            }
        }
        validate(&ServiceConfig { frontends: vec![frontend.clone()], farms, routes: vec![] })?;
        // Ports: no other frontend applied in the same zone may listen where this one does.
        for (other_id, other) in tx.all::<Frontend>()? {
            if other_id == id || !zones_meet(&other.zone, &frontend.zone) {
                continue;
            }
            validate(&ServiceConfig { frontends: vec![stub_frontend(&other), stub_frontend(frontend)], farms: vec![], routes: vec![] })?;
        }
        Ok(())
    }
}
