//! The API against its own OpenAPI document, and against hostile bodies.
//!
//! schemathesis (from PyPI; `cargo xtask test` installs it) generates requests from `/openapi.json`
//! of a live daemon, positive and negative, with stateful sequences (create, then read,
//! change, delete what was created): no answer may be a 5xx, and every answer must conform
//! to the document (status code documented, content type and body matching its schema).
//! The direct tests send malformed JSON, bodies around and far over the 1 MiB limit, and
//! wrong types: each answers 4xx with a JSON error naming what was wrong.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use lb_tests::api::{ApiClient, ApiDaemon, ApiDaemonOpts, Reply};
use lb_tests::daemon::DaemonOpts;
use lb_tests::netns::command_in;
use lb_tests::proc::output_with_timeout;
use lb_tests::{require_root, Topology};
use serde_json::{json, Value};

/// The checks every schemathesis answer must pass.
const CHECKS: &str = "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance";
/// Bounds of the run: examples per operation, schemathesis's own time budget, and the wall
/// clock after which the run is killed.
const MAX_EXAMPLES: u32 = 10;
const ST_BUDGET_SECS: u32 = 60;
const ST_WALL_CLOCK: Duration = Duration::from_secs(240);

/// The schemathesis command (`schemathesis`, else its short name `st`, on PATH; else the
/// virtualenv `cargo xtask test` installs it into), or how to get it.
fn schemathesis() -> Result<PathBuf> {
    for name in ["schemathesis", "st", "/opt/schemathesis/bin/schemathesis"] {
        let found = Command::new(name)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).to_lowercase().contains("schemathesis"));
        if found {
            return Ok(PathBuf::from(name));
        }
    }
    bail!("schemathesis is not installed: `cargo xtask test` (or `cargo xtask prereqs`) installs it into /opt/schemathesis")
}

#[test]
fn schemathesis_finds_no_server_error_and_no_nonconforming_answer() -> Result<()> {
    // A namespace of its own: schemathesis refreshes what it creates, and the frontends it
    // invents must not listen on the machine's ports.
    require_root!();
    let st = schemathesis()?;
    let topo = Topology::new()?;
    let daemon = ApiDaemon::start(ApiDaemonOpts { daemon: DaemonOpts { ifaces: Vec::new(), ..DaemonOpts::default() }, ..ApiDaemonOpts::in_netns(topo.lb()) })?;
    let api = daemon.runtime()["api"].as_str().context("runtime.json has no api address")?.to_string();
    let work = tempfile::Builder::new().prefix("lb-tests-st-").tempdir()?;
    let config = work.path().join("schemathesis.toml");
    // `{serviceName}` is this daemon's service: any other answers 404 before the handler.
    std::fs::write(&config, "[parameters]\n\"path.serviceName\" = \"test\"\n")?;
    let seed = std::env::var("LB_TESTS_ST_SEED").unwrap_or_else(|_| "2026".into());

    let mut cmd = command_in(topo.lb(), &st);
    cmd.current_dir(work.path())
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("http://{api}/openapi.json"))
        .args(["--checks", CHECKS])
        .args(["--max-examples", &MAX_EXAMPLES.to_string()])
        .args(["--max-time", &ST_BUDGET_SECS.to_string()])
        .args(["--request-timeout", "10", "--workers", "1", "--seed", &seed])
        .args(["--no-color", "--report", "junit", "--report-dir"])
        .arg(work.path().join("report"))
        .env("NO_COLOR", "1");
    let started = Instant::now();
    let out = output_with_timeout(&mut cmd, ST_WALL_CLOCK).with_context(|| format!("schemathesis against http://{api}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("generated") || l.contains("Tested:") || l.contains("Selected:") || l.contains("passed") || l.contains("failures"))
        .collect();
    eprintln!("schemathesis (seed {seed}) ran {:?}: exit {}\n{}", started.elapsed(), out.status, summary.join("\n"));
    if !out.status.success() {
        let tail: String = text.chars().skip(text.chars().count().saturating_sub(12_000)).collect();
        bail!("schemathesis found failures (replay with LB_TESTS_ST_SEED={seed}):\n{tail}\n{}", String::from_utf8_lossy(&out.stderr));
    }
    ensure!(text.contains("Tested:") && !text.contains("Tested: 0"), "schemathesis tested nothing:\n{text}");
    // Still serving afterwards.
    let reply = daemon.client().get("/zone")?;
    ensure!(reply.status == 200, "after the run: {}", reply.text);
    Ok(())
}

/// An error answer: the status, `application/json`, a known class and a message.
fn expect_error(reply: &Reply, status: u16, needle: &str, what: &str) -> Result<()> {
    ensure!(reply.status == status, "{what}: answered {} instead of {status}: {}", reply.status, reply.text);
    ensure!(reply.class().starts_with("Client::") && !reply.message().is_empty(), "{what}: not a JSON error: {}", reply.text);
    ensure!(reply.message().contains(needle), "{what}: message {:?} does not say {needle:?}", reply.message());
    Ok(())
}

fn seed(api: &ApiClient) -> Result<()> {
    api.create("/tcp/farm", json!({"displayName": "h2", "port": 8443}))?;
    api.create("/tcp/farm/1/server", json!({"address": "10.77.2.2"}))?;
    // Nothing is applied here (the daemon runs in the test's own namespace); were a refresh
    // to slip through, it would listen on an unlikely port.
    api.create("/tcp/frontend", json!({"port": "40443", "defaultFarmId": 1}))?;
    api.create("/tcp/route", json!({"action": {"type": "farm", "target": "1"}, "frontendId": 1}))?;
    api.create("/tcp/route/1/rule", json!({"field": "protocol", "match": "is", "pattern": "http/2.0"}))?;
    Ok(())
}

#[test]
fn malformed_json_answers_400_with_a_message() -> Result<()> {
    let daemon = ApiDaemon::start(ApiDaemonOpts::local())?;
    let api = daemon.client();
    seed(&api)?;
    let bodies: &[(&str, &str)] = &[
        ("truncated", "{\"port\": \"443\""),
        ("trailing comma", "{\"port\": \"443\",}"),
        ("not JSON", "port=443"),
        ("a lone bracket", "["),
        ("NUL and control bytes", "{\"port\": \"4\u{0}43\u{1}\"}"),
        ("unpaired surrogate", "{\"port\": \"\\ud800\"}"),
        ("a number too large", "{\"port\": \"443\", \"inspectTimeout\": 1e999}"),
        ("deep nesting", &format!("{}{}", "[".repeat(10_000), "]".repeat(10_000))),
    ];
    let paths = [("POST", "/tcp/frontend"), ("PUT", "/tcp/frontend/1"), ("POST", "/tcp/farm/1/server"), ("POST", "/tcp/route/1/rule"), ("POST", "/refresh")];
    for (what, body) in bodies {
        for (method, path) in paths {
            let reply = api.raw(method, &format!("/ipLoadbalancing/test{path}"), Some(body))?;
            expect_error(&reply, 400, "", &format!("{what} to {method} {path}"))?;
        }
    }
    // JSON, but not an object: arrays are not read positionally, scalars are refused.
    for body in ["[null, \"443\"]", "[null]", "\"443\"", "443", "null", "true"] {
        for (method, path) in paths {
            // `null` is "no body" to /refresh (every zone), and would apply: not sent here.
            if path == "/refresh" && body == "null" {
                continue;
            }
            let reply = api.raw(method, &format!("/ipLoadbalancing/test{path}"), Some(body))?;
            expect_error(&reply, 400, "object", &format!("{body} to {method} {path}"))?;
        }
    }
    ensure!(
        api.pending()? == 5,
        "refused bodies changed the staged configuration: {}; frontends {}, servers {}, rules {}",
        api.get("/pendingChanges")?.text,
        api.get("/tcp/frontend")?.text,
        api.get("/tcp/farm/1/server")?.text,
        api.get("/tcp/route/1/rule")?.text
    );
    Ok(())
}

#[test]
fn bodies_over_the_limit_answer_413_and_the_limit_is_exact() -> Result<()> {
    const LIMIT: usize = 1 << 20;
    let daemon = ApiDaemon::start(ApiDaemonOpts::local())?;
    let api = daemon.client();
    let path = "/ipLoadbalancing/test/tcp/frontend";
    // A valid body padded with spaces to exactly the limit, then one byte more.
    let valid = "{\"port\": \"443\"}";
    let at_limit = format!("{valid}{}", " ".repeat(LIMIT - valid.len()));
    let reply = api.raw("POST", path, Some(&at_limit))?;
    ensure!(reply.status == 200, "a body of exactly {LIMIT} bytes: {} {}", reply.status, reply.text);
    let over = format!("{at_limit} ");
    let reply = api.raw("POST", path, Some(&over))?;
    expect_error(&reply, 413, "exceeds", "a body one byte over the limit")?;
    ensure!(reply.class() == "Client::RequestEntityTooLarge", "class {:?}", reply.class());
    // Far over: 64 MiB. The daemon may answer before reading it all and close; either way it
    // must not take the body in, and keeps serving.
    let huge = format!("{{\"port\": \"443\", \"displayName\": \"{}\"}}", "x".repeat(64 << 20));
    let started = Instant::now();
    match api.raw("PUT", "/ipLoadbalancing/test/tcp/frontend/1", Some(&huge)) {
        Ok(reply) => expect_error(&reply, 413, "exceeds", "a 64 MiB body")?,
        Err(e) => eprintln!("64 MiB body: the daemon closed the connection early: {e:#}"),
    }
    eprintln!("64 MiB body refused in {:?}", started.elapsed());
    let reply = api.get("/tcp/frontend")?;
    ensure!(reply.status == 200 && reply.json == json!([1]), "after the huge bodies: {}", reply.text);
    ensure!(api.get("/tcp/frontend/1")?.json["displayName"].is_null(), "the oversized update was applied");
    Ok(())
}

#[test]
fn wrong_types_answer_400_naming_the_field() -> Result<()> {
    let daemon = ApiDaemon::start(ApiDaemonOpts::local())?;
    let api = daemon.client();
    seed(&api)?;
    let cases: &[(&str, &str, Value, &str)] = &[
        ("POST", "/tcp/frontend", json!({"port": 443}), "`port`"),
        ("POST", "/tcp/frontend", json!({"port": "443", "allowedSource": "10.0.0.0/8"}), "`allowedSource`"),
        ("POST", "/tcp/frontend", json!({"port": "443", "inspectTimeout": "slow"}), "`inspectTimeout`"),
        ("POST", "/tcp/frontend", json!({"port": "443", "disabled": "yes"}), "`disabled`"),
        ("POST", "/tcp/frontend", json!({"port": "443", "defaultFarmId": -1}), "`defaultFarmId`"),
        ("PUT", "/tcp/frontend/1", json!({"defaultFarmId": "1"}), "`defaultFarmId`"),
        ("POST", "/tcp/farm", json!({"port": "8443"}), "`port`"),
        ("POST", "/tcp/farm", json!({"port": 70000}), "`port`"),
        ("PUT", "/tcp/farm/1", json!({"balance": 3}), "`balance`"),
        ("PUT", "/tcp/farm/1", json!({"probe": "tcp"}), "`probe`"),
        ("POST", "/tcp/farm/1/server", json!({"address": 167_772_674}), "`address`"),
        ("POST", "/tcp/farm/1/server", json!({"address": "10.77.2.3", "weight": "heavy"}), "`weight`"),
        ("POST", "/tcp/farm/1/server", json!({"address": "10.77.2.3", "weight": 1.5}), "`weight`"),
        ("PUT", "/tcp/farm/1/server/1", json!({"backup": 1}), "`backup`"),
        ("POST", "/tcp/route", json!({"frontendId": "1", "action": {"type": "reject"}}), "`frontendId`"),
        ("POST", "/tcp/route", json!({"frontendId": 1, "action": "reject"}), "`action`"),
        ("PUT", "/tcp/route/1", json!({"weight": [1]}), "`weight`"),
        ("POST", "/tcp/route/1/rule", json!({"field": "sni", "match": "is", "pattern": 5}), "`pattern`"),
        ("POST", "/tcp/route/1/rule", json!({"field": "sni", "match": "is", "pattern": "a", "negate": "no"}), "`negate`"),
        ("PUT", "/tcp/route/1/rule/1", json!({"field": {"name": "sni"}}), "`field`"),
        ("POST", "/refresh", json!({"zone": 5}), "`zone`"),
    ];
    for (method, path, body, needle) in cases {
        let reply = api.service(method, path, Some(body.clone()))?;
        expect_error(&reply, 400, needle, &format!("{method} {path} {body}"))?;
    }
    ensure!(api.pending()? == 5, "refused bodies changed the staged configuration");
    Ok(())
}
