//! The live status page: one self-contained HTML document (inline CSS and JS, nothing
//! fetched from elsewhere) served at `/` and `/status`, which polls `/status.json` — the
//! report [`model::StatusReport`] builds from the daemon's state.
//!
//! The document holds no data, so it is served without the API token: a browser can load
//! it from a plain link. Its script sends the token it finds in the URL fragment
//! (`/status#token=...`, which browsers keep to themselves) as `Authorization: Bearer` to
//! `/status.json`, which stays behind the token like every other API path.
pub mod model;

use axum::{
    http::{header, HeaderValue, Method},
    response::{IntoResponse, Response},
};

pub use model::{ControlFacts, RuntimeFacts, StatusReport};

use crate::{control::ControlError, telemetry::DaemonState};

/// The page, compiled into the binary.
pub const PAGE: &str = include_str!("page.html");
/// Where the page is served.
pub const PAGE_PATHS: [&str; 2] = ["/", "/status"];
/// Where the page reads its data (relative to the page: `status.json`).
pub const JSON_PATH: &str = "/status.json";

/// Whether a request is for the page itself, which needs no token.
pub fn is_page_request(method: &Method, path: &str) -> bool {
    (method == Method::GET || method == Method::HEAD) && PAGE_PATHS.contains(&path)
}

/// The page, with a content security policy that lets it run only its own inline code and
/// talk only to this daemon.
pub fn page() -> Response {
    const POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY)),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        PAGE,
    )
        .into_response()
}

/// The report, from the daemon's state. Reads the store: run it off the async workers.
pub fn report(daemon: &DaemonState) -> Result<StatusReport, ControlError> {
    let control = daemon.control();
    let snapshot = daemon.snapshot();
    let applied = control.applied_config()?;
    let facts = ControlFacts {
        service: control.service().to_string(),
        zone: control.zone().to_string(),
        listeners: control.listening().iter().map(ToString::to_string).collect(),
        // While etcd is unreachable the page still shows what the node serves.
        pending_changes: tolerate_unreachable(control.pending_changes())?,
        tasks: tolerate_unreachable(control.recent_tasks(model::TASKS_SHOWN))?,
    };
    // The page shows the error; a log line per poll of every open page would be noise.
    let (kernel, kernel_error) = match daemon.kernel_counters() {
        Some(Ok(counters)) => (Some(counters), None),
        Some(Err(e)) => {
            tracing::debug!(error = %e, "status page: reading the kernel counters failed");
            (None, Some(format!("{e:#}")))
        }
        None => (None, None),
    };
    let runtime = RuntimeFacts {
        frontend_active: snapshot.frontends.iter().map(|f| (f.id, daemon.frontend_active(f.id))).collect(),
        handoff: daemon.handoff(),
        kernel,
        kernel_error,
    };
    Ok(StatusReport::build(&snapshot, &applied, facts, runtime))
}

fn tolerate_unreachable<T: Default>(read: Result<T, ControlError>) -> Result<T, ControlError> {
    match read {
        Err(ControlError::Unavailable(_)) => Ok(T::default()),
        other => other,
    }
}

#[cfg(test)]
mod tests;
