use super::*;
use crate::model::{RouteAction, Rule, Server};

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

fn config(default_farm: Option<u32>, routes: Vec<Route>) -> ServiceConfig {
    ServiceConfig {
        frontends: vec![Frontend { frontend_id: Some(1), port: "443".into(), default_farm_id: default_farm, ..Default::default() }],
        farms: vec![farm(1), farm(2), farm(3)],
        routes,
    }
}

#[test]
fn invalid_configurations_name_object_and_field() {
    let mut c = config(Some(9), vec![]);
    assert_eq!(compile(&c).unwrap_err().field, "defaultFarmId");
    c = config(None, vec![route(1, "farm", Some(9), None, vec![])]);
    assert_eq!(compile(&c).unwrap_err().field, "action.target");
    c = config(None, vec![]);
    c.frontends[0].port = "70000".into();
    assert_eq!(compile(&c).unwrap_err().field, "port");
    c = config(None, vec![]);
    c.frontends[0].allowed_source = Some(vec!["10.0.0.0/8".into()]);
    c.frontends[0].denied_source = Some(vec!["10.1.0.0/16".into()]);
    assert_eq!(compile(&c).unwrap_err().field, "allowedSource");
    c = config(None, vec![]);
    c.frontends[0].denied_source = Some(vec!["10.0.0.300".into()]);
    let e = compile(&c).unwrap_err();
    assert_eq!((e.object, e.id, e.field), ("frontend", Some(1), "deniedSource"));
    c = config(None, vec![]);
    c.farms[0].servers[0].address = "nope".into();
    let e = compile(&c).unwrap_err();
    assert_eq!((e.object, e.id, e.field), ("server", Some(10), "address"));
    assert!(e.to_string().contains("server 10: field `address`"), "{e}");
}

#[test]
fn idle_timeout_defaults_to_900_s_zero_disables_it_and_out_of_range_names_the_field() {
    let mut c = config(None, vec![]);
    assert_eq!(compile(&c).unwrap().frontends[0].idle_timeout, Some(std::time::Duration::from_secs(900)));
    c.frontends[0].idle_timeout = Some(0);
    assert_eq!(compile(&c).unwrap().frontends[0].idle_timeout, None);
    c.frontends[0].idle_timeout = Some(604_800);
    assert_eq!(compile(&c).unwrap().frontends[0].idle_timeout, Some(std::time::Duration::from_secs(604_800)));
    c.frontends[0].idle_timeout = Some(604_801);
    let e = compile(&c).unwrap_err();
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
    assert_eq!(compile(&c).unwrap_err().id, Some(2));
    c.frontends[0].dedicated_ipfo = Some(vec!["10.0.0.1".into()]);
    c.frontends[1].dedicated_ipfo = Some(vec!["10.0.0.2/32".into()]);
    assert!(compile(&c).is_ok());
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
fn routes_are_evaluated_reject_first_then_by_weight_then_by_creation() {
    let routes = vec![
        route(1, "farm", Some(1), Some(5), vec![]),
        route(2, "farm", Some(2), Some(1), vec![]),
        route(3, "reject", None, Some(9), vec![]),
        route(4, "farm", Some(3), Some(1), vec![]),
    ];
    let compiled = compile(&config(None, routes)).unwrap();
    let order: Vec<u32> = compiled.frontends[0].routes.iter().map(|r| r.id).collect();
    assert_eq!(order, [3, 2, 4, 1]);
    assert_eq!(compiled.frontends[0].routes[0].target, TargetSpec::Reject);
    assert_eq!(compiled.farms.iter().map(|f| f.id).collect::<Vec<_>>(), [1, 2, 3], "farms keep the configuration's order");
}
