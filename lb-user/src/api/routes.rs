//! `/tcp/route` and `/tcp/route/{routeId}/rule`.
use axum::{extract::State, http::StatusCode, Json};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    error::{ApiError, ErrorBody},
    extract::{merge, parse, ApiPath, JsonBody},
    objects::RouteBody,
    Api,
};
use crate::control::{RouteStatus, RouteView};
use lb_core::model::{Route, Rule};

const ROUTE: &str = "tcp/route";
const RULE: &str = "tcp/route/rule";

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct RoutePath {
    route_id: u32,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct RulePath {
    route_id: u32,
    rule_id: u32,
}

pub fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .routes(routes!(list_routes, create_route))
        .routes(routes!(get_route, update_route, delete_route))
        .routes(routes!(list_rules, create_rule))
        .routes(routes!(get_rule, update_rule, delete_rule))
}

/// Route ids in evaluation order: reject routes first, then ascending weight, then creation.
#[utoipa::path(get, path = "/tcp/route", tag = ROUTE, responses((status = 200, description = "Route ids in evaluation order", body = Vec<u32>)))]
async fn list_routes(State(api): State<Api>) -> Result<Json<Vec<u32>>, ApiError> {
    Ok(Json(api.run(|c| c.route_ids()).await?))
}

/// Stages a new route (without rules: add them under `/tcp/route/{routeId}/rule`).
#[utoipa::path(post, path = "/tcp/route", tag = ROUTE, request_body = RouteBody,
    responses(
        (status = 200, description = "The staged route, with its id", body = RouteBody),
        (status = 400, description = "Invalid route (frontend, action, target farm, weight…)", body = ErrorBody),
    ))]
async fn create_route(State(api): State<Api>, body: JsonBody) -> Result<Json<RouteBody>, ApiError> {
    let route: RouteBody = parse("route", body.required()?)?;
    let route = api.run(move |c| c.create_route(route.into())).await?;
    Ok(Json(RouteView { route, status: RouteStatus::ToCreate }.into()))
}

/// One route, as staged, with its rules and status.
#[utoipa::path(get, path = "/tcp/route/{routeId}", tag = ROUTE, params(RoutePath),
    responses((status = 200, body = RouteBody), (status = 404, description = "No such route", body = ErrorBody)))]
async fn get_route(State(api): State<Api>, ApiPath(p): ApiPath<RoutePath>) -> Result<Json<RouteBody>, ApiError> {
    Ok(Json(api.run(move |c| c.route(p.route_id)).await?.into()))
}

/// Stages a change of the given fields (`null` unsets); the others keep their value.
#[utoipa::path(put, path = "/tcp/route/{routeId}", tag = ROUTE, params(RoutePath), request_body = RouteBody,
    responses(
        (status = 204, description = "Staged"),
        (status = 400, description = "Invalid change", body = ErrorBody),
        (status = 404, description = "No such route", body = ErrorBody),
    ))]
async fn update_route(State(api): State<Api>, ApiPath(p): ApiPath<RoutePath>, body: JsonBody) -> Result<StatusCode, ApiError> {
    let patch = body.object()?;
    api.run(move |c| {
        c.update_route(p.route_id, |old| {
            let current = RouteBody::from(RouteView { route: old, status: RouteStatus::ToUpdate });
            Ok(Route::from(merge("route", &current, &patch)?))
        })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Stages the deletion of a route and its rules.
#[utoipa::path(delete, path = "/tcp/route/{routeId}", tag = ROUTE, params(RoutePath),
    responses((status = 204, description = "Staged"), (status = 404, description = "No such route", body = ErrorBody)))]
async fn delete_route(State(api): State<Api>, ApiPath(p): ApiPath<RoutePath>) -> Result<StatusCode, ApiError> {
    api.run(move |c| c.delete_route(p.route_id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rule ids of a route.
#[utoipa::path(get, path = "/tcp/route/{routeId}/rule", tag = RULE, params(RoutePath),
    responses((status = 200, description = "Rule ids, ascending", body = Vec<u32>), (status = 404, description = "No such route", body = ErrorBody)))]
async fn list_rules(State(api): State<Api>, ApiPath(p): ApiPath<RoutePath>) -> Result<Json<Vec<u32>>, ApiError> {
    Ok(Json(api.run(move |c| c.rule_ids(p.route_id)).await?))
}

/// Stages a new rule on a route (see `/availableRouteRules`).
#[utoipa::path(post, path = "/tcp/route/{routeId}/rule", tag = RULE, params(RoutePath), request_body = Rule,
    responses(
        (status = 200, description = "The staged rule, with its id", body = Rule),
        (status = 400, description = "Invalid rule (field, match, pattern, regex…)", body = ErrorBody),
        (status = 404, description = "No such route", body = ErrorBody),
    ))]
async fn create_rule(State(api): State<Api>, ApiPath(p): ApiPath<RoutePath>, body: JsonBody) -> Result<Json<Rule>, ApiError> {
    let rule: Rule = parse("rule", body.required()?)?;
    Ok(Json(api.run(move |c| c.create_rule(p.route_id, rule)).await?))
}

/// One rule, as staged.
#[utoipa::path(get, path = "/tcp/route/{routeId}/rule/{ruleId}", tag = RULE, params(RulePath),
    responses((status = 200, body = Rule), (status = 404, description = "No such route or rule", body = ErrorBody)))]
async fn get_rule(State(api): State<Api>, ApiPath(p): ApiPath<RulePath>) -> Result<Json<Rule>, ApiError> {
    Ok(Json(api.run(move |c| c.rule(p.route_id, p.rule_id)).await?))
}

/// Stages a change of the given fields (`null` unsets); the others keep their value.
#[utoipa::path(put, path = "/tcp/route/{routeId}/rule/{ruleId}", tag = RULE, params(RulePath), request_body = Rule,
    responses(
        (status = 204, description = "Staged"),
        (status = 400, description = "Invalid change", body = ErrorBody),
        (status = 404, description = "No such route or rule", body = ErrorBody),
    ))]
async fn update_rule(State(api): State<Api>, ApiPath(p): ApiPath<RulePath>, body: JsonBody) -> Result<StatusCode, ApiError> {
    let patch = body.object()?;
    api.run(move |c| c.update_rule(p.route_id, p.rule_id, |old| merge("rule", &old, &patch))).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Stages the deletion of a rule.
#[utoipa::path(delete, path = "/tcp/route/{routeId}/rule/{ruleId}", tag = RULE, params(RulePath),
    responses((status = 204, description = "Staged"), (status = 404, description = "No such route or rule", body = ErrorBody)))]
async fn delete_rule(State(api): State<Api>, ApiPath(p): ApiPath<RulePath>) -> Result<StatusCode, ApiError> {
    api.run(move |c| c.delete_rule(p.route_id, p.rule_id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
