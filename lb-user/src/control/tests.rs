use std::sync::Mutex;

use super::*;
use crate::{dataplane::listeners::ListenError, store::TaskStatus};
use lb_core::model::{Farm, Frontend, Probe, Route, RouteAction, Rule, Server};

/// Records what would reach traffic; fails on demand.
#[derive(Default)]
struct FakeTraffic {
    applied: Mutex<Vec<ServiceConfig>>,
    fail: Mutex<bool>,
}

impl Traffic for FakeTraffic {
    fn apply(&self, config: &ServiceConfig) -> Result<(), ApplyError> {
        if *self.fail.lock().unwrap() {
            return Err(ApplyError::Listen(ListenError::Bind {
                frontend: 1,
                addr: "0.0.0.0:443".parse().unwrap(),
                source: std::io::ErrorKind::AddrInUse.into(),
            }));
        }
        self.applied.lock().unwrap().push(config.clone());
        Ok(())
    }
    fn listening(&self) -> Vec<SocketAddr> {
        vec![]
    }
}

struct Fixture {
    control: Arc<Control>,
    traffic: Arc<FakeTraffic>,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let traffic = Arc::new(FakeTraffic::default());
    let control = Control::new(Store::open(dir.path()).unwrap(), traffic.clone(), "lb", "local").unwrap();
    Fixture { control: Arc::new(control), traffic, _dir: dir }
}

fn frontend(port: &str) -> Frontend {
    Frontend { port: port.into(), zone: "all".into(), ..Default::default() }
}

fn farm(port: u16) -> Farm {
    Farm { zone: "all".into(), port: Some(port), ..Default::default() }
}

fn server(address: &str) -> Server {
    Server { address: address.into(), ..Default::default() }
}

fn route(frontend_id: u32, farm_id: u32) -> Route {
    Route { frontend_id, action: RouteAction { kind: "farm".into(), target: Some(farm_id.to_string()) }, ..Default::default() }
}

fn rule(field: &str, m: &str, pattern: &str) -> Rule {
    Rule { field: field.into(), match_: m.into(), pattern: Some(pattern.into()), ..Default::default() }
}

fn pending(c: &Control) -> u64 {
    c.pending_changes().unwrap()[0].number
}

/// The seed configuration: frontend 1 (default farm 2), farms 1 (h2) and 2, route 1 → farm 1
/// with rule `protocol is http/2.0`.
fn seed(c: &Control) {
    c.create_farm(farm(8443)).unwrap();
    c.create_farm(farm(8443)).unwrap();
    c.create_server(1, server("10.0.2.2")).unwrap();
    c.create_server(2, server("10.0.2.4")).unwrap();
    c.create_frontend(Frontend { default_farm_id: Some(2), ..frontend("443") }).unwrap();
    c.create_route(route(1, 1)).unwrap();
    c.create_rule(1, rule("protocol", "is", "http/2.0")).unwrap();
}

async fn wait_task(c: &Control, id: u32) -> crate::store::Task {
    for _ in 0..500 {
        let task = c.task(id).unwrap();
        if matches!(task.status, TaskStatus::Done | TaskStatus::Error) {
            return task;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("task {id} did not end");
}

fn invalid_field(e: ControlError) -> (&'static str, Option<u32>, &'static str) {
    match e {
        ControlError::Invalid(e) => (e.object, e.id, e.field),
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[test]
fn objects_get_ids_from_one_and_each_write_counts_as_pending() {
    let f = fixture();
    let c = &f.control;
    seed(c);
    assert_eq!(c.frontend_ids().unwrap(), vec![1]);
    assert_eq!(c.farm_ids().unwrap(), vec![1, 2]);
    assert_eq!(c.server_ids(2).unwrap(), vec![2]);
    assert_eq!(c.rule_ids(1).unwrap(), vec![1]);
    assert_eq!(pending(c), 7);
    let view = c.route(1).unwrap();
    assert_eq!(view.status, RouteStatus::ToCreate);
    assert_eq!(view.route.rules[0].pattern.as_deref(), Some("http/2.0"));
    assert!(f.traffic.applied.lock().unwrap().is_empty(), "writes never reach traffic");
}

#[test]
fn routes_list_in_evaluation_order() {
    let f = fixture();
    let c = &f.control;
    seed(c);
    c.create_route(Route { weight: Some(5), ..route(1, 2) }).unwrap();
    c.create_route(Route { action: RouteAction { kind: "reject".into(), target: None }, weight: Some(200), ..route(1, 0) }).unwrap();
    c.create_route(Route { weight: Some(0), ..route(1, 1) }).unwrap();
    assert_eq!(c.route_ids().unwrap(), vec![3, 1, 4, 2]);
}

#[test]
fn invalid_writes_name_object_and_field() {
    let f = fixture();
    let c = &f.control;
    seed(c);
    assert_eq!(invalid_field(c.create_frontend(frontend("70000")).unwrap_err()), ("frontend", None, "port"));
    let both = Frontend { allowed_source: Some(vec!["10.0.0.0/8".into()]), denied_source: Some(vec!["10.1.0.0/16".into()]), ..frontend("8000") };
    assert_eq!(invalid_field(c.create_frontend(both).unwrap_err()).2, "allowedSource");
    let bad_cidr = Frontend { denied_source: Some(vec!["10.0.0.0/33".into()]), ..frontend("8000") };
    assert_eq!(invalid_field(c.create_frontend(bad_cidr).unwrap_err()).2, "deniedSource");
    assert_eq!(invalid_field(c.create_frontend(Frontend { zone: "gra".into(), ..frontend("8000") }).unwrap_err()).2, "zone");
    assert_eq!(invalid_field(c.create_frontend(Frontend { default_farm_id: Some(9), ..frontend("8000") }).unwrap_err()).2, "defaultFarmId");
    assert_eq!(invalid_field(c.create_frontend(frontend("443")).unwrap_err()).2, "port", "port 443 is frontend 1's");
    let negate = Farm { probe: Some(Probe { negate: Some(true), ..Default::default() }), ..farm(80) };
    match c.create_farm(negate).unwrap_err() {
        ControlError::Invalid(e) => assert_eq!((e.field, e.message.as_str()), ("probe.negate", "A probe can not negate without a match")),
        other => panic!("{other:?}"),
    }
    assert_eq!(invalid_field(c.create_server(1, server("10.0.0.300")).unwrap_err()), ("server", None, "address"));
    assert_eq!(invalid_field(c.create_route(route(9, 1)).unwrap_err()).2, "frontendId");
    assert_eq!(invalid_field(c.create_route(route(1, 9)).unwrap_err()).2, "action.target");
    assert_eq!(invalid_field(c.create_rule(1, rule("sni", "matches", "(")).unwrap_err()), ("rule", None, "pattern"));
    assert_eq!(invalid_field(c.create_rule(1, rule("source", "contains", "10.0.0.1")).unwrap_err()).2, "match");
    assert_eq!(invalid_field(c.create_rule(1, rule("cookie", "is", "x")).unwrap_err()).2, "field");
    let e = c.update_frontend(1, |f| Ok(Frontend { port: "0".into(), ..f })).unwrap_err();
    assert_eq!(invalid_field(e), ("frontend", Some(1), "port"), "updates name the id");
    assert_eq!(pending(c), 7, "refused writes count nothing");
    assert_eq!(c.frontend_ids().unwrap(), vec![1]);
    assert_eq!(c.create_farm(farm(80)).unwrap().farm_id, Some(3), "refused creates consume no id");
}

#[test]
fn unknown_ids_are_not_found() {
    let f = fixture();
    let c = &f.control;
    seed(c);
    assert!(matches!(c.frontend(9), Err(ControlError::NotFound(_))));
    assert!(matches!(c.server(1, 2), Err(ControlError::NotFound(_))), "server 2 is farm 2's");
    assert!(matches!(c.delete_rule(1, 9), Err(ControlError::NotFound(_))));
    assert!(matches!(c.create_server(9, server("10.0.0.1")), Err(ControlError::NotFound(_))));
    assert!(matches!(c.update_route(9, Ok), Err(ControlError::NotFound(_))));
}

#[test]
fn deleting_what_is_still_used_conflicts_and_deletes_cascade() {
    let f = fixture();
    let c = &f.control;
    seed(c);
    let e = c.delete_farm(1).unwrap_err();
    assert!(matches!(&e, ControlError::Conflict(m) if m.contains("route 1")), "{e:?}");
    let e = c.delete_farm(2).unwrap_err();
    assert!(matches!(&e, ControlError::Conflict(m) if m.contains("frontend 1")), "{e:?}");
    assert!(matches!(c.delete_frontend(1), Err(ControlError::Conflict(_))));
    c.delete_route(1).unwrap();
    assert!(matches!(c.rule(1, 1), Err(ControlError::NotFound(_))), "the route's rules went with it");
    c.delete_farm(1).unwrap();
    assert!(c.store.read(|tx| tx.get::<crate::store::ServerRecord>(1)).unwrap().is_none(), "the farm's servers went with it");
    assert_eq!(c.create_route(route(1, 2)).unwrap().route_id, Some(2), "ids are never reused");
}

#[test]
fn partial_updates_keep_other_fields_and_weight_zero() {
    let f = fixture();
    let c = &f.control;
    seed(c);
    c.update_server(1, 1, |s| Ok(Server { weight: Some(0), ..s })).unwrap();
    let s = c.server(1, 1).unwrap();
    assert_eq!((s.weight, s.address.as_str(), s.server_id), (Some(0), "10.0.2.2", Some(1)));
}

#[tokio::test]
async fn refresh_applies_the_staged_configuration_and_clears_pending() {
    let f = fixture();
    let c = &f.control;
    seed(c);
    let task = c.refresh(None).await.unwrap();
    assert_eq!((task.status, task.zones.clone(), task.action.as_str()), (TaskStatus::Todo, vec!["local".to_string()], "refreshIplb"));
    let task = wait_task(c, task.id).await;
    assert_eq!((task.status, task.progress), (TaskStatus::Done, 100), "{task:?}");
    assert!(task.done_date.is_some());
    let applied = f.traffic.applied.lock().unwrap().last().cloned().unwrap();
    assert_eq!((applied.frontends.len(), applied.farms.len(), applied.routes[0].rules.len()), (1, 2, 1));
    assert_eq!(c.applied_config().unwrap(), applied);
    assert_eq!(pending(c), 0);
    assert_eq!(c.route(1).unwrap().status, RouteStatus::Ok);
    c.update_rule(1, 1, |r| Ok(Rule { negate: true, ..r })).unwrap();
    assert_eq!(c.route(1).unwrap().status, RouteStatus::ToUpdate);
}

#[tokio::test]
async fn a_failed_refresh_applies_nothing_and_says_why() {
    let f = fixture();
    let c = &f.control;
    seed(c);
    *f.traffic.fail.lock().unwrap() = true;
    let task = wait_task(c, c.refresh(Some("local".into())).await.unwrap().id).await;
    assert_eq!(task.status, TaskStatus::Error);
    assert!(task.message.as_deref().unwrap_or("").contains("address in use"), "{task:?}");
    assert_eq!(c.applied_config().unwrap(), ServiceConfig::default());
    assert_eq!(pending(c), 7);
    assert!(matches!(c.refresh(Some("gra".into())).await, Err(ControlError::BadRequest(_))));
}

#[test]
fn import_replaces_the_staged_configuration_and_reserves_its_ids() {
    let f = fixture();
    let c = &f.control;
    seed(c);
    let mut config = ServiceConfig {
        frontends: vec![Frontend { frontend_id: Some(5), ..frontend("8443") }],
        farms: vec![Farm { farm_id: Some(7), servers: vec![Server { server_id: Some(3), ..server("10.0.0.1") }], ..farm(80) }],
        routes: vec![],
    };
    config.frontends[0].default_farm_id = Some(7);
    c.import(&config).unwrap();
    assert_eq!(c.frontend_ids().unwrap(), vec![5]);
    assert_eq!(c.server_ids(7).unwrap(), vec![3]);
    assert_eq!(pending(c), 0);
    assert_eq!(c.applied_config().unwrap().frontends[0].frontend_id, Some(5));
    assert_eq!(c.create_farm(farm(81)).unwrap().farm_id, Some(8));
    let bad = ServiceConfig { frontends: vec![Frontend { frontend_id: Some(1), zone: "gra".into(), ..frontend("1") }], ..Default::default() };
    assert_eq!(c.check_import(&bad).unwrap_err().field, "zone");
}

#[test]
fn interrupted_tasks_end_in_error_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .write(|tx| {
            let task = crate::store::Task {
                id: 1,
                action: REFRESH_ACTION.into(),
                status: TaskStatus::Doing,
                creation_date: "x".into(),
                done_date: None,
                zones: vec!["local".into()],
                progress: 0,
                message: None,
                node: None,
            };
            tx.insert(1, &task)
        })
        .unwrap();
    let control = Control::new(store, Arc::new(FakeTraffic::default()), "lb", "local").unwrap();
    let task = control.task(1).unwrap();
    assert_eq!(task.status, TaskStatus::Error);
    assert!(task.message.unwrap().contains("interrupted"));
}
