//! `lbctl rule create|update` flags → a `model::Rule` body.
use clap::Args;
use serde_json::{Map, Value};

use super::{Body, Fields};
use crate::error::Error;
use crate::render::{Column, Kind};

#[derive(Debug, Clone, Default, Args)]
pub struct RuleFields {
    /// What of the connection the rule reads (`host` is an alias of `sni`).
    #[arg(long, value_name = "FIELD", value_parser = ["protocol", "sni", "host", "alpn", "source"])]
    pub field: Option<String>,
    /// How the field is compared with --pattern (`in` takes a comma-separated list).
    #[arg(long = "match", value_name = "MATCH",
          value_parser = ["is", "in", "contains", "startswith", "endswith", "matches", "exists"])]
    pub match_: Option<String>,
    /// What the field is compared with, e.g. `http/2.0`, `example.com`, `10.0.0.0/8`.
    #[arg(long, value_name = "PATTERN")]
    pub pattern: Option<String>,
    /// Invert the result (`--negate=false` to clear).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub negate: Option<bool>,
    #[arg(long, value_name = "SUBFIELD")]
    pub sub_field: Option<String>,
    /// Free-form name, shown in listings.
    #[arg(long, value_name = "NAME")]
    pub display_name: Option<String>,
}

impl Fields for RuleFields {
    const KIND: &'static Kind = &RULE;
    const REQUIRED: &'static [(&'static str, &'static str)] = &[("field", "field"), ("match", "match")];
    const NULLABLE: &'static [(&'static str, &'static str)] = &[("pattern", "pattern"), ("sub-field", "subField"), ("display-name", "displayName")];

    fn body(&self) -> Result<Map<String, Value>, Error> {
        let mut body = Body::default();
        body.set("field", self.field.as_ref());
        body.set("match", self.match_.as_ref());
        body.set("pattern", self.pattern.as_ref());
        body.set("negate", self.negate);
        body.set("subField", self.sub_field.as_ref());
        body.set("displayName", self.display_name.as_ref());
        Ok(body.into_map())
    }
}

pub static RULE: Kind = Kind {
    noun: "rule",
    collection: "rule",
    id_keys: &["ruleId"],
    columns: &[
        Column::plain("ID", &["ruleId"]),
        Column::plain("FIELD", &["field"]),
        Column::plain("MATCH", &["match"]),
        Column::plain("NEGATE", &["negate"]),
        Column::plain("PATTERN", &["pattern"]),
        Column::plain("SUBFIELD", &["subField"]),
        Column::plain("NAME", &["displayName"]),
    ],
};
