//! Table cells and layouts.
use serde_json::json;

use crate::fields::route::ROUTE;
use crate::render::{action_cell, cell, generic, object, rules_cell, state_cell, table};

#[test]
fn cells_show_missing_as_dash_and_lists_comma_joined() {
    assert_eq!(cell(&json!(null)), "-");
    assert_eq!(cell(&json!([])), "-");
    assert_eq!(cell(&json!(["10.0.0.0/8", "192.0.2.0/24"])), "10.0.0.0/8,192.0.2.0/24");
    assert_eq!(cell(&json!({"a": 1})), r#"{"a":1}"#);
    assert_eq!(cell(&json!(false)), "false");
}

#[test]
fn route_cells_read_action_and_rules() {
    assert_eq!(action_cell(&json!({"type": "farm", "target": "2"})), "farm 2");
    assert_eq!(action_cell(&json!({"type": "reject", "target": null})), "reject");
    let rules = json!([
        {"ruleId": 1, "field": "protocol", "match": "is", "pattern": "http/2.0", "negate": false},
        {"ruleId": 2, "field": "sni", "match": "exists", "negate": true}
    ]);
    assert_eq!(rules_cell(&rules), "protocol is http/2.0; not sni exists");
    assert_eq!(rules_cell(&json!([1, 2])), "1,2");
    assert_eq!(rules_cell(&json!([])), "-");
}

#[test]
fn server_state_reads_per_zone_lists_and_maps() {
    assert_eq!(state_cell(&json!([{"zone": "gra", "status": "up"}, {"zone": "rbx", "status": "down"}])), "gra:up,rbx:down");
    assert_eq!(state_cell(&json!({"gra": {"status": "up", "lastCheck": 1}})), "gra:up");
    assert_eq!(state_cell(&json!({"status": "down"})), "down");
    assert_eq!(state_cell(&json!(null)), "-");
}

#[test]
fn table_aligns_columns_without_trailing_blanks() {
    let routes = [
        json!({"routeId": 1, "frontendId": 1, "action": {"type": "farm", "target": "12"}, "weight": 0, "rules": []}),
        json!({"routeId": 20, "frontendId": 1, "action": {"type": "reject"}, "displayName": "deny"}),
    ];
    let text = table(&ROUTE, &routes);
    assert_eq!(
        text,
        "ID  FRONTEND  ACTION   WEIGHT  RULES  STATUS  NAME\n\
         1   1         farm 12  0       -      -       -\n\
         20  1         reject   -       -      -       deny\n"
    );
}

#[test]
fn show_lists_known_fields_first_then_the_rest() {
    let route = json!({"zzz": 1, "routeId": 3, "action": {"type": "reject"}, "frontendId": 1});
    assert_eq!(object(&ROUTE, &route), "routeId     3\nfrontendId  1\naction      {\"type\":\"reject\"}\nzzz         1\n");
}

#[test]
fn generic_renders_objects_lists_and_scalars() {
    assert_eq!(generic(&json!({"b": 2, "a": "x"})), "a  x\nb  2\n");
    assert_eq!(generic(&json!(["farm", "reject"])), "farm\nreject\n");
    assert_eq!(generic(&json!([{"a": 1}, {"b": 2}])), "A  B\n1  -\n-  2\n");
    assert_eq!(generic(&json!("ok")), "ok");
    assert_eq!(generic(&json!(null)), "");
}
