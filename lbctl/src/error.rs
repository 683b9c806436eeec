//! What can go wrong in lbctl, each variant naming what and where; `main` prints
//! `error: <Display>` to stderr.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error status.
    #[error("{}", api_message(message, class.as_deref(), *status))]
    Api { status: u16, class: Option<String>, message: String },
    /// The server could not be reached (refused, unknown host, timeout, reset).
    #[error("cannot reach the API at {url}: {reason} (is the daemon running? --api or LBCTL_API sets the address)")]
    Connect { url: String, reason: String },
    /// A success status whose body is not JSON.
    #[error("{method} {url} answered HTTP {status} with a body that is not JSON: {snippet}")]
    BadReply { method: &'static str, url: String, status: u16, snippet: String },
    /// Arguments clap accepts but that do not make a request (missing field, bad --json).
    #[error("{0}")]
    Usage(String),
    #[error("reading {what} {path}: {source}")]
    Read { what: &'static str, path: PathBuf, source: std::io::Error },
    /// A refresh task that ended in `error`.
    #[error("task {id} ended in error: {message}")]
    TaskFailed { id: String, message: String },
    /// A refresh task still running when `--timeout` ran out.
    #[error("task {id} still {status} after {seconds} s (raise --timeout, or watch it with `lbctl task show {id}`)")]
    TaskTimeout { id: String, status: String, seconds: u64 },
    /// A reply that is JSON but not the shape this command expects.
    #[error("{0}")]
    Unexpected(String),
}

impl Error {
    /// Exit status: 2 for usage errors (as clap does), 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }
}

fn api_message(message: &str, class: Option<&str>, status: u16) -> String {
    match class {
        Some(class) => format!("{message} ({class}, HTTP {status})"),
        None => format!("{message} (HTTP {status})"),
    }
}
