use super::model::*;
use crate::{
    control::PendingChange,
    dataplane::snapshot::Snapshot,
    store::{Task, TaskStatus},
};
use lb_core::model::{Farm, Frontend, Probe, Route, RouteAction, Rule, Server, ServerStatus as ConfiguredStatus, ServiceConfig};

fn route(id: u32, action: &str, target: Option<u32>, weight: Option<u16>, rules: Vec<Rule>) -> Route {
    Route {
        route_id: Some(id),
        frontend_id: 1,
        action: RouteAction { kind: action.into(), target: target.map(|t| t.to_string()) },
        weight,
        display_name: Some(format!("r{id}")),
        rules,
    }
}

fn rule(id: u32, field: &str, m: &str, pattern: &str) -> Rule {
    Rule { rule_id: Some(id), field: field.into(), match_: m.into(), pattern: Some(pattern.into()), ..Default::default() }
}

fn server(id: u32, last_octet: u8) -> Server {
    Server { server_id: Some(id), address: format!("10.0.2.{last_octet}"), probe: true, display_name: Some(format!("s{id}")), ..Default::default() }
}

fn config(routes: Vec<Route>) -> ServiceConfig {
    ServiceConfig {
        frontends: vec![Frontend {
            frontend_id: Some(1),
            port: "443,8000-8010".into(),
            default_farm_id: Some(2),
            display_name: Some("web".into()),
            ..Default::default()
        }],
        farms: vec![
            Farm {
                farm_id: Some(2),
                port: Some(8443),
                display_name: Some("fallback".into()),
                servers: vec![server(3, 3), Server { status: Some(ConfiguredStatus::Inactive), ..server(4, 4) }],
                ..Default::default()
            },
            Farm {
                farm_id: Some(1),
                port: Some(8443),
                display_name: Some("h2".into()),
                probe: Some(Probe { kind: Some("tcp".into()), interval: Some(5), ..Default::default() }),
                servers: vec![server(2, 2), server(1, 1)],
                ..Default::default()
            },
        ],
        routes,
    }
}

fn facts(pending: u64, task_ids: &[u32]) -> ControlFacts {
    ControlFacts {
        service: "lb".into(),
        zone: "local".into(),
        listeners: vec!["0.0.0.0:443".into()],
        pending_changes: vec![PendingChange { zone: "local".into(), number: pending }],
        tasks: task_ids
            .iter()
            .map(|&id| Task {
                id,
                action: "refreshIplb".into(),
                status: TaskStatus::Done,
                creation_date: "2026-11-30T07:00:00Z".into(),
                done_date: None,
                zones: vec!["local".into()],
                progress: 100,
                message: None,
                node: None,
            })
            .collect(),
    }
}

fn report(config: &ServiceConfig, facts: ControlFacts) -> StatusReport {
    let snapshot = Snapshot::compile(config).expect("valid configuration");
    StatusReport::build(&snapshot, config, facts, RuntimeFacts::default())
}

#[test]
fn routes_are_listed_in_evaluation_order_reject_first_then_weight_then_creation() {
    let config = config(vec![
        route(1, "farm", Some(1), Some(5), vec![rule(11, "alpn", "is", "h2")]),
        route(2, "reject", None, Some(10), vec![rule(12, "source", "in", "192.0.2.0/24")]),
        route(3, "farm", Some(1), Some(1), vec![]),
        route(4, "farm", Some(2), Some(1), vec![rule(13, "sni", "endswith", ".example.com"), Rule { negate: true, ..rule(14, "sni", "exists", "") }]),
    ]);
    let report = report(&config, facts(0, &[]));
    let routes = &report.frontends[0].routes;
    let order: Vec<(usize, u32)> = routes.iter().map(|r| (r.position, r.id)).collect();
    assert_eq!(order, vec![(1, 2), (2, 3), (3, 4), (4, 1)]);
    assert_eq!(routes[0].action, "reject");
    assert_eq!(routes[0].farm, None);
    assert_eq!(routes[3].farm, Some(FarmRef { id: 1, name: "h2".into() }));
    let texts: Vec<&str> = routes[2].rules.iter().map(|r| r.text.as_str()).collect();
    assert_eq!(texts, vec!["sni endswith .example.com", "not sni exists"]);
    assert_eq!(routes[0].rules, vec![RuleStatus { id: 12, text: "source in 192.0.2.0/24".into() }]);
    assert!(routes[1].rules.is_empty(), "a route without rules takes every connection");
    assert_eq!(routes[2].name.as_deref(), Some("r4"));
}

#[test]
fn frontends_keep_their_port_spec_and_default_farm() {
    let report = report(&config(vec![]), facts(0, &[]));
    let frontend = &report.frontends[0];
    assert_eq!((frontend.name.as_str(), frontend.port.as_str()), ("web", "443,8000-8010"));
    assert_eq!(frontend.default_farm, Some(FarmRef { id: 2, name: "fallback".into() }));
    assert_eq!((frontend.acl.as_str(), frontend.fastpath.as_str()), ("none", "auto"));
}

#[test]
fn farms_and_servers_are_sorted_by_id_with_their_health() {
    let config = config(vec![]);
    let snapshot = Snapshot::compile(&config).unwrap();
    let h2 = &snapshot.farms[&1];
    let server1 = h2.servers.iter().find(|s| s.id == 1).unwrap();
    server1.runtime.record_probe(Err("tcp: connecting to 10.0.2.1:8443: refused".into()));
    server1.runtime.record_probe(Err("tcp: connecting to 10.0.2.1:8443: refused".into()));
    h2.servers.iter().find(|s| s.id == 2).unwrap().runtime.record_probe(Ok(()));
    let _slot = server1.runtime.occupy();

    let report = StatusReport::build(&snapshot, &config, facts(0, &[]), RuntimeFacts::default());
    let farm_ids: Vec<u32> = report.farms.iter().map(|f| f.id).collect();
    assert_eq!(farm_ids, vec![1, 2]);
    let h2 = &report.farms[0];
    assert_eq!((h2.balance.as_str(), h2.probe.as_deref()), ("roundrobin", Some("tcp every 5 s")));
    let ids: Vec<u32> = h2.servers.iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![1, 2]);
    let down = &h2.servers[0];
    assert_eq!((down.state.as_str(), down.consecutive_failures, down.active_connections), ("down", 2, 1));
    assert_eq!(down.last_error.as_deref(), Some("tcp: connecting to 10.0.2.1:8443: refused"));
    assert!(down.last_check.as_deref().is_some_and(|t| t.ends_with('Z')), "{:?}", down.last_check);
    assert_eq!((h2.servers[1].state.as_str(), h2.servers[1].last_error.as_deref()), ("up", None));
    let fallback = &report.farms[1];
    assert_eq!(fallback.probe, None);
    let states: Vec<&str> = fallback.servers.iter().map(|s| s.state.as_str()).collect();
    assert_eq!(states, vec!["unchecked", "inactive"]);
}

#[test]
fn pending_changes_pass_through_and_tasks_are_the_newest_first() {
    let ids: Vec<u32> = (1..=25).collect();
    let report = report(&config(vec![]), facts(3, &ids));
    assert_eq!(report.pending_changes, vec![PendingChange { zone: "local".into(), number: 3 }]);
    let shown: Vec<u32> = report.tasks.iter().map(|t| t.id).collect();
    assert_eq!(shown, (16..=25).rev().collect::<Vec<_>>());
}

#[test]
fn the_json_uses_the_names_the_page_reads() {
    let config = config(vec![route(1, "farm", Some(1), None, vec![rule(11, "alpn", "is", "h2")])]);
    let json = serde_json::to_value(report(&config, facts(1, &[1]))).unwrap();
    for key in ["service", "zone", "generatedAt", "listeners", "frontends", "farms", "pendingChanges", "tasks", "handoff", "kernel", "kernelError"] {
        assert!(json.get(key).is_some(), "missing {key} in {json}");
    }
    let server = &json["farms"][0]["servers"][0];
    for key in ["id", "name", "address", "weight", "state", "lastCheck", "lastError", "activeConnections"] {
        assert!(server.get(key).is_some(), "missing {key} in {server}");
    }
    let frontend = &json["frontends"][0];
    assert_eq!(frontend["defaultFarm"]["name"], "fallback");
    assert_eq!(frontend["routes"][0]["rules"][0]["text"], "alpn is h2");
    assert_eq!(json["tasks"][0]["creationDate"], "2026-11-30T07:00:00Z");
    assert_eq!(json["pendingChanges"][0]["number"], 1);
}

#[test]
fn a_route_the_stored_configuration_lacks_is_still_shown_from_the_snapshot() {
    // During a refresh the snapshot can be ahead of the stored applied configuration.
    let config = config(vec![route(1, "farm", Some(1), None, vec![rule(11, "alpn", "is", "h2")])]);
    let snapshot = Snapshot::compile(&config).unwrap();
    let report = StatusReport::build(&snapshot, &ServiceConfig::default(), facts(0, &[]), RuntimeFacts::default());
    let frontend = &report.frontends[0];
    assert_eq!((frontend.name.as_str(), frontend.port.as_str()), ("web", "443,8000-8010"));
    let route = &frontend.routes[0];
    assert_eq!((route.id, route.farm.as_ref().map(|f| f.id), route.name.as_deref()), (1, Some(1), None));
    assert_eq!(route.rules, vec![RuleStatus { id: 11, text: "rule 11".into() }]);
    assert_eq!(report.farms[0].balance, "roundrobin");
}
