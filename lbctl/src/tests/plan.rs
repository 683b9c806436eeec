//! Arguments → method, path and body, for every verb.
use serde_json::{json, Value};

use super::{plan_of, refused, request_of, usage_error};
use crate::plan::{Method, Plan, Request, View};

fn assert_request(args: &[&str], method: Method, path: &str, body: Option<Value>) {
    let request = request_of(args);
    assert_eq!(request, Request { method, path: path.to_string(), body }, "lbctl {}", args.join(" "));
}

#[test]
fn frontend_create_maps_every_flag_to_its_api_field() {
    assert_request(
        &[
            "frontend",
            "create",
            "--port",
            "443",
            "--zone",
            "all",
            "--default-farm",
            "2",
            "--denied-source",
            "10.0.0.0/8",
            "--denied-source",
            "192.0.2.0/24",
            "--dedicated-ipfo",
            "203.0.113.1",
            "--disabled",
            "--display-name",
            "web",
            "--inspect-timeout",
            "2.5",
        ],
        Method::Post,
        "/tcp/frontend",
        Some(json!({
            "port": "443", "zone": "all", "defaultFarmId": 2, "deniedSource": ["10.0.0.0/8", "192.0.2.0/24"],
            "dedicatedIpfo": ["203.0.113.1"], "disabled": true, "displayName": "web", "inspectTimeout": 2.5
        })),
    );
}

#[test]
fn list_flags_also_take_comma_separated_values() {
    let request = request_of(&["frontend", "create", "--port", "80,443", "--allowed-source", "10.0.0.0/8,192.0.2.0/24"]);
    assert_eq!(request.body, Some(json!({"port": "80,443", "allowedSource": ["10.0.0.0/8", "192.0.2.0/24"]})));
}

#[test]
fn farm_create_nests_only_the_probe_flags_given() {
    assert_request(
        &[
            "farm",
            "create",
            "--zone",
            "gra",
            "--port",
            "8443",
            "--balance",
            "leastconn",
            "--stickiness",
            "sourceIp",
            "--probe-type",
            "http",
            "--probe-url",
            "/health",
            "--probe-match",
            "status",
            "--probe-pattern",
            "200",
            "--probe-interval",
            "5",
            "--probe-negate",
            "--probe-method",
            "HEAD",
            "--probe-port",
            "8080",
            "--probe-force-ssl",
        ],
        Method::Post,
        "/tcp/farm",
        Some(json!({
            "zone": "gra", "port": 8443, "balance": "leastconn", "stickiness": "sourceIp",
            "probe": {"type": "http", "url": "/health", "match": "status", "pattern": "200", "interval": 5,
                      "negate": true, "method": "HEAD", "port": 8080, "forceSsl": true}
        })),
    );
    assert_eq!(request_of(&["farm", "create"]).body, Some(json!({})), "a farm needs no field: the server has defaults");
    assert_eq!(request_of(&["farm", "update", "3", "--probe-interval", "10"]).body, Some(json!({"probe": {"interval": 10}})));
}

#[test]
fn server_create_goes_under_its_farm() {
    assert_request(
        &[
            "server",
            "create",
            "--farm",
            "1",
            "--address",
            "10.0.0.2",
            "--port",
            "8443",
            "--weight",
            "3",
            "--backup",
            "--proxy-protocol",
            "v2",
            "--on-marked-down",
            "shutdown-sessions",
            "--status",
            "inactive",
            "--probe",
            "--ssl=false",
            "--display-name",
            "b1",
        ],
        Method::Post,
        "/tcp/farm/1/server",
        Some(json!({
            "address": "10.0.0.2", "port": 8443, "weight": 3, "backup": true, "proxyProtocolVersion": "v2",
            "onMarkedDown": "shutdown-sessions", "status": "inactive", "probe": true, "ssl": false, "displayName": "b1"
        })),
    );
}

#[test]
fn route_create_sends_a_farm_action_with_a_string_target() {
    assert_request(
        &["route", "create", "--frontend", "1", "--action", "farm", "--target", "2", "--weight", "0", "--display-name", "h2"],
        Method::Post,
        "/tcp/route",
        Some(json!({"frontendId": 1, "action": {"type": "farm", "target": "2"}, "weight": 0, "displayName": "h2"})),
    );
}

#[test]
fn route_target_implies_a_farm_action_and_reject_takes_none() {
    let body = |args: &[&str]| request_of(args).body.expect("a body");
    assert_eq!(body(&["route", "create", "--frontend", "1", "--target", "2"])["action"], json!({"type": "farm", "target": "2"}));
    assert_eq!(body(&["route", "create", "--frontend", "1", "--action", "reject"])["action"], json!({"type": "reject"}));
    assert!(usage_error(&["route", "create", "--frontend", "1", "--action", "reject", "--target", "2"]).contains("--target"));
    assert!(usage_error(&["route", "create", "--frontend", "1", "--action", "farm"]).contains("--target"));
    assert_eq!(body(&["route", "update", "4", "--target", "3"]), json!({"action": {"type": "farm", "target": "3"}}));
}

#[test]
fn rule_create_goes_under_its_route() {
    assert_request(
        &["rule", "create", "--route", "1", "--field", "protocol", "--match", "is", "--pattern", "http/2.0", "--negate"],
        Method::Post,
        "/tcp/route/1/rule",
        Some(json!({"field": "protocol", "match": "is", "pattern": "http/2.0", "negate": true})),
    );
    assert_eq!(
        request_of(&["rule", "create", "--route", "1", "--field", "sni", "--match", "exists", "--sub-field", "x"]).body,
        Some(json!({"field": "sni", "match": "exists", "subField": "x"}))
    );
}

#[test]
fn update_sends_only_the_fields_given_with_put() {
    assert_request(&["server", "update", "--farm", "1", "3", "--weight", "0"], Method::Put, "/tcp/farm/1/server/3", Some(json!({"weight": 0})));
    assert_request(&["frontend", "update", "2", "--disabled=false"], Method::Put, "/tcp/frontend/2", Some(json!({"disabled": false})));
    assert_request(&["rule", "update", "--route", "4", "9", "--negate=false"], Method::Put, "/tcp/route/4/rule/9", Some(json!({"negate": false})));
}

#[test]
fn update_unset_sends_null_for_the_field() {
    assert_request(
        &["frontend", "update", "1", "--allowed-source", "10.0.0.0/8", "--unset", "denied-source", "--unset", "default-farm"],
        Method::Put,
        "/tcp/frontend/1",
        Some(json!({"allowedSource": ["10.0.0.0/8"], "deniedSource": null, "defaultFarmId": null})),
    );
    assert_eq!(request_of(&["farm", "update", "2", "--unset", "probe"]).body, Some(json!({"probe": null})));
    assert!(refused(&["frontend", "update", "1", "--unset", "port"]), "port cannot be unset");
    assert!(usage_error(&["server", "update", "--farm", "1", "2", "--weight", "2", "--unset", "weight"]).contains("--unset weight"));
}

#[test]
fn update_without_anything_to_change_is_refused() {
    assert!(usage_error(&["route", "update", "3"]).contains("nothing to change"));
}

#[test]
fn create_without_a_required_field_is_refused_before_any_request() {
    assert!(usage_error(&["frontend", "create", "--zone", "all"]).contains("--port"));
    assert!(usage_error(&["server", "create", "--farm", "1", "--port", "80"]).contains("--address"));
    assert!(usage_error(&["route", "create", "--target", "2"]).contains("--frontend"));
    assert!(usage_error(&["route", "create", "--frontend", "1"]).contains("--action"));
    assert!(usage_error(&["rule", "create", "--route", "1", "--field", "sni"]).contains("--match"));
}

#[test]
fn raw_json_is_the_body_and_typed_flags_override_it() {
    assert_eq!(
        request_of(&["frontend", "create", "--json", r#"{"port": "80", "displayName": "x"}"#, "--port", "443"]).body,
        Some(json!({"port": "443", "displayName": "x"}))
    );
    // A raw body satisfies the required fields itself.
    assert_eq!(
        request_of(&["rule", "create", "--route", "2", "--json", r#"{"field":"sni","match":"is","pattern":"a.example"}"#]).body,
        Some(json!({"field": "sni", "match": "is", "pattern": "a.example"}))
    );
    assert_eq!(request_of(&["server", "update", "--farm", "1", "2", "--json", r#"{"port":null}"#]).body, Some(json!({"port": null})));
}

#[test]
fn json_file_is_read_as_the_body() {
    let path = std::env::temp_dir().join(format!("lbctl-body-{}.json", std::process::id()));
    std::fs::write(&path, r#"{"address": "2001:db8::2", "weight": 7}"#).expect("write the body file");
    let request = request_of(&["server", "create", "--farm", "5", "--json-file", path.to_str().expect("utf-8 path")]);
    std::fs::remove_file(&path).ok();
    assert_eq!(request.body, Some(json!({"address": "2001:db8::2", "weight": 7})));
    assert!(matches!(plan_of(&["server", "create", "--farm", "5", "--json-file", "/nonexistent/lbctl.json"]), Err(crate::error::Error::Read { .. })));
}

#[test]
fn raw_json_must_be_a_valid_object() {
    assert!(usage_error(&["frontend", "create", "--json", "[1]"]).contains("object"));
    assert!(usage_error(&["frontend", "create", "--json", "{port: 1}"]).contains("not valid JSON"));
    assert!(refused(&["frontend", "create", "--json", "{}", "--json-file", "x"]), "one raw body at a time");
}

#[test]
fn list_show_delete_address_each_kind() {
    let cases: &[(&[&str], Method, &str)] = &[
        (&["frontend", "list"], Method::Get, "/tcp/frontend"),
        (&["frontend", "show", "1"], Method::Get, "/tcp/frontend/1"),
        (&["frontend", "delete", "1"], Method::Delete, "/tcp/frontend/1"),
        (&["farm", "list"], Method::Get, "/tcp/farm"),
        (&["farm", "show", "2"], Method::Get, "/tcp/farm/2"),
        (&["farm", "delete", "2"], Method::Delete, "/tcp/farm/2"),
        (&["server", "list", "--farm", "2"], Method::Get, "/tcp/farm/2/server"),
        (&["server", "show", "--farm", "2", "5"], Method::Get, "/tcp/farm/2/server/5"),
        (&["server", "delete", "5", "--farm", "2"], Method::Delete, "/tcp/farm/2/server/5"),
        (&["route", "list"], Method::Get, "/tcp/route"),
        (&["route", "show", "3"], Method::Get, "/tcp/route/3"),
        (&["route", "delete", "3"], Method::Delete, "/tcp/route/3"),
        (&["rule", "list", "--route", "3"], Method::Get, "/tcp/route/3/rule"),
        (&["rule", "show", "--route", "3", "4"], Method::Get, "/tcp/route/3/rule/4"),
        (&["rule", "delete", "--route", "3", "4"], Method::Delete, "/tcp/route/3/rule/4"),
        (&["pending"], Method::Get, "/pendingChanges"),
        (&["task", "list"], Method::Get, "/task"),
        (&["task", "show", "7"], Method::Get, "/task/7"),
        (&["status"], Method::Get, "/status"),
        (&["zone"], Method::Get, "/zone"),
        (&["nodes", "gra"], Method::Get, "/zone/gra/node"),
        (&["available", "route-actions"], Method::Get, "/availableRouteActions"),
        (&["available", "route-rules"], Method::Get, "/availableRouteRules"),
        (&["available", "farm-probes"], Method::Get, "/availableFarmProbes"),
    ];
    for (args, method, path) in cases {
        assert_request(args, *method, path, None);
    }
}

#[test]
fn server_and_rule_verbs_need_their_parent() {
    assert!(refused(&["server", "list"]));
    assert!(refused(&["server", "create", "--address", "10.0.0.1"]));
    assert!(refused(&["rule", "show", "1"]));
}

#[test]
fn refresh_posts_the_zone_or_no_body_and_waits_by_default() {
    let plan = plan_of(&["refresh", "--zone", "gra"]).expect("plan");
    let expected = Plan::Refresh {
        request: Request { method: Method::Post, path: "/refresh".into(), body: Some(json!({"zone": "gra"})) },
        wait: Some(std::time::Duration::from_secs(60)),
    };
    assert_eq!(plan, expected);
    assert_request(&["refresh"], Method::Post, "/refresh", None);
    assert!(matches!(plan_of(&["refresh", "--timeout", "5"]), Ok(Plan::Refresh { wait: Some(w), .. }) if w.as_secs() == 5));
    assert!(matches!(plan_of(&["refresh", "--no-wait"]), Ok(Plan::Refresh { wait: None, .. })));
}

#[test]
fn update_and_delete_confirm_in_words_show_reads_an_object() {
    assert!(matches!(plan_of(&["farm", "delete", "2"]), Ok(Plan::One { view: View::Done(line), .. }) if line == "deleted farm 2"));
    assert!(matches!(plan_of(&["farm", "update", "2", "--port", "81"]), Ok(Plan::One { view: View::Done(line), .. }) if line == "updated farm 2"));
    assert!(matches!(plan_of(&["farm", "show", "2"]), Ok(Plan::One { view: View::Object(kind), .. }) if kind.noun == "farm"));
}
