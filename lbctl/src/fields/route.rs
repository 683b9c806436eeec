//! `lbctl route create|update` flags → a `model::Route` body, its action a `model::RouteAction`.
use clap::Args;
use lb_core::model::RouteAction;
use serde_json::{Map, Value};

use super::{to_value, Body, Fields};
use crate::error::Error;
use crate::render::{action_cell, rules_cell, Column, Kind};

#[derive(Debug, Clone, Default, Args)]
pub struct RouteFields {
    /// The frontend whose connections the route sorts.
    #[arg(long, value_name = "FRONTEND_ID")]
    pub frontend: Option<u32>,
    /// What the route does when its rules match (`farm` is implied by --target).
    #[arg(long, value_name = "ACTION", value_parser = ["farm", "reject"])]
    pub action: Option<String>,
    /// The farm of a `farm` action.
    #[arg(long, value_name = "FARM_ID")]
    pub target: Option<u32>,
    /// Evaluation order within reject routes and within farm routes, 0..255, lowest first.
    #[arg(long, value_name = "WEIGHT", value_parser = clap::value_parser!(u16).range(0..=255))]
    pub weight: Option<u16>,
    /// Free-form name, shown in listings.
    #[arg(long, value_name = "NAME")]
    pub display_name: Option<String>,
}

impl RouteFields {
    /// `--action`/`--target` as one action object; the API takes the action whole.
    fn action(&self) -> Result<Option<RouteAction>, Error> {
        let kind = match (self.action.as_deref(), self.target) {
            (None, None) => return Ok(None),
            (Some("reject"), Some(_)) => return Err(Error::Usage("--target goes with --action farm, not reject".into())),
            (Some("farm"), None) => return Err(Error::Usage("--action farm needs --target FARM_ID".into())),
            (Some(kind), _) => kind,
            (None, Some(_)) => "farm",
        };
        Ok(Some(RouteAction { kind: kind.to_string(), target: self.target.map(|farm| farm.to_string()) }))
    }
}

impl Fields for RouteFields {
    const KIND: &'static Kind = &ROUTE;
    const REQUIRED: &'static [(&'static str, &'static str)] = &[("frontendId", "frontend"), ("action", "action")];
    const NULLABLE: &'static [(&'static str, &'static str)] = &[("weight", "weight"), ("display-name", "displayName")];

    fn body(&self) -> Result<Map<String, Value>, Error> {
        let mut body = Body::default();
        body.set("frontendId", self.frontend);
        body.set("action", self.action()?.map(to_value));
        body.set("weight", self.weight);
        body.set("displayName", self.display_name.as_ref());
        Ok(body.into_map())
    }
}

pub static ROUTE: Kind = Kind {
    noun: "route",
    collection: "route",
    id_keys: &["routeId"],
    columns: &[
        Column::plain("ID", &["routeId"]),
        Column::plain("FRONTEND", &["frontendId"]),
        Column::with("ACTION", &["action"], action_cell),
        Column::plain("WEIGHT", &["weight"]),
        Column::with("RULES", &["rules"], rules_cell),
        Column::plain("STATUS", &["status"]),
        Column::plain("NAME", &["displayName"]),
    ],
};
