//! Arguments → the request(s) to make, without any I/O but reading a `--json-file`. Paths are
//! relative to the service root `/ipLoadbalancing/{serviceName}`.
use std::io::Read;
use std::time::Duration;

use clap_complete::Shell;
use serde_json::{Map, Value};

use super::cli::{Available, Command, Crud, Parent, RawBody, RefreshArgs, TaskCommand};
use super::error::Error;
use super::fields::Fields;
use super::render::{Kind, TASK};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: Method,
    /// Below the service root, e.g. `/tcp/farm/1/server/2`.
    pub path: String,
    pub body: Option<Value>,
}

impl Request {
    pub fn get(path: impl Into<String>) -> Self {
        Request { method: Method::Get, path: path.into(), body: None }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// One request; its reply is shown as `view` says.
    One {
        request: Request,
        view: View,
    },
    /// GET a list of ids; a table then GETs `{path}/{id}` for each.
    List {
        request: Request,
        kind: &'static Kind,
    },
    /// POST /refresh, then poll each task it returns until it ends, at most `wait`
    /// (`None`: do not wait).
    Refresh {
        request: Request,
        wait: Option<Duration>,
    },
    Completions(Shell),
}

#[derive(Debug, Clone, PartialEq)]
pub enum View {
    /// An object of a known kind.
    Object(&'static Kind),
    /// A reply without a known shape.
    Generic,
    /// No reply body expected: a table prints this line instead.
    Done(String),
}

pub fn plan(command: &Command) -> Result<Plan, Error> {
    Ok(match command {
        Command::Frontend(verb) => crud(verb)?,
        Command::Farm(verb) => crud(verb)?,
        Command::Server(verb) => crud(verb)?,
        Command::Route(verb) => crud(verb)?,
        Command::Rule(verb) => crud(verb)?,
        Command::Pending => generic("/pendingChanges"),
        Command::Refresh(args) => refresh(args),
        Command::Task(TaskCommand::List) => Plan::List { request: Request::get("/task"), kind: &TASK },
        Command::Task(TaskCommand::Show { id }) => Plan::One { request: Request::get(format!("/task/{id}")), view: View::Object(&TASK) },
        Command::Status => generic("/status"),
        Command::Zone => generic("/zone"),
        Command::Nodes { zone } => generic(&format!("/zone/{zone}/node")),
        Command::Available(Available::RouteActions) => generic("/availableRouteActions"),
        Command::Available(Available::RouteRules) => generic("/availableRouteRules"),
        Command::Available(Available::FarmProbes) => generic("/availableFarmProbes"),
        Command::Completions { shell } => Plan::Completions(*shell),
    })
}

fn generic(path: &str) -> Plan {
    Plan::One { request: Request::get(path), view: View::Generic }
}

fn crud<F: Fields, P: Parent>(verb: &Crud<F, P>) -> Result<Plan, Error> {
    let kind = F::KIND;
    let collection = |parent: &P| format!("{}/{}", parent.prefix(), kind.collection);
    Ok(match verb {
        Crud::List { parent } => Plan::List { request: Request::get(collection(parent)), kind },
        Crud::Show { parent, id } => Plan::One { request: Request::get(format!("{}/{id}", collection(parent))), view: View::Object(kind) },
        Crud::Create { parent, fields, raw } => {
            let body = merge(raw, fields.body()?)?;
            if let Some((key, flag)) = F::REQUIRED.iter().find(|(key, _)| !body.contains_key(*key)) {
                return Err(Error::Usage(format!("{} create needs --{flag} (or \"{key}\" in --json)", kind.noun)));
            }
            let request = Request { method: Method::Post, path: collection(parent), body: Some(Value::Object(body)) };
            Plan::One { request, view: View::Object(kind) }
        }
        Crud::Update { parent, id, fields, raw, unset } => {
            let given = fields.body()?;
            let mut body = merge(raw, given.clone())?;
            for flag in unset {
                let (_, key) = F::NULLABLE
                    .iter()
                    .find(|(name, _)| name == flag)
                    .ok_or_else(|| Error::Usage(format!("--unset {flag}: not a field of a {} that can be unset", kind.noun)))?;
                if given.contains_key(*key) {
                    return Err(Error::Usage(format!("--unset {flag} and --{flag} contradict each other")));
                }
                body.insert(key.to_string(), Value::Null);
            }
            if body.is_empty() {
                return Err(Error::Usage(format!("{} update: nothing to change; give field flags, --unset or --json (see --help)", kind.noun)));
            }
            let request = Request { method: Method::Put, path: format!("{}/{id}", collection(parent)), body: Some(Value::Object(body)) };
            Plan::One { request, view: View::Done(format!("updated {} {id}", kind.noun)) }
        }
        Crud::Delete { parent, id } => Plan::One {
            request: Request { method: Method::Delete, path: format!("{}/{id}", collection(parent)), body: None },
            view: View::Done(format!("deleted {} {id}", kind.noun)),
        },
    })
}

fn refresh(args: &RefreshArgs) -> Plan {
    // No body refreshes every zone (docs/api.md: `{"zone": z}`, or no body for every zone).
    let body = args.zone.as_ref().map(|zone| serde_json::json!({ "zone": zone }));
    Plan::Refresh {
        request: Request { method: Method::Post, path: "/refresh".to_string(), body },
        wait: (!args.no_wait).then(|| Duration::from_secs(args.timeout)),
    }
}

/// The raw body, if any, with the typed fields laid over it.
fn merge(raw: &RawBody, fields: Map<String, Value>) -> Result<Map<String, Value>, Error> {
    let mut body = match raw_body(raw)? {
        None => Map::new(),
        Some(Value::Object(map)) => map,
        Some(other) => return Err(Error::Usage(format!("the JSON body must be an object, not {}", kind_of(&other)))),
    };
    body.extend(fields);
    Ok(body)
}

fn raw_body(raw: &RawBody) -> Result<Option<Value>, Error> {
    let (text, origin) = match (&raw.json, &raw.json_file) {
        (Some(text), _) => (text.clone(), "--json".to_string()),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|source| Error::Read { what: "the JSON body from", path: path.clone(), source })?;
            (text, "standard input".to_string())
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|source| Error::Read { what: "the JSON body file", path: path.clone(), source })?;
            (text, path.display().to_string())
        }
        (None, None) => return Ok(None),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| Error::Usage(format!("{origin} is not valid JSON: {e}")))
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
