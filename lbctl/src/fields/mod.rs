//! Typed flags of each object kind and their mapping to a JSON body with the API's field names
//! (those of `lb_core::model`). Only the flags given appear in the body, so the same mapping
//! serves a create and a partial update.
pub mod farm;
pub mod frontend;
pub mod route;
pub mod rule;
pub mod server;

use clap::Args;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use super::error::Error;
use super::render::Kind;

pub trait Fields: Args {
    /// Path segment, noun, id key and table columns.
    const KIND: &'static Kind;
    /// (JSON key, flag) that a created object must have.
    const REQUIRED: &'static [(&'static str, &'static str)];
    /// (flag, JSON key) of the fields `update --unset` may set to null.
    const NULLABLE: &'static [(&'static str, &'static str)];
    /// The fields given on the command line, by their JSON names.
    fn body(&self) -> Result<Map<String, Value>, Error>;
}

/// Builds a JSON object from optional values, skipping those not given.
#[derive(Debug, Default)]
pub struct Body(Map<String, Value>);

impl Body {
    pub fn set<T: Serialize>(&mut self, key: &str, value: Option<T>) {
        if let Some(value) = value {
            self.0.insert(key.to_string(), to_value(value));
        }
    }

    /// A repeatable flag: absent when not given (an empty list would clear the field).
    pub fn list(&mut self, key: &str, values: &[String]) {
        if !values.is_empty() {
            self.0.insert(key.to_string(), Value::from(values.to_vec()));
        }
    }

    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }
}

/// A model value (enum, probe, route action) as JSON, without its unset (`null`) members: a
/// body names only what the user gave.
pub fn to_value<T: Serialize>(value: T) -> Value {
    // The values are plain model data (strings, numbers, enums): serializing cannot fail.
    let mut value = serde_json::to_value(value).expect("model values serialize to JSON");
    if let Value::Object(map) = &mut value {
        map.retain(|_, v| !v.is_null());
    }
    value
}

/// Parses a flag value the way the API does, through the model type's serde names, so flags
/// accept exactly the wire values (`roundrobin`, `sourceIp`, `v2`, `shutdown-sessions`).
pub fn wire<T: DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(Value::String(s.to_string())).map_err(|e| e.to_string())
}
