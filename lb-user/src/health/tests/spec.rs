use std::time::Duration;

use crate::{
    dataplane::snapshot::ServerPlan,
    health::{Kind, ProbeSpec},
};
use lb_core::model::Probe;

fn resolve(probe: Probe, ssl: bool) -> ProbeSpec {
    let server = ServerPlan { address: "10.0.2.7:8443".parse().unwrap(), ssl, ..ServerPlan::test_default() };
    ProbeSpec::new(3, &probe, &server, &[b"h2".to_vec()]).unwrap()
}

fn kind(name: &str) -> Probe {
    Probe { kind: Some(name.into()), ..Default::default() }
}

#[test]
fn probe_spec_defaults_to_tcp_every_30_s_bounded_by_10_s() {
    let spec = resolve(Probe::default(), false);
    assert_eq!(spec.kind, Kind::Tcp);
    assert_eq!((spec.interval, spec.timeout), (Duration::from_secs(30), Duration::from_secs(10)));
    assert_eq!(spec.addr.to_string(), "10.0.2.7:8443");
    let spec = resolve(Probe { interval: Some(1), ..Default::default() }, false);
    assert_eq!((spec.interval, spec.timeout), (Duration::from_secs(1), Duration::from_secs(1)));
    let spec = resolve(Probe { interval: Some(0), ..Default::default() }, false);
    assert_eq!(spec.interval, Duration::from_secs(1), "never below 1 s");
    let spec = resolve(Probe { interval: Some(5), ..Default::default() }, false);
    assert_eq!(spec.timeout, Duration::from_secs(5));
}

#[test]
fn probe_port_overrides_the_server_port_and_oco_defaults_to_79() {
    assert_eq!(resolve(kind("oco"), false).addr.to_string(), "10.0.2.7:79");
    assert_eq!(resolve(Probe { port: Some(8079), ..kind("oco") }, false).addr.port(), 8079);
    assert_eq!(resolve(Probe { port: Some(8080), ..kind("http") }, false).addr.port(), 8080);
    assert_eq!(resolve(kind("http"), false).addr.port(), 8443);
}

#[test]
fn probe_spec_speaks_tls_where_spec_says() {
    assert!(resolve(kind("tls"), false).tls.is_some());
    assert_eq!(resolve(kind("tls"), false).alpn, vec![b"h2".to_vec()]);
    assert!(resolve(kind("http"), false).tls.is_none());
    assert!(resolve(kind("http"), true).tls.is_some());
    assert!(resolve(Probe { force_ssl: Some(true), ..kind("http") }, false).tls.is_some());
    assert_eq!(resolve(kind("http"), true).tls.unwrap().alpn_protocols, vec![b"http/1.1".to_vec()]);
    assert!(resolve(kind("mysql"), true).tls.is_none(), "mysql negotiates TLS in its own protocol");
    assert!(resolve(kind("pgsql"), true).tls.is_none());
    assert!(resolve(kind("smtp"), true).tls.is_some());
    assert!(resolve(kind("http"), false).alpn.is_empty(), "only tls requires an ALPN");
}

#[tokio::test]
async fn probe_with_a_broken_pattern_fails_with_a_config_error() {
    let server = ServerPlan { address: "127.0.0.1:1".parse().unwrap(), ..ServerPlan::test_default() };
    let probe = Probe { kind: Some("tcp".into()), match_: Some("matches".into()), pattern: Some("(".into()), ..Default::default() };
    let spec = ProbeSpec::new(1, &probe, &server, &[]).unwrap();
    let err = spec.expect_text("banner", b"x").unwrap_err().to_string();
    assert!(err.starts_with("tcp: probe misconfigured: regular expression \"(\" does not compile"), "{err}");
    assert!(ProbeSpec::new(1, &kind("icmp"), &server, &[]).unwrap_err().contains("icmp"));
}
