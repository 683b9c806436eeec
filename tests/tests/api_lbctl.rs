//! `lbctl` drives the seed scenario (README, "The API") against a real daemon, then shows a server error.

use std::process::Output;

use anyhow::{ensure, Context, Result};
use lb_tests::api::{ApiDaemon, ApiDaemonOpts};
use lb_tests::netns::command_in;
use lb_tests::{bin_path, require_root, Lab};
use serde_json::Value;

struct Lbctl {
    ns: String,
    api: String,
}

impl Lbctl {
    fn run(&self, args: &[&str]) -> Result<Output> {
        Ok(command_in(&self.ns, bin_path("LBCTL_BIN", "lbctl")).args(["--api", &self.api, "--service", "test", "--output", "json"]).args(args).output()?)
    }

    fn json(&self, args: &[&str]) -> Result<Value> {
        let out = self.run(args)?;
        ensure!(out.status.success(), "lbctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).with_context(|| format!("lbctl {args:?} printed {text}"))
    }

    fn id(&self, args: &[&str], field: &str) -> Result<String> {
        let v = self.json(args)?;
        Ok(v[field].as_u64().with_context(|| format!("no {field} in {v}"))?.to_string())
    }
}

#[test]
fn lbctl_drives_the_seed_scenario() -> Result<()> {
    require_root!();
    let lab = Lab::with_standard_backends()?;
    let daemon = ApiDaemon::start(ApiDaemonOpts::in_netns(lab.topo.lb()))?;
    let api = daemon.runtime()["api"].as_str().context("runtime.json has no api address")?;
    let ctl = Lbctl { ns: lab.topo.lb().to_string(), api: format!("http://{api}") };

    let h2 = ctl.id(&["farm", "create", "--display-name", "h2", "--port", "8443"], "farmId")?;
    let h1 = ctl.id(&["farm", "create", "--display-name", "h1", "--port", "8443"], "farmId")?;
    for (farm, address) in [(&h2, "10.77.2.2"), (&h2, "10.77.2.3"), (&h1, "10.77.2.4"), (&h1, "10.77.2.5")] {
        ctl.json(&["server", "create", "--farm", farm, "--address", address])?;
    }
    let frontend = ctl.id(&["frontend", "create", "--port", "443", "--default-farm", &h1], "frontendId")?;
    ctl.json(&["refresh"])?;
    let before = lab.curl("--http2", "h2.lb.test")?;
    ensure!(before.backend().starts_with("farm h1 "), "before the route: {before:?}");

    let route = ctl.id(&["route", "create", "--frontend", &frontend, "--action", "farm", "--target", &h2], "routeId")?;
    ctl.json(&["rule", "create", "--route", &route, "--field", "protocol", "--match", "is", "--pattern", "http/2.0"])?;
    let pending = ctl.json(&["pending"])?;
    ensure!(pending.to_string().contains("\"number\":2"), "pending: {pending}");
    let staged = lab.curl("--http2", "h2.lb.test")?;
    ensure!(staged.backend().starts_with("farm h1 "), "staged route changed traffic: {staged:?}");

    let task = ctl.json(&["refresh", "--zone", "local"])?;
    ensure!(task["status"] == "done", "refresh task: {task}");
    let h2_answer = lab.curl("--http2", "h2.lb.test")?;
    ensure!(h2_answer.backend().starts_with("farm h2 ") && h2_answer.http_version.starts_with('2'), "after refresh: {h2_answer:?}");
    let h1_answer = lab.curl("--http1.1", "h2.lb.test")?;
    ensure!(h1_answer.backend().starts_with("farm h1 "), "http/1.1 after refresh: {h1_answer:?}");

    // A server-side validation error: printed with its message, non-zero exit.
    let out = ctl.run(&["frontend", "create", "--port", "70000"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success() && stderr.contains("port") && stderr.contains("400"), "bad port: {stderr}");
    Ok(())
}
