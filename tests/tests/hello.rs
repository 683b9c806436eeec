//! ClientHellos the way real networks deliver them: split over TCP segments, over TLS records,
//! not TLS at all, or never finished.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use lb_tests::client::{https_get, plain_tcp_echo, time_until_closed, TlsClient};
use lb_tests::config::{Config, Frontend, Route, Rule};
use lb_tests::hello::{client_hello_bytes, layout};
use lb_tests::lab::standard::*;
use lb_tests::{require_root, vip, Lab};

/// ALPN long enough to span records; `h2` comes last, so the deciding id is deep in the hello.
const LONG_ALPN: &[&str] = &[
    "lb-test-filler-protocol-01",
    "lb-test-filler-protocol-02",
    "lb-test-filler-protocol-03",
    "lb-test-filler-protocol-04",
    "lb-test-filler-protocol-05",
    "lb-test-filler-protocol-06",
    "http/1.1",
    "h2",
];

/// Frontend :443, default farm h1; `protocol is http/2.0` → h2 farm.
fn h2_route_config() -> Config {
    Config::new()
        .frontend(Frontend::new(1, "443").default_farm(H1_FARM))
        .farm(h2_farm())
        .farm(h1_farm())
        .route(Route::to_farm(1, 1, H2_FARM).rule(Rule::new("protocol", "is", "http/2.0")))
}

#[test]
fn hello_split_one_byte_per_segment_is_classified() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    lab.start(&h2_route_config())?;
    let opts = lab.client("h2.lb.test").alpn(&["h2", "http/1.1"]).hello_one_byte_per_segment();
    let hello_len = client_hello_bytes(&opts)?.len() as u32;
    let (segments, r) = lab.in_cli(|| {
        let client = TlsClient::connect(&opts)?;
        let segments = client.hello_segments().context("hello segments not measured")?;
        Ok((segments, client.http_get("/")?))
    })?;
    ensure!(segments * 10 >= hello_len * 9, "hello of {hello_len} bytes went out in only {segments} segments");
    ensure!(r.backend().starts_with("farm h2 ") && r.version == "HTTP/2", "{r:?}");
    Ok(())
}

#[test]
fn hello_split_across_records_is_classified() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    lab.start(&h2_route_config())?;
    let opts = lab.client("h2.lb.test").alpn(LONG_ALPN).alpn_in_record(64, 2);
    // What such a hello looks like: several records, ALPN starting in the third.
    let shape = layout(&client_hello_bytes(&opts)?)?;
    ensure!(shape.records.len() > 3 && shape.alpn_record() == Some(2), "{shape:?}");
    let r = lab.in_cli(|| https_get(&opts, "/"))?;
    ensure!(r.alpn.as_deref() == Some("h2"), "{r:?}");
    ensure!(r.backend().starts_with("farm h2 "), "split hello landed on {:?}", r.backend());
    Ok(())
}

#[test]
fn non_tls_client_is_classified_tcp() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    // Plain TCP goes to a plain echo server; TLS would go to the (TLS) default farm.
    let config = Config::new()
        .frontend(Frontend::new(1, "443").default_farm(H1_FARM))
        .farm(h1_farm())
        .farm(plain_farm())
        .route(Route::to_farm(1, 1, PLAIN_FARM).rule(Rule::new("protocol", "is", "tcp")));
    lab.start(&config)?;
    let tls = lab.client("h1.lb.test").alpn(&["http/1.1"]);
    let payload = b"PLAIN TCP: not a ClientHello\r\n".to_vec();
    let (echoed, r) = lab.in_cli(|| {
        let echoed = plain_tcp_echo(None, vip(443), &payload, Duration::from_secs(5))?;
        Ok((echoed, https_get(&tls, "/")?))
    })?;
    ensure!(echoed == payload, "plain client got {:?}", String::from_utf8_lossy(&echoed));
    ensure!(r.backend().starts_with("farm h1 "), "TLS client landed on {:?}", r.backend());
    Ok(())
}

#[test]
fn slow_client_closed_at_inspect_timeout() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    // A route that reads the hello, so the frontend has to inspect.
    let config = Config::new()
        .frontend(Frontend::new(1, "443").default_farm(H1_FARM).inspect_timeout(1))
        .farm(h2_farm())
        .farm(h1_farm())
        .route(Route::to_farm(1, 1, H2_FARM).rule(Rule::new("protocol", "is", "http/2.0")));
    lab.start(&config)?;
    // A TLS record header of a handshake, then silence.
    let waited = lab.in_cli(|| time_until_closed(None, vip(443), &[0x16, 0x03, 0x01], Duration::from_secs(5)))?;
    ensure!(waited >= Duration::from_millis(700), "closed after {waited:?}, before the 1 s inspect timeout");
    ensure!(waited <= Duration::from_secs(3), "closed only after {waited:?} with a 1 s inspect timeout");
    Ok(())
}
