//! The API refuses what IPLB refuses (docs/api.md), with the right status, class and a message naming the
//! field (400), the id (404) or what still uses an object (409); a token guards every path
//! when configured, and a non-loopback API without one refuses to start. The daemon runs in
//! the test's own namespace without XDP: these tests need no root.

use anyhow::{ensure, Context, Result};
use lb_tests::api::{ApiClient, ApiDaemon, ApiDaemonOpts, Reply};
use serde_json::{json, Value};

/// Farms 1 (h2) and 2 (h1) with a server each, frontend 1 (default farm 2), route 1 → farm 1
/// with rule 1; staged only (nothing listens).
fn seed(api: &ApiClient) -> Result<()> {
    api.create("/tcp/farm", json!({"displayName": "h2", "port": 8443}))?;
    api.create("/tcp/farm", json!({"displayName": "h1", "port": 8443}))?;
    api.create("/tcp/farm/1/server", json!({"address": "10.77.2.2"}))?;
    api.create("/tcp/farm/2/server", json!({"address": "10.77.2.4"}))?;
    api.create("/tcp/frontend", json!({"port": "443", "zone": "all", "defaultFarmId": 2}))?;
    api.create("/tcp/route", json!({"action": {"type": "farm", "target": "1"}, "frontendId": 1}))?;
    api.create("/tcp/route/1/rule", json!({"field": "protocol", "match": "is", "pattern": "http/2.0"}))?;
    Ok(())
}

fn expect(reply: &Reply, status: u16, class: &str, needle: &str, what: &str) -> Result<()> {
    ensure!(reply.status == status, "{what}: answered {} instead of {status}: {}", reply.status, reply.text);
    ensure!(reply.class() == class, "{what}: class {:?} instead of {class:?}: {}", reply.class(), reply.text);
    ensure!(reply.message().contains(needle), "{what}: message {:?} does not name {needle:?}", reply.message());
    Ok(())
}

#[test]
fn invalid_input_answers_400_naming_the_field() -> Result<()> {
    let daemon = ApiDaemon::start(ApiDaemonOpts::local())?;
    let api = daemon.client();
    seed(&api)?;
    let cases: &[(&str, Value, &str)] = &[
        ("/tcp/frontend", json!({"port": "70000"}), "`port`"),
        ("/tcp/frontend", json!({"port": "80-70"}), "`port`"),
        ("/tcp/frontend", json!({"port": 443}), "`port`"),
        ("/tcp/frontend", json!({"port": "8000", "deniedSource": ["192.0.2.0/33"]}), "`deniedSource`"),
        ("/tcp/frontend", json!({"port": "8000", "allowedSource": ["10.0.0.0/8"], "deniedSource": ["192.0.2.0/24"]}), "`allowedSource`"),
        ("/tcp/frontend", json!({"port": "8000", "zone": "nowhere"}), "`zone`"),
        ("/tcp/frontend", json!({"port": "8000", "defaultFarmId": 99}), "`defaultFarmId`"),
        ("/tcp/frontend", json!({"port": "8000", "colour": "blue"}), "colour"),
        ("/tcp/farm", json!({"probe": {"type": "http", "negate": true}}), "A probe can not negate without a match"),
        ("/tcp/farm", json!({"zone": "nowhere"}), "`zone`"),
        ("/tcp/farm", json!({"port": "8443"}), "`port`"),
        ("/tcp/farm/1/server", json!({"address": "10.77.2.300"}), "`address`"),
        ("/tcp/farm/1/server", json!({"address": "10.77.2.3", "weight": 300}), "`weight`"),
        ("/tcp/route", json!({"action": {"type": "farm", "target": "99"}, "frontendId": 1}), "`action.target`"),
        ("/tcp/route", json!({"action": {"type": "farm", "target": "1"}, "frontendId": 99}), "`frontendId`"),
        ("/tcp/route", json!({"action": {"type": "teleport"}, "frontendId": 1}), "`action.type`"),
        ("/tcp/route/1/rule", json!({"field": "sni", "match": "matches", "pattern": "(unclosed"}), "`pattern`"),
        ("/tcp/route/1/rule", json!({"field": "source", "match": "contains", "pattern": "10.0.0.1"}), "`match`"),
        ("/tcp/route/1/rule", json!({"field": "cookie", "match": "is", "pattern": "x"}), "`field`"),
        ("/tcp/route/1/rule", json!({"field": "protocol", "match": "is", "pattern": "quic"}), "`pattern`"),
    ];
    for (path, body, needle) in cases {
        let reply = api.service("POST", path, Some(body.clone()))?;
        expect(&reply, 400, "Client::BadRequest", needle, &format!("POST {path} {body}"))?;
    }
    let malformed = api.raw("POST", "/ipLoadbalancing/test/tcp/frontend", Some("{\"port\": \"443\""))?;
    expect(&malformed, 400, "Client::BadRequest", "malformed JSON", "malformed JSON")?;
    let update = api.service("PUT", "/tcp/frontend/1", Some(json!({"port": "0"})))?;
    expect(&update, 400, "Client::BadRequest", "frontend 1: field `port`", "PUT with a bad port")?;
    let update = api.service("PUT", "/tcp/farm/1/server/1", Some(json!({"weight": "heavy"})))?;
    expect(&update, 400, "Client::BadRequest", "`weight`", "PUT with a wrong type")?;
    let bad_id = api.get("/tcp/route/first")?;
    expect(&bad_id, 400, "Client::BadRequest", "routeId", "a path id that is no number")?;
    let zone = api.service("POST", "/refresh", Some(json!({"zone": "nowhere"})))?;
    expect(&zone, 400, "Client::BadRequest", "zone", "refresh of an unknown zone")?;
    ensure!(api.pending()? == 7, "refused writes were counted as pending changes");
    let frontends = api.get("/tcp/frontend")?.json;
    ensure!(frontends == json!([1]), "refused creates left objects: {frontends}");
    Ok(())
}

#[test]
fn unknown_ids_and_services_answer_404() -> Result<()> {
    let daemon = ApiDaemon::start(ApiDaemonOpts::local())?;
    let api = daemon.client();
    seed(&api)?;
    for (method, path, needle) in [
        ("GET", "/tcp/frontend/42", "frontend 42"),
        ("PUT", "/tcp/farm/42", "farm 42"),
        ("DELETE", "/tcp/route/42", "route 42"),
        ("GET", "/tcp/farm/1/server/2", "server 2"),
        ("GET", "/tcp/farm/42/server", "farm 42"),
        ("DELETE", "/tcp/route/1/rule/42", "rule 42"),
        ("GET", "/task/42", "task 42"),
    ] {
        let body = (method == "PUT").then(|| json!({"displayName": "x"}));
        expect(&api.service(method, path, body)?, 404, "Client::NotFound", needle, &format!("{method} {path}"))?;
    }
    let other = api.raw("GET", "/ipLoadbalancing/another/tcp/frontend", None)?;
    expect(&other, 404, "Client::NotFound", "another", "another service")?;
    Ok(())
}

#[test]
fn deleting_what_is_still_used_answers_409_and_deletes_cascade() -> Result<()> {
    let daemon = ApiDaemon::start(ApiDaemonOpts::local())?;
    let api = daemon.client();
    seed(&api)?;
    expect(&api.service("DELETE", "/tcp/farm/1", None)?, 409, "Client::Conflict", "route 1", "farm of a route action")?;
    expect(&api.service("DELETE", "/tcp/farm/2", None)?, 409, "Client::Conflict", "frontend 1", "farm of a defaultFarmId")?;
    expect(&api.service("DELETE", "/tcp/frontend/1", None)?, 409, "Client::Conflict", "route", "frontend of a route")?;
    api.delete("/tcp/route/1")?;
    expect(&api.get("/tcp/route/1/rule/1")?, 404, "Client::NotFound", "route 1", "rule of a deleted route")?;
    api.delete("/tcp/farm/1")?;
    expect(&api.get("/tcp/farm/1/server/1")?, 404, "Client::NotFound", "farm 1", "server of a deleted farm")?;
    let route = api.create("/tcp/route", json!({"action": {"type": "reject"}, "frontendId": 1}))?;
    ensure!(route["routeId"] == 2, "route ids are never reused: {route}");
    Ok(())
}

#[test]
fn objects_keep_the_iplb_types_and_nulls() -> Result<()> {
    let daemon = ApiDaemon::start(ApiDaemonOpts::local())?;
    let api = daemon.client();
    seed(&api)?;
    let server = api.create("/tcp/farm/2/server", json!({"address": "10.77.2.5", "weight": 0}))?;
    ensure!(server["weight"] == 0 && server["port"].is_null() && server["farmId"] == 2, "{server}");
    let route = api.get("/tcp/route/1")?.json;
    ensure!(route["action"] == json!({"type": "farm", "target": "1"}), "{route}");
    ensure!(route["rules"][0]["pattern"] == "http/2.0" && route["status"] == "toCreate", "{route}");
    let frontend = api.get("/tcp/frontend/1")?.json;
    ensure!(frontend["port"] == "443" && frontend["deniedSource"].is_null(), "{frontend}");
    let put = api.service("PUT", "/tcp/frontend/1", Some(json!({"displayName": "main"})))?;
    ensure!(put.status == 204 && put.text.is_empty(), "PUT answers 204 without a body: {put:?}");
    ensure!(api.get("/tcp/frontend/1")?.json["defaultFarmId"] == 2, "a PUT keeps the fields it does not name");
    let doc = api.raw("GET", "/openapi.json", None)?;
    ensure!(doc.status == 200 && doc.json["paths"].as_object().is_some_and(|p| p.len() >= 19), "openapi.json: {}", doc.text.len());
    Ok(())
}

#[test]
fn a_large_body_answers_413() -> Result<()> {
    let daemon = ApiDaemon::start(ApiDaemonOpts::local())?;
    let api: std::net::SocketAddr = daemon.runtime()["api"].as_str().unwrap_or_default().parse()?;
    // The answer is read while the body is still being sent: the daemon answers once it has
    // read past its limit and closes, and the rest of the body then meets a closed socket
    // (EPIPE or a reset for the writer, which is expected: only the answer is checked). A
    // client that first sends everything can lose that race (CI once did, under load).
    let len = 2 << 20;
    let mut stream = std::net::TcpStream::connect(api)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut writer = stream.try_clone()?;
    let head = format!("POST /ipLoadbalancing/test/tcp/frontend HTTP/1.1\r\nhost: {api}\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n");
    let prefix = "{\"port\": \"443\", \"displayName\": \"";
    let body = format!("{prefix}{}\"}}", "x".repeat(len - prefix.len() - 2));
    let sender = std::thread::spawn(move || {
        let _ = std::io::Write::write_all(&mut writer, head.as_bytes()).and_then(|()| std::io::Write::write_all(&mut writer, body.as_bytes()));
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") || !answer.ends_with(b"}") {
        match std::io::Read::read(&mut stream, &mut buf)? {
            0 => break,
            n => answer.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head.split(' ').nth(1).unwrap_or_default().parse().unwrap_or(0);
    let reply = Reply { status, text: body.to_string(), json: serde_json::from_str(body).unwrap_or(Value::Null) };
    stream.shutdown(std::net::Shutdown::Both).ok();
    sender.join().ok();
    expect(&reply, 413, "Client::RequestEntityTooLarge", "exceeds", "a 2 MiB body")
}

#[test]
fn with_a_token_every_request_needs_it() -> Result<()> {
    let daemon = ApiDaemon::start(ApiDaemonOpts { token: Some("s3cret-token".into()), ..ApiDaemonOpts::local() })?;
    let api = daemon.client();
    for path in ["/ipLoadbalancing/test/tcp/frontend", "/ipLoadbalancing/test/pendingChanges", "/openapi.json"] {
        expect(&api.with_token(None).raw("GET", path, None)?, 401, "Client::Unauthorized", "token", &format!("{path} without a token"))?;
        expect(&api.with_token(Some("s3cret-tokem")).raw("GET", path, None)?, 401, "Client::Unauthorized", "token", &format!("{path} with a wrong token"))?;
        let ok = api.raw("GET", path, None)?;
        ensure!(ok.status == 200, "{path} with the token answered {}: {}", ok.status, ok.text);
    }
    let post = api.with_token(None).service("POST", "/tcp/farm", Some(json!({})))?;
    ensure!(post.status == 401, "{post:?}");
    ensure!(api.get("/tcp/farm")?.json == json!([]), "a refused request changed nothing");
    Ok(())
}

#[test]
fn a_non_loopback_api_without_token_refuses_to_start() -> Result<()> {
    let result = ApiDaemon::start(ApiDaemonOpts { api: "0.0.0.0:0".into(), ..ApiDaemonOpts::local() });
    let err = result.err().context("the daemon started with --api 0.0.0.0:0 and no token")?;
    ensure!(format!("{err:#}").contains("--api-token-file"), "the refusal does not say what to do: {err:#}");
    Ok(())
}
