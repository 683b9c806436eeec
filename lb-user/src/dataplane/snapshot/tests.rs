use super::*;
use lb_core::model::{Farm, Frontend, Route, RouteAction, Rule, Server};

struct Hello(Option<&'static str>, Vec<&'static [u8]>);
impl HelloFacts for Hello {
    fn sni(&self) -> Option<&str> {
        self.0
    }
    fn alpn_ids(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.1.iter().copied()
    }
}

fn farm(id: u32) -> Farm {
    Farm {
        farm_id: Some(id),
        port: Some(8443),
        servers: vec![Server { server_id: Some(id * 10), address: format!("10.0.2.{id}"), ..Default::default() }],
        ..Default::default()
    }
}

fn route(id: u32, action: &str, target: Option<u32>, weight: Option<u16>, rules: Vec<Rule>) -> Route {
    Route {
        route_id: Some(id),
        frontend_id: 1,
        action: RouteAction { kind: action.into(), target: target.map(|t| t.to_string()) },
        weight,
        rules,
        ..Default::default()
    }
}

fn rule(field: &str, m: &str, pattern: &str) -> Rule {
    Rule { field: field.into(), match_: m.into(), pattern: Some(pattern.into()), ..Default::default() }
}

fn config(default_farm: Option<u32>, routes: Vec<Route>) -> ServiceConfig {
    ServiceConfig {
        frontends: vec![Frontend { frontend_id: Some(1), port: "443".into(), default_farm_id: default_farm, ..Default::default() }],
        farms: vec![farm(1), farm(2), farm(3)],
        routes,
    }
}

fn decide(snapshot: &Snapshot, hello: Option<&Hello>, source: &str) -> String {
    let facts = ConnFacts { source: source.parse().unwrap(), hello };
    match snapshot.frontends[0].decide(&facts) {
        Decision::Farm { farm, .. } => format!("farm {}", farm.id),
        Decision::Reject { route_id, .. } => format!("reject {route_id}"),
        Decision::Close => "close".into(),
    }
}

#[test]
fn seed_scenario_routes_h2_to_its_farm_and_rest_to_default() {
    let snap = Snapshot::compile(&config(Some(2), vec![route(1, "farm", Some(1), None, vec![rule("protocol", "is", "http/2.0")])])).unwrap();
    assert_eq!(decide(&snap, Some(&Hello(None, vec![b"h2", b"http/1.1"])), "10.0.0.1"), "farm 1");
    assert_eq!(decide(&snap, Some(&Hello(None, vec![b"http/1.1"])), "10.0.0.1"), "farm 2");
    assert_eq!(decide(&snap, None, "10.0.0.1"), "farm 2");
    assert!(snap.frontends[0].needs_hello);
}

#[test]
fn reject_routes_come_first_then_weight_then_creation() {
    let routes = vec![
        route(1, "farm", Some(1), Some(5), vec![]),
        route(2, "farm", Some(2), Some(1), vec![]),
        route(3, "farm", Some(3), Some(1), vec![]),
        route(4, "reject", None, Some(200), vec![rule("source", "is", "10.9.0.0/16")]),
    ];
    let snap = Snapshot::compile(&config(None, routes)).unwrap();
    let order: Vec<u32> = snap.frontends[0].routes.iter().map(|r| r.id).collect();
    assert_eq!(order, vec![4, 2, 3, 1]);
    assert_eq!(decide(&snap, None, "10.9.1.1"), "reject 4");
    assert_eq!(decide(&snap, None, "10.8.1.1"), "farm 2");
    assert!(!snap.frontends[0].needs_hello, "source rules need no hello");
}

#[test]
fn no_match_without_default_farm_closes() {
    let snap = Snapshot::compile(&config(None, vec![route(1, "farm", Some(1), None, vec![rule("sni", "is", "a.example")])])).unwrap();
    assert_eq!(decide(&snap, Some(&Hello(Some("b.example"), vec![])), "10.0.0.1"), "close");
    assert_eq!(decide(&snap, Some(&Hello(Some("a.example"), vec![])), "10.0.0.1"), "farm 1");
}

#[test]
fn every_rule_of_a_route_must_match() {
    let rules = vec![rule("sni", "endswith", ".example"), rule("alpn", "is", "h2")];
    let snap = Snapshot::compile(&config(Some(3), vec![route(1, "farm", Some(1), None, rules)])).unwrap();
    assert_eq!(decide(&snap, Some(&Hello(Some("a.example"), vec![b"h2"])), "10.0.0.1"), "farm 1");
    assert_eq!(decide(&snap, Some(&Hello(Some("a.example"), vec![b"http/1.1"])), "10.0.0.1"), "farm 3");
}

#[test]
fn counters_survive_a_recompile_for_the_objects_that_stay() {
    use std::sync::atomic::Ordering::Relaxed;
    let runtimes = Runtimes::default();
    let first = Snapshot::compile_in(&config(Some(2), vec![route(4, "farm", Some(1), None, vec![])]), &runtimes).unwrap();
    first.frontends[0].counters.accepted.fetch_add(3, Relaxed);
    first.frontends[0].routes[0].counters.matched.fetch_add(2, Relaxed);
    first.farms[&1].counters.routed.fetch_add(2, Relaxed);
    first.farms[&1].servers[0].runtime.counters.connected.fetch_add(2, Relaxed);
    let second = Snapshot::compile_in(&config(Some(2), vec![route(4, "farm", Some(1), Some(3), vec![])]), &runtimes).unwrap();
    assert_eq!(second.frontends[0].counters.accepted.load(Relaxed), 3);
    assert_eq!(second.frontends[0].routes[0].counters.matched.load(Relaxed), 2);
    assert_eq!(second.farms[&1].counters.routed.load(Relaxed), 2);
    assert_eq!(second.farms[&1].servers[0].runtime.counters.connected.load(Relaxed), 2);
    // Objects removed by an apply lose their counters: a new route 4 later starts at zero.
    runtimes.retain_listeners(|_| true, |_| false);
    let third = Snapshot::compile_in(&config(Some(2), vec![route(4, "farm", Some(1), None, vec![])]), &runtimes).unwrap();
    assert_eq!(third.frontends[0].routes[0].counters.matched.load(Relaxed), 0);
    assert_eq!(third.frontends[0].counters.accepted.load(Relaxed), 3);
}
