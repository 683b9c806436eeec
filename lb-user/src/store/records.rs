//! What the store keeps, one JSON value per id: the model's objects as the API stages
//! them (farms without their servers, routes without their rules: those have tables of
//! their own and name their parent), and refresh tasks.
use redb::TableDefinition;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use utoipa::ToSchema;

use lb_core::model::{Farm, Frontend, Route, Rule, Server};

/// The kinds of stored objects; each has its table and its id counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Frontend,
    Farm,
    Server,
    Route,
    Rule,
    Task,
}

impl Kind {
    pub const ALL: [Kind; 6] = [Kind::Frontend, Kind::Farm, Kind::Server, Kind::Route, Kind::Rule, Kind::Task];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Frontend => "frontend",
            Kind::Farm => "farm",
            Kind::Server => "server",
            Kind::Route => "route",
            Kind::Rule => "rule",
            Kind::Task => "task",
        }
    }

    pub(crate) fn table(self) -> TableDefinition<'static, u32, &'static [u8]> {
        TableDefinition::new(self.name())
    }

    pub(crate) fn counter_key(self) -> &'static str {
        match self {
            Kind::Frontend => "next.frontend",
            Kind::Farm => "next.farm",
            Kind::Server => "next.server",
            Kind::Route => "next.route",
            Kind::Rule => "next.rule",
            Kind::Task => "next.task",
        }
    }
}

/// A value kept in the table of its kind.
pub trait Record: Serialize + DeserializeOwned {
    const KIND: Kind;
}

impl Record for Frontend {
    const KIND: Kind = Kind::Frontend;
}
impl Record for Farm {
    const KIND: Kind = Kind::Farm;
}
impl Record for Route {
    const KIND: Kind = Kind::Route;
}

/// A server and the farm it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerRecord {
    pub farm_id: u32,
    pub server: Server,
}
impl Record for ServerRecord {
    const KIND: Kind = Kind::Server;
}

/// A rule and the route it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleRecord {
    pub route_id: u32,
    pub rule: Rule,
}
impl Record for RuleRecord {
    const KIND: Kind = Kind::Rule;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Todo,
    Doing,
    Done,
    Error,
}

/// A refresh, as `GET /task/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub id: u32,
    /// Always `refreshIplb`.
    #[schema(example = "refreshIplb")]
    pub action: String,
    pub status: TaskStatus,
    /// RFC 3339, UTC.
    #[schema(example = "2026-11-01T12:00:00Z")]
    pub creation_date: String,
    /// RFC 3339, UTC; null until the task ends.
    pub done_date: Option<String>,
    /// The zones this refresh applies.
    pub zones: Vec<String>,
    /// Percent done, 0..=100.
    pub progress: u8,
    /// Why the task ended in `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The node running the refresh (extension; zones served by several nodes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}
impl Record for Task {
    const KIND: Kind = Kind::Task;
}
