//! Staged farms and their servers. A server belongs to one farm and follows its zone;
//! deleting a farm deletes its servers.
use tracing::info;

use super::{Control, ControlError};
use crate::store::{Kind, Read, ServerRecord};
use lb_core::{
    model::{Farm, Frontend, Route, Server, ServiceConfig},
    validate::{check_zone, stub_farm, unnamed, validate},
};

/// The farm id a route action targets, if it names one.
pub(super) fn route_target(route: &Route) -> Option<u32> {
    (route.action.kind == "farm").then(|| route.action.target.as_deref()?.trim().parse().ok()).flatten()
}

fn invalid_new(e: ControlError, object: &str, id: u32) -> ControlError {
    match e {
        ControlError::Invalid(e) => ControlError::Invalid(unnamed(e, object, id)),
        other => other,
    }
}

impl Control {
    pub fn farm_ids(&self) -> Result<Vec<u32>, ControlError> {
        Ok(self.store.read(|tx| tx.all::<Farm>())?.into_iter().map(|(id, _)| id).collect())
    }

    pub fn farm(&self, id: u32) -> Result<Farm, ControlError> {
        self.store.read(|tx| tx.get::<Farm>(id))?.ok_or_else(|| ControlError::missing("farm", id))
    }

    pub fn create_farm(&self, farm: Farm) -> Result<Farm, ControlError> {
        self.store.write(|tx| {
            let mut farm = farm.clone();
            let id = tx.next_id(Kind::Farm)?;
            farm.farm_id = Some(id);
            farm.servers.clear();
            self.check_farm(&farm).map_err(|e| invalid_new(e, "farm", id))?;
            tx.insert(id, &farm)?;
            self.bump(tx, &farm.zone)?;
            info!(farm = id, zone = %farm.zone, "farm staged");
            Ok(farm)
        })
    }

    pub fn update_farm(&self, id: u32, change: impl Fn(Farm) -> Result<Farm, ControlError>) -> Result<(), ControlError> {
        self.store.write(|tx| {
            let old = tx.get::<Farm>(id)?.ok_or_else(|| ControlError::missing("farm", id))?;
            let mut new = Farm { farm_id: Some(id), ..change(old.clone())? };
            // Its servers must still make sense (a server without a port takes the farm's).
            let servers = tx.all::<ServerRecord>()?.into_iter().filter(|(_, s)| s.farm_id == id).map(|(_, s)| s.server).collect();
            self.check_farm(&Farm { servers, ..new.clone() })?;
            new.servers.clear();
            tx.insert(id, &new)?;
            self.bump(tx, &old.zone)?;
            if new.zone != old.zone {
                self.bump(tx, &new.zone)?;
            }
            info!(farm = id, "farm change staged");
            Ok(())
        })
    }

    /// Deletes a farm and its servers; refused (409) while a frontend or a route uses it.
    pub fn delete_farm(&self, id: u32) -> Result<(), ControlError> {
        self.store.write(|tx| {
            let old = tx.get::<Farm>(id)?.ok_or_else(|| ControlError::missing("farm", id))?;
            let mut users = Vec::new();
            for (fid, f) in tx.all::<Frontend>()? {
                if f.default_farm_id == Some(id) {
                    users.push(format!("frontend {fid} (defaultFarmId)"));
                }
            }
            for (rid, r) in tx.all::<Route>()? {
                if route_target(&r) == Some(id) {
                    users.push(format!("route {rid} (action.target)"));
                }
            }
            if !users.is_empty() {
                return Err(ControlError::Conflict(format!("farm {id} is still used by {}", users.join(", "))));
            }
            for (sid, server) in tx.all::<ServerRecord>()? {
                if server.farm_id == id {
                    tx.remove::<ServerRecord>(sid)?;
                }
            }
            tx.remove::<Farm>(id)?;
            self.bump(tx, &old.zone)?;
            info!(farm = id, "farm deletion staged (with its servers)");
            Ok(())
        })
    }

    fn check_farm(&self, farm: &Farm) -> Result<(), ControlError> {
        check_zone("farm", farm.farm_id.unwrap_or(0), &farm.zone, &self.zones)?;
        validate(&ServiceConfig { farms: vec![farm.clone()], ..Default::default() })?;
        Ok(())
    }

    pub fn server_ids(&self, farm_id: u32) -> Result<Vec<u32>, ControlError> {
        self.store.read(|tx| {
            tx.get::<Farm>(farm_id)?.ok_or_else(|| ControlError::missing("farm", farm_id))?;
            Ok(tx.all::<ServerRecord>()?.into_iter().filter(|(_, s)| s.farm_id == farm_id).map(|(id, _)| id).collect())
        })
    }

    pub fn server(&self, farm_id: u32, id: u32) -> Result<Server, ControlError> {
        self.store.read(|tx| server_in(tx, farm_id, id))
    }

    pub fn create_server(&self, farm_id: u32, server: Server) -> Result<Server, ControlError> {
        self.store.write(|tx| {
            let mut server = server.clone();
            let farm = tx.get::<Farm>(farm_id)?.ok_or_else(|| ControlError::missing("farm", farm_id))?;
            let id = tx.next_id(Kind::Server)?;
            server.server_id = Some(id);
            check_server(&farm, &server).map_err(|e| invalid_new(e, "server", id))?;
            tx.insert(id, &ServerRecord { farm_id, server: server.clone() })?;
            self.bump(tx, &farm.zone)?;
            info!(farm = farm_id, server = id, "server staged");
            Ok(server)
        })
    }

    pub fn update_server(&self, farm_id: u32, id: u32, change: impl Fn(Server) -> Result<Server, ControlError>) -> Result<(), ControlError> {
        self.store.write(|tx| {
            let old = server_in(tx, farm_id, id)?;
            let farm = tx.get::<Farm>(farm_id)?.ok_or_else(|| ControlError::missing("farm", farm_id))?;
            let new = Server { server_id: Some(id), ..change(old)? };
            check_server(&farm, &new)?;
            tx.insert(id, &ServerRecord { farm_id, server: new })?;
            self.bump(tx, &farm.zone)?;
            info!(farm = farm_id, server = id, "server change staged");
            Ok(())
        })
    }

    pub fn delete_server(&self, farm_id: u32, id: u32) -> Result<(), ControlError> {
        self.store.write(|tx| {
            server_in(tx, farm_id, id)?;
            let farm = tx.get::<Farm>(farm_id)?.ok_or_else(|| ControlError::missing("farm", farm_id))?;
            tx.remove::<ServerRecord>(id)?;
            self.bump(tx, &farm.zone)?;
            info!(farm = farm_id, server = id, "server deletion staged");
            Ok(())
        })
    }
}

fn server_in(tx: &impl Read, farm_id: u32, id: u32) -> Result<Server, ControlError> {
    tx.get::<Farm>(farm_id)?.ok_or_else(|| ControlError::missing("farm", farm_id))?;
    match tx.get::<ServerRecord>(id)? {
        Some(record) if record.farm_id == farm_id => Ok(record.server),
        _ => Err(ControlError::NotFound(format!("server {id} does not exist in farm {farm_id}"))),
    }
}

fn check_server(farm: &Farm, server: &Server) -> Result<(), ControlError> {
    validate(&ServiceConfig { farms: vec![Farm { servers: vec![server.clone()], ..stub_farm(farm) }], ..Default::default() })?;
    Ok(())
}
