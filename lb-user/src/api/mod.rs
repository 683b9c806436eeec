//! The IPLB TCP API (axum; docs/api.md): HTTP handlers only. Every path lives under
//! `/ipLoadbalancing/{serviceName}`; the work is the control plane's ([`crate::control`]).
//! With a token configured, every request needs `Authorization: Bearer <token>`, except the
//! status page's HTML shell (`/`, `/status`), which holds no data ([`crate::status`]).
mod error;
mod extract;
mod farms;
mod frontends;
mod objects;
mod openapi;
mod routes;
mod service;
mod status;

use std::{path::Path, sync::Arc};

use axum::{
    extract::{DefaultBodyLimit, Request, State},
    http::{header, HeaderMap, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::debug;
use utoipa_axum::router::OpenApiRouter;

pub use error::{ApiError, ErrorBody};
pub use extract::BODY_LIMIT;

use crate::{
    control::{blocking, Control, ControlError},
    telemetry::DaemonState,
};

pub const SERVICE_PREFIX: &str = "/ipLoadbalancing/{serviceName}";

/// The bearer token, kept as its SHA-256 so that comparisons take the same time whatever
/// the guess.
#[derive(Clone)]
pub struct ApiToken([u8; 32]);

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("reading the API token file {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("the API token file {0} is empty")]
    Empty(String),
}

impl ApiToken {
    pub fn new(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// The file's content, surrounding whitespace (a final newline) removed.
    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|error| TokenError::Read { path: path.display().to_string(), error })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(TokenError::Empty(path.display().to_string()));
        }
        Ok(Self::new(token))
    }

    fn accepts(&self, headers: &HeaderMap) -> bool {
        let Some(given) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(given.trim().as_bytes()).into();
        digest.ct_eq(&self.0).into()
    }
}

/// What every handler sees.
#[derive(Clone)]
pub struct Api {
    control: Arc<Control>,
    token: Option<ApiToken>,
    /// The running daemon's state (metrics, status page); None when the API runs without
    /// traffic behind it (unit tests).
    daemon: Option<Arc<DaemonState>>,
}

impl Api {
    /// The running daemon's state, when there is one behind this API.
    pub(crate) fn daemon(&self) -> Option<&Arc<DaemonState>> {
        self.daemon.as_ref()
    }

    /// Runs control-plane work (store transactions) off the async workers.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce(&Control) -> Result<T, ControlError> + Send + 'static) -> Result<T, ApiError> {
        let control = Arc::clone(&self.control);
        Ok(blocking(move || f(&control)).await?)
    }
}

/// The whole API, `/openapi.json` included.
pub fn router(control: Arc<Control>, token: Option<ApiToken>, daemon: Option<Arc<DaemonState>>) -> Router {
    let api = Api { control, token, daemon };
    let service = OpenApiRouter::new().merge(frontends::routes()).merge(farms::routes()).merge(routes::routes()).merge(service::routes());
    let (router, doc) = OpenApiRouter::with_openapi(openapi::base()).nest(SERVICE_PREFIX, service).split_for_parts();
    let doc = openapi::complete(doc, api.token.is_some());
    let doc_json = Arc::new(openapi::to_json(&doc));
    router
        .merge(status::routes())
        .route("/openapi.json", get(move || async move { ([(header::CONTENT_TYPE, "application/json")], doc_json.as_str().to_owned()) }))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("no such path") })
        .method_not_allowed_fallback(|| async { ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this path") })
        .layer(middleware::from_fn_with_state(api.clone(), guard))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(api)
}

/// `GET /metrics`: the Prometheus exposition (behind the token, like every API path).
async fn metrics(State(api): State<Api>) -> Response {
    match api.daemon() {
        Some(daemon) => crate::telemetry::metrics_response(Arc::clone(daemon)).await,
        None => ApiError::not_found("no metrics: this API runs without a daemon behind it").into_response(),
    }
}

/// Authentication, then the service name, before any handler.
async fn guard(State(api): State<Api>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    if let Some(token) = &api.token {
        if !crate::status::is_page_request(&method, &path) && !token.accepts(request.headers()) {
            return ApiError::unauthorized("missing or wrong bearer token (Authorization: Bearer <token>)").into_response();
        }
    }
    if let Some(rest) = path.strip_prefix("/ipLoadbalancing/") {
        let name = percent_decode(rest.split('/').next().unwrap_or_default());
        if name != api.control.service() {
            return ApiError::not_found(format!("service {name:?} does not exist")).into_response();
        }
    }
    let response = next.run(request).await;
    debug!(%method, %path, status = response.status().as_u16(), "API request");
    response
}

/// `%XX` escapes of a path segment decoded (clients escape service names).
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
