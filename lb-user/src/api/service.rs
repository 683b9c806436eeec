//! Service-wide paths: pending changes, refresh and its tasks, status, zones, and the
//! catalogues of route actions, route rules and farm probes.
use axum::{extract::State, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    error::{ApiError, ErrorBody},
    extract::{parse, ApiPath, JsonBody},
    Api,
};
use crate::{
    cluster::node::NodeRecord,
    control::{PendingChange, ServiceStatus},
    store::Task,
};
use lb_core::probe::PROBES;
use lb_core::routing::FIELDS;

const TAG: &str = "service";

pub fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .routes(routes!(pending_changes))
        .routes(routes!(refresh))
        .routes(routes!(list_tasks))
        .routes(routes!(get_task))
        .routes(routes!(status))
        .routes(routes!(zones))
        .routes(routes!(zone_nodes))
        .routes(routes!(available_route_actions))
        .routes(routes!(available_route_rules))
        .routes(routes!(available_farm_probes))
}

/// Staged changes not yet applied, per zone (an object of zone `all` counts in every zone).
#[utoipa::path(get, path = "/pendingChanges", tag = TAG, responses((status = 200, body = Vec<PendingChange>)))]
async fn pending_changes(State(api): State<Api>) -> Result<Json<Vec<PendingChange>>, ApiError> {
    Ok(Json(api.run(|c| c.pending_changes()).await?))
}

/// `POST /refresh` body; empty (or no zone) refreshes every zone.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[serde(default)]
    pub zone: Option<String>,
}

/// Applies the staged configuration of a zone (or of every zone): validated whole, then
/// swapped in atomically. Follow the returned task with `GET /task/{id}`.
#[utoipa::path(post, path = "/refresh", tag = TAG, request_body(content = Option<RefreshRequest>, description = "`{\"zone\": z}`, or no body for every zone"),
    responses(
        (status = 200, description = "The refresh task, in `todo`", body = Task),
        (status = 400, description = "Unknown zone", body = ErrorBody),
    ))]
async fn refresh(State(api): State<Api>, body: JsonBody) -> Result<Json<Task>, ApiError> {
    let request: RefreshRequest = match body.0 {
        // The document allows `null` for "no body".
        None | Some(serde_json::Value::Null) => RefreshRequest::default(),
        Some(value) => parse("refresh", value)?,
    };
    Ok(Json(api.control.refresh(request.zone).await?))
}

/// Task ids (the last 1000 tasks).
#[utoipa::path(get, path = "/task", tag = TAG, responses((status = 200, description = "Task ids, ascending", body = Vec<u32>)))]
async fn list_tasks(State(api): State<Api>) -> Result<Json<Vec<u32>>, ApiError> {
    Ok(Json(api.run(|c| c.task_ids()).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TaskPath {
    id: u32,
}

/// One task: `todo`, `doing`, then `done` or `error` (with its message).
#[utoipa::path(get, path = "/task/{id}", tag = TAG, params(TaskPath),
    responses((status = 200, body = Task), (status = 404, description = "No such task", body = ErrorBody)))]
async fn get_task(State(api): State<Api>, ApiPath(p): ApiPath<TaskPath>) -> Result<Json<Task>, ApiError> {
    Ok(Json(api.run(move |c| c.task(p.id)).await?))
}

/// The service's state: its zone, pending changes, what traffic follows.
#[utoipa::path(get, path = "/status", tag = TAG, responses((status = 200, body = ServiceStatus)))]
async fn status(State(api): State<Api>) -> Result<Json<ServiceStatus>, ApiError> {
    Ok(Json(api.run(|c| c.status()).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ZonePath {
    name: String,
}

/// The live nodes serving a zone (extension): each node's applied revision, the last
/// revision it failed to apply and why, and how many servers its probes see up and down.
/// A node vanishes from the list when its etcd lease runs out (`--node-ttl`).
#[utoipa::path(get, path = "/zone/{name}/node", tag = TAG, params(ZonePath),
    responses((status = 200, body = Vec<NodeRecord>), (status = 404, description = "No such zone", body = ErrorBody),
        (status = 503, description = "etcd is unreachable", body = ErrorBody)))]
async fn zone_nodes(State(api): State<Api>, ApiPath(p): ApiPath<ZonePath>) -> Result<Json<Vec<NodeRecord>>, ApiError> {
    Ok(Json(api.run(move |c| c.nodes(&p.name)).await?))
}

/// The zones of the service: this daemon's first, then (several nodes sharing etcd) the
/// other zones that have live nodes.
#[utoipa::path(get, path = "/zone", tag = TAG, responses((status = 200, body = Vec<String>), (status = 503, description = "etcd is unreachable", body = ErrorBody)))]
async fn zones(State(api): State<Api>) -> Result<Json<Vec<String>>, ApiError> {
    Ok(Json(api.run(|c| c.zone_names()).await?))
}

/// A route action.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouteActionInfo {
    /// The action's `type`.
    pub name: String,
    /// The service type: `tcp`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What `target` names: `farm`, or null when the action takes none.
    pub destination: Option<String>,
}

/// Route actions a TCP route may take.
#[utoipa::path(get, path = "/availableRouteActions", tag = TAG, responses((status = 200, body = Vec<RouteActionInfo>)))]
async fn available_route_actions() -> Json<Vec<RouteActionInfo>> {
    Json(vec![
        RouteActionInfo { name: "farm".into(), kind: "tcp".into(), destination: Some("farm".into()) },
        RouteActionInfo { name: "reject".into(), kind: "tcp".into(), destination: None },
    ])
}

/// A rule field and the matches it takes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteRuleInfo {
    /// The rule's `field`.
    pub name: String,
    /// The service type: `tcp`.
    #[serde(rename = "type")]
    pub kind: String,
    pub matches: Vec<String>,
    /// Always false: no TCP field takes a `subField`.
    pub has_sub_field: bool,
    /// What `pattern` holds: `enum` (one of `values`), `string` or `cidr`.
    pub pattern: String,
    /// The allowed patterns of an `enum` field.
    pub values: Option<Vec<String>>,
}

/// Rule fields and matches a TCP route's rules may use.
#[utoipa::path(get, path = "/availableRouteRules", tag = TAG, responses((status = 200, body = Vec<RouteRuleInfo>)))]
async fn available_route_rules() -> Json<Vec<RouteRuleInfo>> {
    Json(
        FIELDS
            .iter()
            .map(|(name, matches)| {
                let (pattern, values) = match *name {
                    "protocol" => ("enum", Some(["tls", "tcp", "http/2.0", "http/1.1"].map(String::from).to_vec())),
                    "source" => ("cidr", None),
                    _ => ("string", None),
                };
                RouteRuleInfo {
                    name: name.to_string(),
                    kind: "tcp".into(),
                    matches: matches.iter().map(|m| m.to_string()).collect(),
                    has_sub_field: false,
                    pattern: pattern.into(),
                    values,
                }
            })
            .collect(),
    )
}

/// A probe type and the settings it takes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FarmProbeInfo {
    #[serde(rename = "type")]
    pub kind: String,
    pub matches: Vec<String>,
    pub method: Vec<String>,
    /// Whether `url` applies.
    #[serde(rename = "URL")]
    pub url: bool,
    /// Whether `negate` applies (with a match other than `default`).
    pub negatable: bool,
    /// The port probed when the probe's `port` is null (null: the server's port).
    pub default_port: Option<u16>,
}

/// Health-probe types a farm may use.
#[utoipa::path(get, path = "/availableFarmProbes", tag = TAG, responses((status = 200, body = Vec<FarmProbeInfo>)))]
async fn available_farm_probes() -> Json<Vec<FarmProbeInfo>> {
    Json(
        PROBES
            .iter()
            .map(|p| FarmProbeInfo {
                kind: p.name.into(),
                matches: p.matches.iter().map(|m| m.to_string()).collect(),
                method: p.methods.iter().map(|m| m.to_string()).collect(),
                url: p.url,
                negatable: p.matches.len() > 1,
                default_port: p.default_port,
            })
            .collect(),
    )
}
