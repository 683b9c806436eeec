//! Replies → output and outcome, over a scripted transport: lists followed id by id, refresh
//! tasks polled to their end, server errors.
use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::Duration;

use serde_json::{json, Value};

use super::plan_of;
use crate::cli::Output;
use crate::client::{Reply, Transport};
use crate::error::Error;
use crate::exec::{run, Report};
use crate::plan::Request;

/// One scripted exchange: the expected method and path, and the reply.
type Step = (&'static str, String, Result<Reply, Error>);

/// Answers each request with the next scripted reply, checking it is the expected request.
struct Script {
    steps: RefCell<VecDeque<Step>>,
}

impl Script {
    fn new() -> Self {
        Script { steps: RefCell::new(VecDeque::new()) }
    }

    fn then(self, method: &'static str, path: &str, status: u16, body: Value) -> Self {
        let body = if body.is_null() { String::new() } else { body.to_string() };
        self.steps.borrow_mut().push_back((method, path.to_string(), Ok(Reply { status, body })));
        self
    }

    fn then_raw(self, method: &'static str, path: &str, reply: Result<Reply, Error>) -> Self {
        self.steps.borrow_mut().push_back((method, path.to_string(), reply));
        self
    }

    fn assert_done(&self) {
        let left: Vec<String> = self.steps.borrow().iter().map(|(m, p, _)| format!("{m} {p}")).collect();
        assert!(left.is_empty(), "requests never made: {left:?}");
    }
}

impl Transport for Script {
    fn send(&self, request: &Request) -> Result<Reply, Error> {
        let (method, path, reply) = self.steps.borrow_mut().pop_front().unwrap_or_else(|| panic!("unexpected request {request:?}"));
        assert_eq!((request.method.as_str(), request.path.as_str()), (method, path.as_str()), "request out of script");
        reply
    }

    fn url(&self, path: &str) -> String {
        format!("http://fake/ipLoadbalancing/lb{path}")
    }
}

fn run_with(args: &[&str], output: Output, script: &Script) -> Result<Report, Error> {
    let plan = plan_of(args).expect("a plan");
    let report = run(&plan, script, output, &|_| {});
    script.assert_done();
    report
}

#[test]
fn list_as_a_table_fetches_each_object() {
    let script = Script::new()
        .then("GET", "/tcp/farm/1/server", 200, json!([1, 2]))
        .then("GET", "/tcp/farm/1/server/1", 200, json!({"serverId": 1, "address": "10.0.0.2", "port": 8443, "weight": 3}))
        .then("GET", "/tcp/farm/1/server/2", 200, json!({"serverId": 2, "address": "2001:db8::2", "backup": true}));
    let report = run_with(&["server", "list", "--farm", "1"], Output::Table, &script).expect("listed");
    let lines: Vec<&str> = report.out.lines().collect();
    assert_eq!(lines.len(), 3, "{}", report.out);
    assert!(lines[0].starts_with("ID  ADDRESS      PORT  STATUS  WEIGHT  BACKUP"), "{}", lines[0]);
    assert!(lines[1].starts_with("1   10.0.0.2     8443  -       3"), "{}", lines[1]);
    assert!(lines[2].starts_with("2   2001:db8::2  -     -       -       true"), "{}", lines[2]);
    assert!(report.failure.is_none());
}

#[test]
fn list_as_json_prints_the_servers_ids_only() {
    let script = Script::new().then("GET", "/tcp/route", 200, json!([3, 1]));
    let report = run_with(&["route", "list"], Output::Json, &script).expect("listed");
    assert_eq!(serde_json::from_str::<Value>(&report.out).expect("json"), json!([3, 1]));
}

#[test]
fn list_leaves_out_an_object_deleted_meanwhile() {
    let gone = json!({"class": "Client::NotFound", "message": "farm 1 does not exist"});
    let script = Script::new().then("GET", "/tcp/farm", 200, json!([1, 2])).then("GET", "/tcp/farm/1", 404, gone).then(
        "GET",
        "/tcp/farm/2",
        200,
        json!({"farmId": 2, "zone": "all", "probe": {"type": "http", "interval": 30}}),
    );
    let report = run_with(&["farm", "list"], Output::Table, &script).expect("listed");
    assert_eq!(report.out.lines().count(), 2, "{}", report.out);
    assert!(report.out.contains("http/30s"), "{}", report.out);
}

#[test]
fn server_error_becomes_message_class_and_status() {
    let script = Script::new().then("POST", "/tcp/route", 400, json!({"class": "Client::BadRequest", "message": "action.target: farm 9 does not exist"}));
    let error = run_with(&["route", "create", "--frontend", "1", "--target", "9"], Output::Table, &script).expect_err("400");
    assert_eq!(error.to_string(), "action.target: farm 9 does not exist (Client::BadRequest, HTTP 400)");
    assert_eq!(error.exit_code(), 1);
}

#[test]
fn an_error_body_that_is_not_json_is_quoted() {
    let script = Script::new().then_raw("DELETE", "/tcp/farm/1", Ok(Reply { status: 409, body: "still referenced".into() }));
    let error = run_with(&["farm", "delete", "1"], Output::Table, &script).expect_err("409");
    assert_eq!(error.to_string(), "still referenced (HTTP 409)");
}

#[test]
fn a_connection_failure_names_the_url() {
    let refused = Error::Connect { url: "http://fake/ipLoadbalancing/lb/status".into(), reason: "connection refused".into() };
    let script = Script::new().then_raw("GET", "/status", Err(refused));
    let error = run_with(&["status"], Output::Table, &script).expect_err("refused");
    assert!(error.to_string().starts_with("cannot reach the API at http://fake/ipLoadbalancing/lb/status: connection refused"));
    assert_eq!(error.exit_code(), 1);
}

#[test]
fn create_shows_the_created_object_and_json_prints_it_as_sent() {
    let created = json!({"frontendId": 4, "port": "443", "zone": "all", "defaultFarmId": null, "disabled": false});
    let script = Script::new().then("POST", "/tcp/frontend", 200, created.clone());
    let report = run_with(&["frontend", "create", "--port", "443"], Output::Table, &script).expect("created");
    assert!(report.out.starts_with("frontendId     4\nport           443\nzone           all\ndefaultFarmId  -\n"), "{}", report.out);
    let script = Script::new().then("POST", "/tcp/frontend", 200, created.clone());
    let report = run_with(&["frontend", "create", "--port", "443"], Output::Json, &script).expect("created");
    assert_eq!(serde_json::from_str::<Value>(&report.out).expect("json"), created);
}

#[test]
fn update_and_delete_print_a_line_in_a_table_and_nothing_in_json() {
    let script = Script::new().then("PUT", "/tcp/route/2", 204, Value::Null);
    assert_eq!(run_with(&["route", "update", "2", "--weight", "1"], Output::Table, &script).expect("ok").out, "updated route 2");
    let script = Script::new().then("DELETE", "/tcp/route/2/rule/1", 200, Value::Null);
    assert_eq!(run_with(&["rule", "delete", "--route", "2", "1"], Output::Json, &script).expect("ok").out, "");
}

#[test]
fn refresh_polls_its_task_until_done() {
    let script = Script::new()
        .then("POST", "/refresh", 200, json!({"id": 7, "action": "refreshIplb", "status": "todo"}))
        .then("GET", "/task/7", 200, json!({"id": 7, "action": "refreshIplb", "status": "doing"}))
        .then("GET", "/task/7", 200, json!({"id": 7, "action": "refreshIplb", "status": "done"}));
    let plan = plan_of(&["refresh", "--zone", "all"]).expect("plan");
    let pauses = RefCell::new(Vec::new());
    let report = run(&plan, &script, Output::Json, &|d| pauses.borrow_mut().push(d)).expect("refreshed");
    script.assert_done();
    assert!(report.failure.is_none());
    assert_eq!(serde_json::from_str::<Value>(&report.out).expect("json")["status"], "done");
    assert_eq!(*pauses.borrow(), [Duration::from_millis(100), Duration::from_millis(200)], "pauses grow between polls");
}

#[test]
fn refresh_that_fails_reports_the_task_message() {
    let script = Script::new().then("POST", "/refresh", 200, json!({"id": 8, "status": "doing"})).then(
        "GET",
        "/task/8",
        200,
        json!({"id": 8, "status": "error", "message": "route 3: farm 9 does not exist"}),
    );
    let report = run_with(&["refresh"], Output::Table, &script).expect("answered");
    let failure = report.failure.expect("the task failed");
    assert_eq!(failure.to_string(), "task 8 ended in error: route 3: farm 9 does not exist");
    assert_eq!(failure.exit_code(), 1);
    assert!(report.out.contains("error"), "the task is still shown: {}", report.out);
}

#[test]
fn refresh_gives_up_after_its_timeout() {
    let script = Script::new().then("POST", "/refresh", 200, json!({"id": 9, "status": "todo"}));
    let report = run_with(&["refresh", "--timeout", "0"], Output::Table, &script).expect("answered");
    let failure = report.failure.expect("timed out");
    assert!(matches!(&failure, Error::TaskTimeout { id, status, seconds: 0 } if id == "9" && status == "todo"), "{failure}");
}

#[test]
fn refresh_no_wait_prints_the_task_as_returned() {
    let script = Script::new().then("POST", "/refresh", 200, json!({"id": 10, "status": "todo"}));
    let report = run_with(&["refresh", "--no-wait"], Output::Table, &script).expect("answered");
    assert!(report.failure.is_none());
    assert!(report.out.lines().nth(1).is_some_and(|row| row.starts_with("10  -       todo")), "{}", report.out);
}

#[test]
fn refresh_follows_every_task_it_returns() {
    let script = Script::new().then("POST", "/refresh", 200, json!([11, {"taskId": 12, "status": "done"}])).then(
        "GET",
        "/task/11",
        200,
        json!({"id": 11, "status": "done"}),
    );
    let report = run_with(&["refresh"], Output::Json, &script).expect("refreshed");
    assert!(report.failure.is_none());
    assert_eq!(serde_json::from_str::<Value>(&report.out).expect("json").as_array().map(Vec::len), Some(2));
}

#[test]
fn generic_replies_render_as_tables_or_lines() {
    let script = Script::new().then("GET", "/pendingChanges", 200, json!([{"zone": "gra", "number": 3}]));
    assert_eq!(run_with(&["pending"], Output::Table, &script).expect("ok").out, "NUMBER  ZONE\n3       gra\n");
    let script = Script::new().then("GET", "/zone", 200, json!(["gra", "rbx"]));
    assert_eq!(run_with(&["zone"], Output::Table, &script).expect("ok").out, "gra\nrbx\n");
}
