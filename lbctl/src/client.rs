//! The HTTP side: a [`Transport`] sends one request and hands back status and body; [`call`]
//! turns that into JSON or the server's error. [`Http`] is the real transport (ureq, blocking).
use std::time::Duration;

use serde_json::Value;

use super::cli::Global;
use super::error::Error;
use super::plan::{Method, Request};

/// Bound on one request, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of an unexpected body an error message quotes.
const SNIPPET_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

pub trait Transport {
    /// Sends `request`; `Err` only when no HTTP answer came back.
    fn send(&self, request: &Request) -> Result<Reply, Error>;
    /// The full URL of `path`, for messages.
    fn url(&self, path: &str) -> String;
}

/// Sends `request` and decodes the reply: `Ok(None)` for a success without body, the JSON of a
/// success otherwise, [`Error::Api`] for an error status.
pub fn call(transport: &dyn Transport, request: &Request) -> Result<Option<Value>, Error> {
    let reply = transport.send(request)?;
    let text = reply.body.trim();
    if !(200..300).contains(&reply.status) {
        return Err(api_error(reply.status, text));
    }
    if text.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(text).map(Some).map_err(|_| Error::BadReply {
        method: request.method.as_str(),
        url: transport.url(&request.path),
        status: reply.status,
        snippet: snippet(text),
    })
}

/// The server's `{"class", "message"}`; any other body is quoted as the message.
fn api_error(status: u16, text: &str) -> Error {
    let json: Option<Value> = serde_json::from_str(text).ok();
    let field = |name: &str| json.as_ref().and_then(|j| j.get(name)).and_then(Value::as_str).map(str::to_owned);
    match field("message") {
        Some(message) => Error::Api { status, class: field("class"), message },
        None if text.is_empty() => Error::Api { status, class: None, message: "the server gave no reason".into() },
        None => Error::Api { status, class: None, message: snippet(text) },
    }
}

fn snippet(text: &str) -> String {
    let mut out: String = text.chars().take(SNIPPET_CHARS).collect();
    if text.chars().nth(SNIPPET_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// The real transport: one ureq agent, the service root and the bearer token.
pub struct Http {
    agent: ureq::Agent,
    root: String,
    authorization: Option<String>,
}

impl Http {
    pub fn new(global: &Global) -> Result<Self, Error> {
        let authorization = match &global.token_file {
            None => None,
            Some(path) => {
                let token = std::fs::read_to_string(path).map_err(|source| Error::Read { what: "the token file", path: path.clone(), source })?;
                let token = token.trim();
                if token.is_empty() {
                    return Err(Error::Usage(format!("the token file {} is empty", path.display())));
                }
                Some(format!("Bearer {token}"))
            }
        };
        let config = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(REQUEST_TIMEOUT)).build();
        Ok(Http { agent: ureq::Agent::new_with_config(config), root: service_root(&global.api, &global.service), authorization })
    }
}

/// `{api}/ipLoadbalancing/{service}`, the service name percent-encoded as one path segment.
pub fn service_root(api: &str, service: &str) -> String {
    format!("{}/ipLoadbalancing/{}", api.trim_end_matches('/'), encode_segment(service))
}

fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl Http {
    fn headers<B>(&self, builder: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        let builder = builder.header("Accept", "application/json");
        match &self.authorization {
            Some(value) => builder.header("Authorization", value.as_str()),
            None => builder,
        }
    }
}

impl Transport for Http {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.root)
    }

    fn send(&self, request: &Request) -> Result<Reply, Error> {
        let url = self.url(&request.path);
        let connect_error = |e: ureq::Error| Error::Connect { url: url.clone(), reason: reason(e) };
        let body = request.body.as_ref().map(Value::to_string);
        let response = match (request.method, body) {
            (Method::Get, _) => self.headers(self.agent.get(&url)).call(),
            (Method::Delete, _) => self.headers(self.agent.delete(&url)).call(),
            (method, body) => {
                let builder = self.headers(match method {
                    Method::Post => self.agent.post(&url),
                    _ => self.agent.put(&url),
                });
                match body {
                    Some(body) => builder.header("Content-Type", "application/json").send(body),
                    None => builder.send_empty(),
                }
            }
        };
        let mut response = response.map_err(connect_error)?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().map_err(connect_error)?;
        Ok(Reply { status, body })
    }
}

/// A transport failure in words, e.g. "connection refused".
fn reason(error: ureq::Error) -> String {
    match error {
        ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        ureq::Error::Io(e) => e.to_string(),
        ureq::Error::HostNotFound => "host not found".to_string(),
        ureq::Error::Timeout(what) => format!("timed out ({what})"),
        other => other.to_string(),
    }
}
