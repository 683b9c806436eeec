//! The status page in a real browser: headless Chromium (Debian `chromium`) loads `/status`
//! from a live daemon whose API has a token (given to the page in the URL fragment), the DOM
//! lists the farms, servers and routes, and after one backend is stopped and its probe marks
//! it down, a page left open shows that server down without being reloaded. Screenshots are
//! kept under target/test-artifacts/ (status.png, status-phone.png, and the status.json they
//! show).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use lb_tests::api::{ApiClient, ApiDaemon, ApiDaemonOpts};
use lb_tests::chromium::{self, Session};
use lb_tests::client::https_get;
use lb_tests::config::{Config, Farm, Frontend, Probe, Route, Rule, Server};
use lb_tests::{require_root, workspace_root, Backends, Lab};
use serde_json::{json, Value};

const TOKEN: &str = "status-page-test-token";
/// Virtual time Chromium gives the page's scripts in one-shot runs: the first fetch and a
/// refresh or two.
const SCRIPT_BUDGET: Duration = Duration::from_secs(5);
/// Probe interval (seconds): two failed probes mark a server down.
const INTERVAL: u32 = 1;
/// The page refreshes every 3 s; the probe needs two intervals; plus slack.
const LIVE_UPDATE_WITHIN: Duration = Duration::from_secs(15);

/// The attributes of the first element whose opening tag carries `marker` (e.g.
/// `data-server-id="1"`), as Chromium serialised it.
fn tag_with<'a>(dom: &'a str, marker: &str) -> Option<&'a str> {
    let at = dom.find(marker)?;
    let start = dom[..at].rfind('<')?;
    let end = at + dom[at..].find('>')?;
    Some(&dom[start..=end])
}

fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let from = tag.find(&key)? + key.len();
    let len = tag[from..].find('"')?;
    Some(&tag[from..from + len])
}

/// The state the page shows for server `id`.
fn server_state(dom: &str, id: u32) -> Option<String> {
    let tag = tag_with(dom, &format!("data-server-id=\"{id}\""))?;
    attribute(tag, "data-state").map(str::to_string)
}

/// `GET /status.json` with the token, parsed.
fn status_json(api: &ApiClient) -> Result<Value> {
    let reply = api.raw("GET", "/status.json", None)?;
    ensure!(reply.status == 200, "GET /status.json: {} {}", reply.status, reply.text);
    Ok(reply.json)
}

fn json_server_state(status: &Value, id: u32) -> Option<String> {
    status["farms"]
        .as_array()?
        .iter()
        .flat_map(|f| f["servers"].as_array().into_iter().flatten())
        .find(|s| s["id"] == id)
        .and_then(|s| s["state"].as_str())
        .map(str::to_string)
}

/// Polls `status.json` until server `id` is in `state`, for at most `timeout`.
fn wait_for_state(api: &ApiClient, id: u32, state: &str, timeout: Duration) -> Result<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let status = status_json(api)?;
        if json_server_state(&status, id).as_deref() == Some(state) {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            bail!("server {id} not {state} within {timeout:?}: {status:#}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn artefact(name: &str) -> PathBuf {
    workspace_root().join("target").join("test-artifacts").join(name)
}

/// The state a live page shows for server `id` (a JavaScript expression).
fn live_state(id: u32) -> String {
    format!("document.querySelector('tr[data-server-id=\"{id}\"]')?.dataset.state ?? null")
}

#[test]
fn status_page_in_chromium_lists_farms_and_shows_a_stopped_server_down() -> Result<()> {
    require_root!();
    chromium::binary()?;
    let lab = Lab::new()?;
    let mut doomed = Backends::new(&lab.topo, &lab.certs)?;
    doomed.tls("10.77.2.4:8443", &["http/1.1"], "doomed")?;
    let mut others = Backends::new(&lab.topo, &lab.certs)?;
    others.tls("10.77.2.5:8443", &["http/1.1"], "survivor")?;
    others.tls("10.77.2.2:8443", &["h2"], "h2 one")?;

    let probe = || Probe::new("tcp").interval(INTERVAL);
    let config = Config::new()
        .frontend(Frontend::new(1, "443").default_farm(1).named("public-tls"))
        .farm(
            Farm::new(1, "web-h1")
                .probe(probe())
                .server(Server::new(1, "10.77.2.4", 8443).probed().named("web-a"))
                .server(Server::new(2, "10.77.2.5", 8443).probed().named("web-b")),
        )
        .farm(Farm::new(2, "api-h2").probe(probe()).server(Server::new(3, "10.77.2.2", 8443).probed().named("api-a")))
        .route(Route::to_farm(1, 1, 2).weight(10).rule(Rule { rule_id: Some(1), ..Rule::new("alpn", "is", "h2") }))
        .route(Route::reject(2, 1).weight(50).rule(Rule { rule_id: Some(2), ..Rule::new("source", "is", "10.77.1.3") }));
    let mut opts = ApiDaemonOpts::in_netns(lab.topo.lb());
    opts.config = Some(config);
    opts.token = Some(TOKEN.to_string());
    // Declared after the lab: stopped before the namespaces go.
    let daemon = ApiDaemon::start(opts)?;
    let api = daemon.client();
    let addr = daemon.runtime()["api"].as_str().context("runtime.json has the API address")?.to_string();
    let ns = lab.topo.lb();
    let page = format!("http://{addr}/status#token={TOKEN}");

    // The shell loads without the token; the data does not.
    let shell = api.with_token(None).raw("GET", "/status", None)?;
    ensure!(shell.status == 200 && shell.text.contains("status.json"), "GET /status without a token: {} {}", shell.status, shell.text);
    let refused = api.with_token(None).raw("GET", "/status.json", None)?;
    ensure!(refused.status == 401, "GET /status.json without a token must be refused: {} {}", refused.status, refused.text);

    // A little traffic, so that the counters are not all zero.
    let h1 = lab.client("web.lb.test").alpn(&["http/1.1"]);
    let h2 = lab.client("api.lb.test").alpn(&["h2"]);
    lab.in_cli(|| {
        for _ in 0..4 {
            ensure!(https_get(&h1, "/")?.status == 200);
            ensure!(https_get(&h2, "/")?.status == 200);
        }
        Ok(())
    })?;
    for id in [1, 2, 3] {
        wait_for_state(&api, id, "up", Duration::from_secs(10))?;
    }
    // The connections and their bytes reach the report (polled: the relays count as they go).
    let counted = lb_tests::wait_for(Duration::from_secs(10), Duration::from_millis(200), || {
        let status = status_json(&api).ok()?;
        let server = status["farms"][1]["servers"][0].clone();
        (server["id"] == 3 && server["connections"] == 4 && server["bytes"]["toClient"].as_u64() > Some(0)).then_some(server)
    });
    ensure!(counted.is_some(), "server 3 should report its 4 connections and their bytes: {:#}", status_json(&api)?);
    // A refresh (a task to list), then a staged change left pending.
    api.refresh_done()?;
    api.update("/tcp/farm/1/server/2", json!({ "weight": 3 }))?;
    ensure!(api.pending()? == 1, "one change should be pending");

    let dom = chromium::dump_dom(ns, &page, SCRIPT_BUDGET)?;
    for text in ["web-h1", "api-h2", "web-a", "web-b", "api-a", "public-tls", "alpn is h2", "source is 10.77.1.3"] {
        ensure!(dom.contains(text), "the page does not show {text:?}:\n{dom}");
    }
    for id in [1, 2, 3] {
        ensure!(
            server_state(&dom, id).as_deref() == Some("up"),
            "server {id} should show up: {:?}\n{dom}",
            tag_with(&dom, &format!("data-server-id=\"{id}\""))
        );
    }
    ensure!(
        tag_with(&dom, "data-task-id=\"1\"").is_some() && dom.contains("local: 1 change pending"),
        "the page lists the refresh task and the pending change:\n{dom}"
    );
    // Evaluation order: the reject route (weight 50) before the farm route (weight 10).
    let (reject, alpn) = (dom.find("data-route-id=\"2\""), dom.find("data-route-id=\"1\""));
    ensure!(matches!((reject, alpn), (Some(r), Some(a)) if r < a), "reject routes are listed first: {reject:?} {alpn:?}");

    // Without the fragment the page loads but says what it needs.
    let bare = chromium::dump_dom(ns, &format!("http://{addr}/status"), SCRIPT_BUDGET)?;
    ensure!(bare.contains("needs its token"), "the page without a token should ask for one:\n{bare}");

    // One page stays open while the backend stops: it must update itself.
    let log_dir = tempfile::Builder::new().prefix("lb-tests-status-").tempdir()?;
    let mut browser = Session::launch(ns, &log_dir.path().join("chromium.log"))?;
    let live = browser.open(&page)?;
    browser.wait_for(&live, &live_state(1), &json!("up"), Duration::from_secs(15))?;

    drop(doomed);
    let status = wait_for_state(&api, 1, "down", Duration::from_secs(10))?;
    let shown_after = browser.wait_for(&live, &live_state(1), &json!("down"), LIVE_UPDATE_WITHIN).with_context(|| format!("status.json: {status:#}"))?;
    eprintln!("the open page showed server 1 down {shown_after:?} after status.json did");
    for id in [2, 3] {
        ensure!(browser.eval(&live, &live_state(id))? == json!("up"), "server {id} should stay up on the open page");
    }
    let error = browser.eval(&live, "document.querySelector('tr[data-server-id=\"1\"] .err')?.textContent ?? null")?;
    ensure!(error.as_str().is_some_and(|e| e.contains("10.77.2.4:8443")), "the down server's last error names its address: {error}");
    drop(browser);

    // A fresh load agrees.
    let dom = chromium::dump_dom(ns, &page, SCRIPT_BUDGET)?;
    ensure!(server_state(&dom, 1).as_deref() == Some("down"), "server 1 should show down: {:?}\n{dom}", tag_with(&dom, "data-server-id=\"1\""));

    let desktop = artefact("status.png");
    chromium::screenshot(ns, &page, &desktop, (1280, 1250), SCRIPT_BUDGET)?;
    let phone = artefact("status-phone.png");
    chromium::screenshot(ns, &page, &phone, (390, 1600), SCRIPT_BUDGET)?;
    std::fs::write(artefact("status.json"), serde_json::to_string_pretty(&status_json(&api)?)?)?;
    eprintln!("screenshots: {} {}", desktop.display(), phone.display());
    drop(daemon);
    Ok(())
}
