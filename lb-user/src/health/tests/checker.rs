use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::net::TcpListener;

use super::servers::*;
use crate::{
    dataplane::server_state::{Runtimes, ServerRuntime},
    dataplane::snapshot::Snapshot,
    health::HealthChecker,
};
use lb_core::model::{Farm, Frontend, Probe, Route, RouteAction, Rule, Server, ServiceConfig};

fn server(id: u32, addr: SocketAddr, probe: bool) -> Server {
    Server { server_id: Some(id), address: addr.ip().to_string(), port: Some(addr.port()), probe, ..Default::default() }
}

fn farm(id: u32, probe: Option<Probe>, servers: Vec<Server>) -> Farm {
    Farm { farm_id: Some(id), probe, servers, ..Default::default() }
}

fn every_second(kind: &str) -> Option<Probe> {
    Some(Probe { kind: Some(kind.into()), interval: Some(1), ..Default::default() })
}

fn compile(config: &ServiceConfig, runtimes: &Runtimes) -> Snapshot {
    Snapshot::compile_in(config, runtimes).expect("valid configuration")
}

/// Polls `done` every 50 ms for at most `limit`.
async fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

fn runtime(runtimes: &Runtimes, id: u32) -> Arc<ServerRuntime> {
    runtimes.get(id).expect("server runtime")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checker_marks_a_dead_server_down_within_two_intervals_and_up_when_it_returns() {
    let alive = serve(|_, _| async {}).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let flapping_addr = listener.local_addr().unwrap();
    let flapping = serve_on(listener, |_, _| async {});
    let config =
        ServiceConfig { farms: vec![farm(1, every_second("tcp"), vec![server(11, alive.addr, true), server(12, flapping_addr, true)])], ..Default::default() };
    let runtimes = Runtimes::default();
    let checker = HealthChecker::new();
    checker.reconcile(&compile(&config, &runtimes));
    let (up, flap) = (runtime(&runtimes, 11), runtime(&runtimes, 12));
    assert!(wait_until(Duration::from_secs(2), || up.report().status == "up" && flap.report().status == "up").await, "first probes run at once");

    drop(flapping);
    let killed = Instant::now();
    assert!(wait_until(Duration::from_millis(2500), || !flap.is_up()).await, "down within two intervals: {:?}", flap.report());
    assert!(killed.elapsed() <= Duration::from_millis(2500));
    let report = flap.report();
    assert_eq!(report.status, "down");
    assert!(report.consecutive_failures >= 2);
    assert!(report.last_error.as_deref().unwrap_or_default().starts_with("tcp: connecting to"), "{report:?}");
    assert!(up.is_up(), "the other server stays up");

    let _back = serve_on(TcpListener::bind(flapping_addr).await.unwrap(), |_, _| async {});
    assert!(wait_until(Duration::from_millis(1500), || flap.is_up()).await, "one success marks it up");
    assert_eq!(flap.report().last_error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checker_keeps_unchanged_tasks_restarts_changed_ones_and_clears_switched_off_servers() {
    let dead = refused().await;
    let alive = serve(|_, _| async {}).await;
    let config = |interval: u32, probe_dead: bool| ServiceConfig {
        farms: vec![
            farm(1, Some(Probe { interval: Some(interval), ..Default::default() }), vec![server(11, dead, probe_dead)]),
            farm(2, every_second("tcp"), vec![server(21, alive.addr, true), server(22, alive.addr, false)]),
        ],
        ..Default::default()
    };
    let runtimes = Runtimes::default();
    let checker = HealthChecker::new();
    checker.reconcile(&compile(&config(1, true), &runtimes));
    let (t11, t21) = (checker.task_id(11).unwrap(), checker.task_id(21).unwrap());
    assert_eq!(checker.task_id(22), None, "a server without probe: true is not probed");

    checker.reconcile(&compile(&config(1, true), &runtimes));
    assert_eq!((checker.task_id(11), checker.task_id(21)), (Some(t11), Some(t21)), "same settings, same tasks");

    checker.reconcile(&compile(&config(2, true), &runtimes));
    assert_ne!(checker.task_id(11), Some(t11), "a changed probe restarts the task");
    assert_eq!(checker.task_id(21), Some(t21), "other farms are untouched");

    let dead_rt = runtime(&runtimes, 11);
    assert!(wait_until(Duration::from_secs(4), || !dead_rt.is_up()).await, "{:?}", dead_rt.report());
    checker.reconcile(&compile(&config(2, false), &runtimes));
    assert_eq!(checker.task_id(11), None);
    assert!(dead_rt.is_up(), "probing switched off: back up");
    assert_eq!(dead_rt.report().status, "unchecked");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(dead_rt.report().status, "unchecked", "the stopped task records nothing more");

    checker.shutdown();
    assert_eq!(checker.task_id(21), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checker_probes_with_tcp_when_the_farm_has_no_probe() {
    let alive = serve(|_, _| async {}).await;
    let dead = refused().await;
    let config = ServiceConfig { farms: vec![farm(1, None, vec![server(11, alive.addr, true), server(12, dead, true)])], ..Default::default() };
    let runtimes = Runtimes::default();
    let checker = HealthChecker::new();
    checker.reconcile(&compile(&config, &runtimes));
    let (up, down) = (runtime(&runtimes, 11), runtime(&runtimes, 12));
    assert!(wait_until(Duration::from_secs(2), || up.report().status == "up" && down.report().consecutive_failures == 1).await);
    assert!(down.report().last_error.unwrap().starts_with("tcp: connecting to"));
    assert!(down.is_up(), "one failure is not enough; the next probe is 30 s away");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checker_tls_probe_offers_the_alpn_of_the_routes_to_the_farm() {
    let h2 = tls(acceptor(&["h2", "http/1.1"]), |_, _| async {}).await;
    let h11 = tls(acceptor(&["http/1.1"]), |_, _| async {}).await;
    let config = ServiceConfig {
        frontends: vec![Frontend { frontend_id: Some(1), port: "443".into(), ..Default::default() }],
        farms: vec![farm(1, every_second("tls"), vec![server(11, h2.addr, true), server(12, h11.addr, true)])],
        routes: vec![Route {
            route_id: Some(1),
            frontend_id: 1,
            action: RouteAction { kind: "farm".into(), target: Some("1".into()) },
            rules: vec![Rule { field: "protocol".into(), match_: "is".into(), pattern: Some("http/2.0".into()), ..Default::default() }],
            ..Default::default()
        }],
    };
    let runtimes = Runtimes::default();
    let checker = HealthChecker::new();
    checker.reconcile(&compile(&config, &runtimes));
    let (good, fallen_back) = (runtime(&runtimes, 11), runtime(&runtimes, 12));
    assert!(wait_until(Duration::from_millis(2500), || !fallen_back.is_up()).await, "{:?}", fallen_back.report());
    let error = fallen_back.report().last_error.unwrap_or_default();
    assert!(error.starts_with("tls: ") && error.contains("(h2)"), "{error}");
    assert!(good.is_up());
    assert_eq!(good.report().status, "up");
}

#[test]
fn checker_without_a_runtime_starts_nothing() {
    let checker = HealthChecker::new();
    let config = ServiceConfig { farms: vec![farm(1, None, vec![server(11, "127.0.0.1:1".parse().unwrap(), true)])], ..Default::default() };
    checker.reconcile(&compile(&config, &Runtimes::default()));
    assert_eq!(checker.task_id(11), None);
}
