//! A frontend's connection limit: past it the daemon stops accepting (backpressure), and
//! admits the waiting client as soon as a connection ends.

use std::time::Duration;

use anyhow::{ensure, Result};
use lb_tests::client::TlsClient;
use lb_tests::config::{Config, Frontend};
use lb_tests::lab::standard::*;
use lb_tests::{require_root, Lab};

#[test]
fn connections_over_the_limit_wait_until_one_ends() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    let config = Config::new().frontend(Frontend::new(1, "443").default_farm(H1_FARM).max_connections(5)).farm(h1_farm());
    lab.start(&config)?;
    let opts = lab.client("h1.lb.test").alpn(&["http/1.1"]);
    let held = lab.in_cli(|| (0..5).map(|_| TlsClient::connect(&opts)).collect::<Result<Vec<_>>>())?;
    // The sixth TCP handshake completes in the kernel's queue, but nobody reads its hello.
    let quick = opts.clone().timeout(Duration::from_millis(700));
    let over = lab.in_cli(|| Ok(TlsClient::connect(&quick).is_ok()))?;
    ensure!(!over, "a sixth connection was served over maxConnections 5");
    // Once one ends, the next client is served.
    let (waiting_result, ()) = std::thread::scope(|s| {
        let waiter = s.spawn(|| lab.in_cli(|| Ok(TlsClient::connect(&opts.clone().timeout(Duration::from_secs(5)))?.http_get("/")?.backend())));
        std::thread::sleep(Duration::from_millis(300));
        drop(held);
        (waiter.join().expect("waiter thread"), ())
    });
    let backend = waiting_result?;
    ensure!(backend.starts_with("farm h1 "), "waiting client got {backend:?}");
    Ok(())
}
