//! `allowedSource` / `deniedSource` hold on every way in, not only where a kernel program
//! filters SYNs: here the daemon runs without `--iface`, as on a host where clients arrive
//! on an interface the programs do not serve.

use std::io::{ErrorKind, Read};
use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{ensure, Result};
use lb_tests::client::{https_get, tcp_connect};
use lb_tests::config::{Config, Frontend};
use lb_tests::daemon::DaemonOpts;
use lb_tests::lab::standard::*;
use lb_tests::{require_root, vip, Lab, CLIENT_IP, CLIENT_IP2};

fn without_kernel_programs() -> DaemonOpts {
    DaemonOpts { ifaces: Vec::new(), ..DaemonOpts::default() }
}

/// What a client at `source` sees: the handshake completes (nothing filters the SYN), then
/// the daemon must end the connection before reading anything from it.
fn refused_after_accept(lab: &Lab, source: Ipv4Addr) -> Result<bool> {
    lab.in_cli(|| {
        let mut stream = match tcp_connect(Some(source.into()), vip(443), Duration::from_secs(3)) {
            Ok(stream) => stream,
            // The reset may come before the client has finished setting its socket up.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(true),
            Err(e) => return Err(e.into()),
        };
        let mut byte = [0u8; 1];
        Ok(match stream.read(&mut byte) {
            Ok(0) => true,
            Err(e) => e.kind() == ErrorKind::ConnectionReset,
            Ok(_) => false,
        })
    })
}

fn served_from(lab: &Lab, source: Ipv4Addr) -> Result<String> {
    let opts = lab.client("h1.lb.test").alpn(&["http/1.1"]).bind(source);
    Ok(lab.in_cli(|| https_get(&opts, "/"))?.backend())
}

#[test]
fn denied_source_is_refused_in_user_space_without_kernel_programs() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    let config = Config::new().frontend(Frontend::new(1, "443").default_farm(H1_FARM).denied(&["10.77.1.3/32"])).farm(h1_farm());
    lab.start_with(&config, without_kernel_programs())?;
    ensure!(refused_after_accept(&lab, CLIENT_IP2)?, "denied {CLIENT_IP2} was not refused");
    let refused_tls = lab.in_cli(|| https_get(&lab.client("h1.lb.test").alpn(&["http/1.1"]).bind(CLIENT_IP2), "/"));
    ensure!(refused_tls.is_err(), "denied {CLIENT_IP2} got an answer: {:?}", refused_tls.map(|r| r.backend()));
    let backend = served_from(&lab, CLIENT_IP)?;
    ensure!(backend.starts_with("farm h1 "), "{CLIENT_IP} (not denied) landed on {backend:?}");
    Ok(())
}

#[test]
fn unlisted_source_is_refused_in_user_space_without_kernel_programs() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    let config = Config::new().frontend(Frontend::new(1, "443").default_farm(H1_FARM).allowed(&["10.77.1.2/32"])).farm(h1_farm());
    lab.start_with(&config, without_kernel_programs())?;
    let backend = served_from(&lab, CLIENT_IP)?;
    ensure!(backend.starts_with("farm h1 "), "listed {CLIENT_IP} landed on {backend:?}");
    ensure!(refused_after_accept(&lab, CLIENT_IP2)?, "unlisted {CLIENT_IP2} was not refused");
    Ok(())
}
