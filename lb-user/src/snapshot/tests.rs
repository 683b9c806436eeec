use super::*;
use lb_core::model::{Rule, RouteAction, Server};

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
fn invalid_configurations_name_object_and_field() {
    let mut c = config(Some(9), vec![]);
    assert_eq!(Snapshot::compile(&c).unwrap_err().field, "defaultFarmId");
    c = config(None, vec![route(1, "farm", Some(9), None, vec![])]);
    assert_eq!(Snapshot::compile(&c).unwrap_err().field, "action.target");
    c = config(None, vec![]);
    c.frontends[0].port = "70000".into();
    assert_eq!(Snapshot::compile(&c).unwrap_err().field, "port");
    c = config(None, vec![]);
    c.frontends[0].allowed_source = Some(vec!["10.0.0.0/8".into()]);
    c.frontends[0].denied_source = Some(vec!["10.1.0.0/16".into()]);
    assert_eq!(Snapshot::compile(&c).unwrap_err().field, "allowedSource");
    c = config(None, vec![]);
    c.frontends[0].denied_source = Some(vec!["10.0.0.300".into()]);
    let e = Snapshot::compile(&c).unwrap_err();
    assert_eq!((e.object, e.id, e.field), ("frontend", Some(1), "deniedSource"));
    c = config(None, vec![]);
    c.farms[0].servers[0].address = "nope".into();
    let e = Snapshot::compile(&c).unwrap_err();
    assert_eq!((e.object, e.id, e.field), ("server", Some(10), "address"));
    assert!(e.to_string().contains("server 10: field `address`"), "{e}");
}

#[test]
fn idle_timeout_defaults_to_900_s_zero_disables_it_and_out_of_range_names_the_field() {
    let mut c = config(None, vec![]);
    assert_eq!(Snapshot::compile(&c).unwrap().frontends[0].idle_timeout, Some(std::time::Duration::from_secs(900)));
    c.frontends[0].idle_timeout = Some(0);
    assert_eq!(Snapshot::compile(&c).unwrap().frontends[0].idle_timeout, None);
    c.frontends[0].idle_timeout = Some(604_800);
    assert_eq!(Snapshot::compile(&c).unwrap().frontends[0].idle_timeout, Some(std::time::Duration::from_secs(604_800)));
    c.frontends[0].idle_timeout = Some(604_801);
    let e = Snapshot::compile(&c).unwrap_err();
    assert_eq!((e.object, e.id, e.field), ("frontend", Some(1), "idleTimeout"));
    assert!(e.to_string().contains("0..=604800"), "{e}");
}

#[test]
fn ports_parse_lists_and_ranges() {
    assert_eq!(parse_ports("443").unwrap(), vec![443]);
    assert_eq!(parse_ports("80,443").unwrap(), vec![80, 443]);
    assert_eq!(parse_ports("8000-8002, 443").unwrap(), vec![443, 8000, 8001, 8002]);
    assert!(parse_ports("0").is_err());
    assert!(parse_ports("49152").is_err());
    assert!(parse_ports("9-3").is_err());
    assert!(parse_ports("").is_err());
    assert!(parse_ports("a").is_err());
}

#[test]
fn frontends_sharing_a_port_conflict_unless_on_distinct_addresses() {
    let mut c = config(None, vec![]);
    c.frontends.push(Frontend { frontend_id: Some(2), port: "443".into(), ..Default::default() });
    assert_eq!(Snapshot::compile(&c).unwrap_err().id, Some(2));
    c.frontends[0].dedicated_ipfo = Some(vec!["10.0.0.1".into()]);
    c.frontends[1].dedicated_ipfo = Some(vec!["10.0.0.2/32".into()]);
    assert!(Snapshot::compile(&c).is_ok());
}

#[test]
fn source_lists_admit_and_refuse_as_configured() {
    let nets = |list: &[&str]| list.iter().map(|n| n.parse().unwrap()).collect::<Vec<IpNet>>();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let open = SourceAcl { mode: AclMode::None, nets: vec![] };
    assert!(open.admits(ip("192.0.2.1")));
    let deny = SourceAcl { mode: AclMode::Deny, nets: nets(&["192.0.2.0/24", "2001:db8::/32"]) };
    assert!(!deny.admits(ip("192.0.2.77")));
    assert!(!deny.admits(ip("2001:db8::1")));
    assert!(deny.admits(ip("198.51.100.1")));
    let allow = SourceAcl { mode: AclMode::Allow, nets: nets(&["10.0.0.0/8"]) };
    assert!(allow.admits(ip("10.1.2.3")));
    assert!(!allow.admits(ip("11.0.0.1")));
    assert!(!allow.admits(ip("::1")));
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
