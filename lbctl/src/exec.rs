//! Carries a [`Plan`] out over a [`Transport`]: one request, a list followed id by id, or a
//! refresh whose tasks are polled until they end. Returns what to print; the caller prints.
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cli::Output;
use super::client::{call, Transport};
use super::error::Error;
use super::plan::{Plan, Request, View};
use super::render::{self, Kind, TASK};

/// First pause between two polls of a task; it doubles up to [`POLL_MAX`].
const POLL_FIRST: Duration = Duration::from_millis(100);
const POLL_MAX: Duration = Duration::from_secs(1);

/// What a command prints on stdout and, when it did not succeed although the server answered
/// (a task that failed), the error to print and exit with.
#[derive(Debug)]
pub struct Report {
    pub out: String,
    pub failure: Option<Error>,
}

impl Report {
    fn ok(out: String) -> Self {
        Report { out, failure: None }
    }
}

pub fn run(plan: &Plan, transport: &dyn Transport, output: Output, sleep: &dyn Fn(Duration)) -> Result<Report, Error> {
    match plan {
        Plan::One { request, view } => one(transport, request, view, output),
        Plan::List { request, kind } => list(transport, request, kind, output),
        Plan::Refresh { request, wait } => refresh(transport, request, *wait, output, sleep),
        // Completions need no server; `main` prints them before a transport exists.
        Plan::Completions(_) => Ok(Report::ok(String::new())),
    }
}

fn one(transport: &dyn Transport, request: &Request, view: &View, output: Output) -> Result<Report, Error> {
    let reply = call(transport, request)?;
    let out = match (output, reply) {
        (Output::Json, Some(value)) => render::json(&value),
        (Output::Json, None) => String::new(),
        (Output::Table, None) => match view {
            View::Done(line) => line.clone(),
            _ => String::new(),
        },
        (Output::Table, Some(value)) => match view {
            View::Object(kind) => render::object(kind, &value),
            View::Generic | View::Done(_) => render::generic(&value),
        },
    };
    Ok(Report::ok(out))
}

/// JSON prints the ids as the server listed them; a table fetches each object. An object
/// deleted between the list and its fetch (404) is left out.
fn list(transport: &dyn Transport, request: &Request, kind: &Kind, output: Output) -> Result<Report, Error> {
    let ids = call(transport, request)?.unwrap_or(Value::Array(Vec::new()));
    if output == Output::Json {
        return Ok(Report::ok(render::json(&ids)));
    }
    let Value::Array(ids) = ids else {
        return Err(Error::Unexpected(format!("GET {} answered {}, not a list of ids", transport.url(&request.path), render::cell(&ids))));
    };
    let mut objects = Vec::with_capacity(ids.len());
    for id in ids {
        let id = match id {
            // Already an object: nothing to fetch.
            Value::Object(_) => {
                objects.push(id);
                continue;
            }
            Value::String(s) => s,
            other => other.to_string(),
        };
        match call(transport, &Request::get(format!("{}/{id}", request.path))) {
            Ok(Some(object)) => objects.push(object),
            Ok(None) | Err(Error::Api { status: 404, .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Report::ok(render::table(kind, &objects)))
}

fn refresh(transport: &dyn Transport, request: &Request, wait: Option<Duration>, output: Output, sleep: &dyn Fn(Duration)) -> Result<Report, Error> {
    let tasks = match call(transport, request)? {
        None => Vec::new(),
        Some(Value::Array(tasks)) => tasks,
        Some(task) => vec![task],
    };
    if tasks.is_empty() {
        let out = if output == Output::Json { String::new() } else { "refresh requested (the server returned no task)".into() };
        return Ok(Report::ok(out));
    }
    let mut failure = None;
    let mut ended = Vec::with_capacity(tasks.len());
    match wait {
        None => ended = tasks,
        Some(wait) => {
            let deadline = Instant::now() + wait;
            for task in tasks {
                let (task, outcome) = follow(transport, task, deadline, wait, sleep)?;
                if failure.is_none() {
                    failure = outcome;
                }
                ended.push(task);
            }
        }
    }
    let out = match output {
        Output::Json if ended.len() == 1 => render::json(&ended[0]),
        Output::Json => render::json(&Value::Array(ended)),
        Output::Table => render::table(&TASK, &ended),
    };
    Ok(Report { out, failure })
}

/// Polls one task (an object, or its id) until it is `done` or `error`, or `deadline` passes.
/// Returns the last state seen and the error it amounts to, if any.
fn follow(transport: &dyn Transport, task: Value, deadline: Instant, wait: Duration, sleep: &dyn Fn(Duration)) -> Result<(Value, Option<Error>), Error> {
    let id = match &task {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        object => render::id_of(&TASK, object).ok_or_else(|| Error::Unexpected(format!("the refresh returned a task without an id: {object}")))?,
    };
    let fetch = |id: &str| -> Result<Value, Error> {
        let path = format!("/task/{id}");
        call(transport, &Request::get(&path))?.ok_or_else(|| Error::Unexpected(format!("GET {} answered no task", transport.url(&path))))
    };
    let mut task = if task.is_object() { task } else { fetch(&id)? };
    let mut pause = POLL_FIRST;
    loop {
        let status = task.get("status").and_then(Value::as_str).unwrap_or("unknown").to_string();
        match status.as_str() {
            "done" => return Ok((task, None)),
            "error" | "cancelled" => {
                let message = ["message", "error", "comment"]
                    .iter()
                    .find_map(|k| task.get(k).and_then(Value::as_str))
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("status {status}, no message ({task})"));
                return Ok((task, Some(Error::TaskFailed { id, message })));
            }
            _ => {}
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok((task, Some(Error::TaskTimeout { id, status, seconds: wait.as_secs() })));
        }
        sleep(pause.min(deadline - now));
        pause = (pause * 2).min(POLL_MAX);
        task = fetch(&id)?;
    }
}
