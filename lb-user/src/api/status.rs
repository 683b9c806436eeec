//! The status page and its data; see [`crate::status`]. The page is served without the
//! token (it holds no data; [`guard`](super::guard) lets it through), its data is not.
use axum::{extract::State, response::Response, routing::get, Json, Router};

use super::{error::ApiError, Api};
use crate::status::{self, StatusReport, JSON_PATH, PAGE_PATHS};

pub fn routes() -> Router<Api> {
    let mut router = Router::new().route(JSON_PATH, get(report));
    for path in PAGE_PATHS {
        router = router.route(path, get(page));
    }
    router
}

async fn page() -> Response {
    status::page()
}

async fn report(State(api): State<Api>) -> Result<Json<StatusReport>, ApiError> {
    let Some(daemon) = api.daemon().cloned() else {
        return Err(ApiError::not_found("the status report needs a running daemon (this API serves no traffic)"));
    };
    Ok(Json(crate::control::blocking(move || status::report(&daemon)).await?))
}
