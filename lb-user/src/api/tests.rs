use std::{net::SocketAddr, sync::Arc};

use axum::{
    body::Body,
    http::{header, Method, Request, StatusCode},
    Router,
};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::*;
use crate::{control::Traffic, daemon::apply::ApplyError, store::Store};
use lb_core::model::ServiceConfig;

struct NoTraffic;
impl Traffic for NoTraffic {
    fn apply(&self, _: &ServiceConfig) -> Result<(), ApplyError> {
        Ok(())
    }
    fn listening(&self) -> Vec<SocketAddr> {
        vec![]
    }
}

struct Harness {
    router: Router,
    _dir: tempfile::TempDir,
}

fn harness(token: Option<&str>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let control = Control::new(Store::open(dir.path()).unwrap(), Arc::new(NoTraffic), "lb", "local").unwrap();
    Harness { router: router(Arc::new(control), token.map(ApiToken::new), None), _dir: dir }
}

struct Answer {
    status: StatusCode,
    body: Value,
    raw: Vec<u8>,
}

impl Harness {
    async fn send(&self, method: Method, path: &str, body: Option<&str>, token: Option<&str>) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty)).unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let raw = response.into_body().collect().await.unwrap().to_bytes().to_vec();
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Answer { status, body, raw }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let text = body.map(|b| b.to_string());
        self.send(method, &format!("/ipLoadbalancing/lb{path}"), text.as_deref(), None).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    /// The seed scenario's objects, through the API.
    async fn seed(&self) {
        for body in [
            ("/tcp/farm", json!({"port": 8443, "displayName": "h2"})),
            ("/tcp/farm", json!({"port": 8443, "displayName": "h1"})),
            ("/tcp/farm/1/server", json!({"address": "10.0.2.2"})),
            ("/tcp/farm/2/server", json!({"address": "10.0.2.4", "weight": 0})),
            ("/tcp/frontend", json!({"port": "443", "zone": "all", "defaultFarmId": 2})),
            ("/tcp/route", json!({"action": {"type": "farm", "target": "1"}, "frontendId": 1})),
            ("/tcp/route/1/rule", json!({"field": "protocol", "match": "is", "pattern": "http/2.0"})),
        ] {
            let a = self.post(body.0, body.1).await;
            assert_eq!(a.status, StatusCode::OK, "POST {}: {}", body.0, a.body);
        }
    }
}

fn assert_error(a: &Answer, status: StatusCode, class: &str, needle: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    assert_eq!(a.body["class"], class, "{}", a.body);
    let message = a.body["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "message {message:?} should contain {needle:?}");
}

#[tokio::test]
async fn objects_come_back_in_the_iplb_shapes() {
    let h = harness(None);
    h.seed().await;
    let f = h.get("/tcp/frontend/1").await.body;
    assert_eq!((f["frontendId"].clone(), f["port"].clone(), f["defaultFarmId"].clone()), (json!(1), json!("443"), json!(2)));
    assert_eq!(f["allowedSource"], Value::Null, "unset fields are null");
    let s = h.get("/tcp/farm/2/server/2").await.body;
    assert_eq!((s["weight"].clone(), s["farmId"].clone(), s["serverState"][0]["zone"].clone()), (json!(0), json!(2), json!("local")));
    let r = h.get("/tcp/route/1").await.body;
    assert_eq!(r["action"], json!({"type": "farm", "target": "1"}));
    assert_eq!((r["rules"][0]["pattern"].clone(), r["status"].clone()), (json!("http/2.0"), json!("toCreate")));
    assert_eq!(h.get("/tcp/farm").await.body, json!([1, 2]));
    assert_eq!(h.get("/tcp/route/1/rule").await.body, json!([1]));
    assert_eq!(h.get("/pendingChanges").await.body, json!([{"zone": "local", "number": 7}]));
    assert_eq!(h.get("/zone").await.body, json!(["local"]));
    let farm = h.get("/tcp/farm/1").await.body;
    assert!(farm.get("servers").is_none(), "servers live under their own path: {farm}");
}

#[tokio::test]
async fn put_changes_given_fields_and_put_delete_answer_204() {
    let h = harness(None);
    h.seed().await;
    let a = h.call(Method::PUT, "/tcp/farm/2/server/2", Some(json!({"displayName": "b", "serverState": []}))).await;
    assert_eq!((a.status, a.raw.len()), (StatusCode::NO_CONTENT, 0));
    let s = h.get("/tcp/farm/2/server/2").await.body;
    assert_eq!((s["displayName"].clone(), s["weight"].clone(), s["address"].clone()), (json!("b"), json!(0), json!("10.0.2.4")));
    // What a GET returns goes back as is (read-only fields ignored).
    let route = h.get("/tcp/route/1").await.body;
    assert_eq!(h.call(Method::PUT, "/tcp/route/1", Some(route)).await.status, StatusCode::NO_CONTENT);
    let a = h.call(Method::DELETE, "/tcp/route/1", None).await;
    assert_eq!((a.status, a.raw.len()), (StatusCode::NO_CONTENT, 0));
    assert_error(&h.get("/tcp/route/1/rule/1").await, StatusCode::NOT_FOUND, "Client::NotFound", "route 1");
}

#[tokio::test]
async fn routes_list_in_evaluation_order() {
    let h = harness(None);
    h.seed().await;
    h.post("/tcp/route", json!({"action": {"type": "farm", "target": "2"}, "frontendId": 1, "weight": 3})).await;
    h.post("/tcp/route", json!({"action": {"type": "reject"}, "frontendId": 1, "weight": 9})).await;
    assert_eq!(h.get("/tcp/route").await.body, json!([3, 1, 2]));
}

#[tokio::test]
async fn invalid_input_answers_400_naming_the_field() {
    let h = harness(None);
    h.seed().await;
    let cases = [
        ("/tcp/frontend", json!({"port": "70000"}), "`port`"),
        ("/tcp/frontend", json!({"port": 443}), "`port`"),
        ("/tcp/frontend", json!({"port": "8000", "deniedSource": ["10.0.0.0/33"]}), "`deniedSource`"),
        ("/tcp/frontend", json!({"port": "8000", "allowedSource": ["10.0.0.0/8"], "deniedSource": ["10.1.0.0/16"]}), "`allowedSource`"),
        ("/tcp/frontend", json!({"port": "8000", "zone": "gra"}), "`zone`"),
        ("/tcp/frontend", json!({"port": "8000", "defaultFarmId": 9}), "`defaultFarmId`"),
        ("/tcp/frontend", json!({"port": "8000", "colour": "blue"}), "colour"),
        ("/tcp/farm", json!({"probe": {"negate": true}}), "A probe can not negate without a match"),
        ("/tcp/farm", json!({"servers": []}), "servers"),
        ("/tcp/farm/1/server", json!({"address": "10.0.0.300"}), "`address`"),
        ("/tcp/farm/1/server", json!({"address": "10.0.0.3", "weight": 257}), "`weight`"),
        ("/tcp/route", json!({"action": {"type": "farm", "target": "9"}, "frontendId": 1}), "`action.target`"),
        ("/tcp/route", json!({"action": {"type": "farm", "target": 1}, "frontendId": 1}), "`action.target`"),
        ("/tcp/route", json!({"action": {"type": "farm", "target": "1"}, "frontendId": 7}), "`frontendId`"),
        ("/tcp/route/1/rule", json!({"field": "sni", "match": "matches", "pattern": "("}), "`pattern`"),
        ("/tcp/route/1/rule", json!({"field": "source", "match": "contains", "pattern": "10.0.0.1"}), "`match`"),
        ("/tcp/route/1/rule", json!({"field": "cookie", "match": "is", "pattern": "x"}), "`field`"),
    ];
    for (path, body, needle) in cases {
        let a = h.post(path, body.clone()).await;
        assert_error(&a, StatusCode::BAD_REQUEST, "Client::BadRequest", needle);
    }
    let a = h.send(Method::POST, "/ipLoadbalancing/lb/tcp/frontend", Some("{\"port\": "), None).await;
    assert_error(&a, StatusCode::BAD_REQUEST, "Client::BadRequest", "malformed JSON");
    assert_error(&h.call(Method::PUT, "/tcp/frontend/1", Some(json!([1]))).await, StatusCode::BAD_REQUEST, "Client::BadRequest", "JSON object");
    assert_error(
        &h.call(Method::PUT, "/tcp/frontend/1", Some(json!({"port": "0"}))).await,
        StatusCode::BAD_REQUEST,
        "Client::BadRequest",
        "frontend 1: field `port`",
    );
    assert_error(&h.get("/tcp/frontend/x").await, StatusCode::BAD_REQUEST, "Client::BadRequest", "frontendId");
    assert_error(&h.post("/refresh", json!({"zone": "gra"})).await, StatusCode::BAD_REQUEST, "Client::BadRequest", "zone");
    assert_eq!(h.get("/pendingChanges").await.body[0]["number"], 7, "nothing refused was counted");
}

#[tokio::test]
async fn unknown_ids_services_and_paths_answer_404_and_conflicts_409() {
    let h = harness(None);
    h.seed().await;
    assert_error(&h.get("/tcp/frontend/9").await, StatusCode::NOT_FOUND, "Client::NotFound", "frontend 9");
    assert_error(&h.get("/tcp/farm/1/server/2").await, StatusCode::NOT_FOUND, "Client::NotFound", "server 2");
    assert_error(&h.post("/tcp/route/9/rule", json!({"field": "sni", "match": "exists"})).await, StatusCode::NOT_FOUND, "Client::NotFound", "route 9");
    assert_error(&h.get("/task/3").await, StatusCode::NOT_FOUND, "Client::NotFound", "task 3");
    let other = h.send(Method::GET, "/ipLoadbalancing/other/tcp/frontend", None, None).await;
    assert_error(&other, StatusCode::NOT_FOUND, "Client::NotFound", "other");
    assert_error(&h.get("/tcp/nothing").await, StatusCode::NOT_FOUND, "Client::NotFound", "no such path");
    assert_error(&h.call(Method::DELETE, "/tcp/farm/1", None).await, StatusCode::CONFLICT, "Client::Conflict", "route 1");
    assert_error(&h.call(Method::DELETE, "/tcp/farm/2", None).await, StatusCode::CONFLICT, "Client::Conflict", "defaultFarmId");
    assert_error(&h.call(Method::DELETE, "/tcp/frontend/1", None).await, StatusCode::CONFLICT, "Client::Conflict", "route");
}

#[test]
fn service_names_are_percent_decoded() {
    assert_eq!(percent_decode("lb"), "lb");
    assert_eq!(percent_decode("my%20lb%2Fx"), "my lb/x");
    assert_eq!(percent_decode("bad%zz%"), "bad%zz%");
}

#[tokio::test]
async fn bodies_over_the_limit_answer_413() {
    let h = harness(None);
    let big = format!("{{\"port\": \"443\", \"displayName\": \"{}\"}}", "x".repeat(BODY_LIMIT + 1));
    let a = h.send(Method::POST, "/ipLoadbalancing/lb/tcp/frontend", Some(&big), None).await;
    assert_error(&a, StatusCode::PAYLOAD_TOO_LARGE, "Client::RequestEntityTooLarge", "exceeds");
}

#[tokio::test]
async fn a_token_is_required_everywhere_when_configured() {
    let h = harness(Some("s3cret"));
    for path in ["/ipLoadbalancing/lb/tcp/frontend", "/openapi.json", "/ipLoadbalancing/other/zone"] {
        assert_error(&h.send(Method::GET, path, None, None).await, StatusCode::UNAUTHORIZED, "Client::Unauthorized", "token");
        assert_error(&h.send(Method::GET, path, None, Some("s3cres")).await, StatusCode::UNAUTHORIZED, "Client::Unauthorized", "token");
    }
    assert_eq!(h.send(Method::GET, "/ipLoadbalancing/lb/tcp/frontend", None, Some("s3cret")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_status_page_shell_needs_no_token_but_its_data_does() {
    let h = harness(Some("s3cret"));
    for path in crate::status::PAGE_PATHS {
        let a = h.send(Method::GET, path, None, None).await;
        assert_eq!(a.status, StatusCode::OK, "GET {path}");
        assert!(String::from_utf8_lossy(&a.raw).contains("status.json"), "GET {path} serves the page");
    }
    assert_error(&h.send(Method::GET, "/status.json", None, None).await, StatusCode::UNAUTHORIZED, "Client::Unauthorized", "token");
    assert_error(&h.send(Method::POST, "/status", None, None).await, StatusCode::UNAUTHORIZED, "Client::Unauthorized", "token");
    // With the token it gets through; this harness has no daemon behind it.
    assert_error(&h.send(Method::GET, "/status.json", None, Some("s3cret")).await, StatusCode::NOT_FOUND, "Client::NotFound", "running daemon");
}

#[tokio::test]
async fn refresh_returns_a_task_that_ends_done() {
    let h = harness(None);
    h.seed().await;
    let task = h.send(Method::POST, "/ipLoadbalancing/lb/refresh", None, None).await.body;
    assert_eq!((task["action"].clone(), task["zones"].clone()), (json!("refreshIplb"), json!(["local"])));
    let id = task["id"].as_u64().unwrap();
    let mut status = Value::Null;
    for _ in 0..200 {
        status = h.get(&format!("/task/{id}")).await.body;
        if status["status"] == "done" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!((status["status"].clone(), status["progress"].clone()), (json!("done"), json!(100)), "{status}");
    assert_eq!(h.get("/pendingChanges").await.body[0]["number"], 0);
    assert_eq!(h.get("/tcp/route/1").await.body["status"], "ok");
    assert_eq!(h.get("/task").await.body, json!([id]));
    assert_eq!(h.post("/refresh", json!({"zone": "local"})).await.status, StatusCode::OK);
}

#[tokio::test]
async fn openapi_documents_every_path_with_its_schemas() {
    let h = harness(Some("t"));
    let doc = h.send(Method::GET, "/openapi.json", None, Some("t")).await.body;
    assert!(doc["openapi"].as_str().unwrap_or_default().starts_with("3."), "{doc}");
    let paths = doc["paths"].as_object().unwrap();
    let prefix = "/ipLoadbalancing/{serviceName}";
    for (path, methods) in [
        ("/tcp/frontend", &["get", "post"][..]),
        ("/tcp/frontend/{frontendId}", &["get", "put", "delete"]),
        ("/tcp/farm", &["get", "post"]),
        ("/tcp/farm/{farmId}", &["get", "put", "delete"]),
        ("/tcp/farm/{farmId}/server", &["get", "post"]),
        ("/tcp/farm/{farmId}/server/{serverId}", &["get", "put", "delete"]),
        ("/tcp/route", &["get", "post"]),
        ("/tcp/route/{routeId}", &["get", "put", "delete"]),
        ("/tcp/route/{routeId}/rule", &["get", "post"]),
        ("/tcp/route/{routeId}/rule/{ruleId}", &["get", "put", "delete"]),
        ("/pendingChanges", &["get"]),
        ("/refresh", &["post"]),
        ("/task", &["get"]),
        ("/task/{id}", &["get"]),
        ("/status", &["get"]),
        ("/zone", &["get"]),
        ("/availableRouteActions", &["get"]),
        ("/availableRouteRules", &["get"]),
        ("/availableFarmProbes", &["get"]),
    ] {
        let item = paths.get(&format!("{prefix}{path}")).unwrap_or_else(|| panic!("{path} is not documented"));
        for method in methods {
            let op = &item[*method];
            assert!(op.is_object(), "{method} {path} is not documented");
            assert_eq!(op["parameters"][0]["name"], "serviceName", "{method} {path}");
            assert!(op["responses"]["401"].is_object(), "{method} {path} lacks 401");
            if path.contains('{') {
                assert!(op["responses"]["400"].is_object(), "{method} {path}: a malformed id answers 400, undocumented");
            }
        }
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in ["Frontend", "Farm", "Server", "Route", "Rule", "Task", "ErrorBody", "FrontendUpdate", "PendingChange"] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }
    assert_eq!(schemas["Frontend"]["required"], json!(["port"]));
    assert!(schemas["FrontendUpdate"].get("required").is_none_or(|r| r == &json!([])), "{}", schemas["FrontendUpdate"]);
    assert_eq!(schemas["Route"]["properties"]["rules"]["readOnly"], true);
    assert_eq!(doc["paths"][format!("{prefix}/tcp/frontend/{{frontendId}}")]["put"]["responses"]["204"]["description"], "Staged");
}

#[tokio::test]
async fn idle_timeout_is_a_frontend_field_and_out_of_range_names_it() {
    let h = harness(None);
    let a = h.post("/tcp/frontend", json!({"port": "443", "idleTimeout": 30})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(h.get("/tcp/frontend/1").await.body["idleTimeout"], json!(30));
    assert_error(
        &h.post("/tcp/frontend", json!({"port": "444", "idleTimeout": 604_801})).await,
        StatusCode::BAD_REQUEST,
        "Client::BadRequest",
        "`idleTimeout`",
    );
    assert_error(&h.post("/tcp/frontend", json!({"port": "445", "idleTimeout": -1})).await, StatusCode::BAD_REQUEST, "Client::BadRequest", "idleTimeout");
    let a = h.call(Method::PUT, "/tcp/frontend/1", Some(json!({"idleTimeout": 0}))).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    let schema = h.send(Method::GET, "/openapi.json", None, None).await.body;
    let field = &schema["components"]["schemas"]["Frontend"]["properties"]["idleTimeout"];
    assert_eq!(field["maximum"], json!(604_800), "{field}");
}
