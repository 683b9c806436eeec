//! Configuration errors: each names the object, its id and the field that is wrong.
use std::fmt;

/// A configuration the service refuses, with where: the API answers it as a 400 naming the
/// field, and a refresh refuses the whole configuration for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The kind of object at fault: `frontend`, `farm`, `server`, `route`, `rule`.
    pub object: &'static str,
    /// Its id; none when it has none yet (a create) or the id itself is missing.
    pub id: Option<u32>,
    /// The field at fault, as the API spells it (`defaultFarmId`, `action.target`).
    pub field: &'static str,
    /// What is wrong, for people.
    pub message: String,
}

impl ConfigError {
    /// An error about `field` of `object` `id`.
    pub fn new(object: &'static str, id: Option<u32>, field: &'static str, message: impl Into<String>) -> Self {
        Self { object, id, field, message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id {
            Some(id) => write!(f, "{} {}: field `{}`: {}", self.object, id, self.field, self.message),
            None => write!(f, "{}: field `{}`: {}", self.object, self.field, self.message),
        }
    }
}
