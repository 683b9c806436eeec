//! `/tcp/farm` and `/tcp/farm/{farmId}/server`.
use axum::{extract::State, http::StatusCode, Json};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    error::{ApiError, ErrorBody},
    extract::{merge, parse, ApiPath, JsonBody},
    objects::{FarmBody, ServerBody},
    Api,
};
use lb_core::model::{Farm, Server};

const FARM: &str = "tcp/farm";
const SERVER: &str = "tcp/farm/server";

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct FarmPath {
    farm_id: u32,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct ServerPath {
    farm_id: u32,
    server_id: u32,
}

pub fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .routes(routes!(list_farms, create_farm))
        .routes(routes!(get_farm, update_farm, delete_farm))
        .routes(routes!(list_servers, create_server))
        .routes(routes!(get_server, update_server, delete_server))
}

/// Farm ids.
#[utoipa::path(get, path = "/tcp/farm", tag = FARM, responses((status = 200, description = "Farm ids, ascending", body = Vec<u32>)))]
async fn list_farms(State(api): State<Api>) -> Result<Json<Vec<u32>>, ApiError> {
    Ok(Json(api.run(|c| c.farm_ids()).await?))
}

/// Stages a new farm.
#[utoipa::path(post, path = "/tcp/farm", tag = FARM, request_body = FarmBody,
    responses(
        (status = 200, description = "The staged farm, with its id", body = FarmBody),
        (status = 400, description = "Invalid farm (zone, port, balance, probe…)", body = ErrorBody),
    ))]
async fn create_farm(State(api): State<Api>, body: JsonBody) -> Result<Json<FarmBody>, ApiError> {
    let farm: FarmBody = parse("farm", body.required()?)?;
    Ok(Json(api.run(move |c| c.create_farm(farm.into())).await?.into()))
}

/// One farm, as staged.
#[utoipa::path(get, path = "/tcp/farm/{farmId}", tag = FARM, params(FarmPath),
    responses((status = 200, body = FarmBody), (status = 404, description = "No such farm", body = ErrorBody)))]
async fn get_farm(State(api): State<Api>, ApiPath(p): ApiPath<FarmPath>) -> Result<Json<FarmBody>, ApiError> {
    Ok(Json(api.run(move |c| c.farm(p.farm_id)).await?.into()))
}

/// Stages a change of the given fields (`null` unsets); the others keep their value.
#[utoipa::path(put, path = "/tcp/farm/{farmId}", tag = FARM, params(FarmPath), request_body = FarmBody,
    responses(
        (status = 204, description = "Staged"),
        (status = 400, description = "Invalid change", body = ErrorBody),
        (status = 404, description = "No such farm", body = ErrorBody),
    ))]
async fn update_farm(State(api): State<Api>, ApiPath(p): ApiPath<FarmPath>, body: JsonBody) -> Result<StatusCode, ApiError> {
    let patch = body.object()?;
    api.run(move |c| c.update_farm(p.farm_id, |old| Ok(Farm::from(merge::<FarmBody>("farm", &old.into(), &patch)?)))).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Stages the deletion of a farm and its servers.
#[utoipa::path(delete, path = "/tcp/farm/{farmId}", tag = FARM, params(FarmPath),
    responses(
        (status = 204, description = "Staged"),
        (status = 404, description = "No such farm", body = ErrorBody),
        (status = 409, description = "A route action or a frontend's defaultFarmId still uses it", body = ErrorBody),
    ))]
async fn delete_farm(State(api): State<Api>, ApiPath(p): ApiPath<FarmPath>) -> Result<StatusCode, ApiError> {
    api.run(move |c| c.delete_farm(p.farm_id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Server ids of a farm.
#[utoipa::path(get, path = "/tcp/farm/{farmId}/server", tag = SERVER, params(FarmPath),
    responses((status = 200, description = "Server ids, ascending", body = Vec<u32>), (status = 404, description = "No such farm", body = ErrorBody)))]
async fn list_servers(State(api): State<Api>, ApiPath(p): ApiPath<FarmPath>) -> Result<Json<Vec<u32>>, ApiError> {
    Ok(Json(api.run(move |c| c.server_ids(p.farm_id)).await?))
}

/// Stages a new server in a farm.
#[utoipa::path(post, path = "/tcp/farm/{farmId}/server", tag = SERVER, params(FarmPath), request_body = ServerBody,
    responses(
        (status = 200, description = "The staged server, with its id", body = ServerBody),
        (status = 400, description = "Invalid server (address, port, weight…)", body = ErrorBody),
        (status = 404, description = "No such farm", body = ErrorBody),
    ))]
async fn create_server(State(api): State<Api>, ApiPath(p): ApiPath<FarmPath>, body: JsonBody) -> Result<Json<ServerBody>, ApiError> {
    let server: ServerBody = parse("server", body.required()?)?;
    let zones = api.control.zones().to_vec();
    let created = api.run(move |c| c.create_server(p.farm_id, server.into())).await?;
    Ok(Json(ServerBody::new(p.farm_id, created, &zones, None)))
}

/// One server, as staged.
#[utoipa::path(get, path = "/tcp/farm/{farmId}/server/{serverId}", tag = SERVER, params(ServerPath),
    responses((status = 200, body = ServerBody), (status = 404, description = "No such farm or server", body = ErrorBody)))]
async fn get_server(State(api): State<Api>, ApiPath(p): ApiPath<ServerPath>) -> Result<Json<ServerBody>, ApiError> {
    let zones = api.control.zones().to_vec();
    let server = api.run(move |c| c.server(p.farm_id, p.server_id)).await?;
    let health = api.control.server_health(p.server_id);
    Ok(Json(ServerBody::new(p.farm_id, server, &zones, health)))
}

/// Stages a change of the given fields (`null` unsets); the others keep their value.
#[utoipa::path(put, path = "/tcp/farm/{farmId}/server/{serverId}", tag = SERVER, params(ServerPath), request_body = ServerBody,
    responses(
        (status = 204, description = "Staged"),
        (status = 400, description = "Invalid change", body = ErrorBody),
        (status = 404, description = "No such farm or server", body = ErrorBody),
    ))]
async fn update_server(State(api): State<Api>, ApiPath(p): ApiPath<ServerPath>, body: JsonBody) -> Result<StatusCode, ApiError> {
    let patch = body.object()?;
    let zones = api.control.zones().to_vec();
    api.run(move |c| c.update_server(p.farm_id, p.server_id, |old| Ok(Server::from(merge("server", &ServerBody::new(p.farm_id, old, &zones, None), &patch)?))))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Stages the deletion of a server.
#[utoipa::path(delete, path = "/tcp/farm/{farmId}/server/{serverId}", tag = SERVER, params(ServerPath),
    responses((status = 204, description = "Staged"), (status = 404, description = "No such farm or server", body = ErrorBody)))]
async fn delete_server(State(api): State<Api>, ApiPath(p): ApiPath<ServerPath>) -> Result<StatusCode, ApiError> {
    api.run(move |c| c.delete_server(p.farm_id, p.server_id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
