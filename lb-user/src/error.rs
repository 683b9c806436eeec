//! Configuration errors: each names the object, its id and the field that is wrong.
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub object: &'static str,
    pub id: Option<u32>,
    pub field: &'static str,
    pub message: String,
}

impl ConfigError {
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
