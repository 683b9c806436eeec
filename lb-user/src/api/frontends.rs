//! `/tcp/frontend`.
use axum::{extract::State, http::StatusCode, Json};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    error::{ApiError, ErrorBody},
    extract::{merge, parse, ApiPath, JsonBody},
    Api,
};
use lb_core::model::Frontend;

const TAG: &str = "tcp/frontend";

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct FrontendPath {
    frontend_id: u32,
}

pub fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new().routes(routes!(list_frontends, create_frontend)).routes(routes!(get_frontend, update_frontend, delete_frontend))
}

/// Frontend ids.
#[utoipa::path(get, path = "/tcp/frontend", tag = TAG, responses((status = 200, description = "Frontend ids, ascending", body = Vec<u32>)))]
async fn list_frontends(State(api): State<Api>) -> Result<Json<Vec<u32>>, ApiError> {
    Ok(Json(api.run(|c| c.frontend_ids()).await?))
}

/// Stages a new frontend.
#[utoipa::path(post, path = "/tcp/frontend", tag = TAG, request_body = Frontend,
    responses(
        (status = 200, description = "The staged frontend, with its id", body = Frontend),
        (status = 400, description = "Invalid frontend (port, sources, zone, default farm…)", body = ErrorBody),
    ))]
async fn create_frontend(State(api): State<Api>, body: JsonBody) -> Result<Json<Frontend>, ApiError> {
    let frontend: Frontend = parse("frontend", body.required()?)?;
    Ok(Json(api.run(move |c| c.create_frontend(frontend)).await?))
}

/// One frontend, as staged.
#[utoipa::path(get, path = "/tcp/frontend/{frontendId}", tag = TAG, params(FrontendPath),
    responses((status = 200, body = Frontend), (status = 404, description = "No such frontend", body = ErrorBody)))]
async fn get_frontend(State(api): State<Api>, ApiPath(p): ApiPath<FrontendPath>) -> Result<Json<Frontend>, ApiError> {
    Ok(Json(api.run(move |c| c.frontend(p.frontend_id)).await?))
}

/// Stages a change of the given fields (`null` unsets); the others keep their value.
#[utoipa::path(put, path = "/tcp/frontend/{frontendId}", tag = TAG, params(FrontendPath), request_body = Frontend,
    responses(
        (status = 204, description = "Staged"),
        (status = 400, description = "Invalid change", body = ErrorBody),
        (status = 404, description = "No such frontend", body = ErrorBody),
    ))]
async fn update_frontend(State(api): State<Api>, ApiPath(p): ApiPath<FrontendPath>, body: JsonBody) -> Result<StatusCode, ApiError> {
    let patch = body.object()?;
    api.run(move |c| c.update_frontend(p.frontend_id, |old| merge("frontend", &old, &patch))).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Stages the deletion of a frontend.
#[utoipa::path(delete, path = "/tcp/frontend/{frontendId}", tag = TAG, params(FrontendPath),
    responses(
        (status = 204, description = "Staged"),
        (status = 404, description = "No such frontend", body = ErrorBody),
        (status = 409, description = "Routes still use it", body = ErrorBody),
    ))]
async fn delete_frontend(State(api): State<Api>, ApiPath(p): ApiPath<FrontendPath>) -> Result<StatusCode, ApiError> {
    api.run(move |c| c.delete_frontend(p.frontend_id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
