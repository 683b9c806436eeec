//! `cargo xtask demo`: the founding use case end to end, in throw-away network namespaces.
//!
//! Two h2 backends and two HTTP/1.1 backends sit behind one frontend on :443 whose default farm
//! is the HTTP/1.1 farm; a route with the rule `protocol is http/2.0` sends h2 clients to the h2
//! farm. Real `curl --http2` and `curl --http1.1` requests show where each lands, then the XDP
//! counters. Exits non-zero if any request misses its farm. Binaries: `LB_USER_BIN`,
//! `LB_BACKEND_BIN` (default: next to this binary, else `target/debug`).

use std::process::ExitCode;

use anyhow::{Context, Result};
use lb_tests::config::{Config, Farm, Frontend, Route, Rule, Server};
use lb_tests::curl::curl_get;
use lb_tests::daemon::{Daemon, DaemonOpts};
use lb_tests::{is_root, Backends, Certs, Topology, LB_VIP};

const H2_FARM: u32 = 1;
const H1_FARM: u32 = 2;
const HOST: &str = "h2.lb.test";

fn main() -> ExitCode {
    if !is_root() {
        eprintln!("lb-demo needs root (network namespaces, XDP)");
        return ExitCode::FAILURE;
    }
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("demo FAILED: a request did not land on its expected farm");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("demo FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn config() -> Config {
    Config::new()
        .frontend(Frontend::new(1, "443").default_farm(H1_FARM).named("https"))
        .farm(
            Farm::new(H2_FARM, "h2")
                .port(8443)
                .server(Server::new(1, "10.77.2.2", 8443).named("farm h2 (server 1)"))
                .server(Server::new(2, "10.77.2.3", 8443).named("farm h2 (server 2)")),
        )
        .farm(
            Farm::new(H1_FARM, "h1")
                .port(8443)
                .server(Server::new(3, "10.77.2.4", 8443).named("farm h1 (server 1)"))
                .server(Server::new(4, "10.77.2.5", 8443).named("farm h1 (server 2)")),
        )
        .route(Route::to_farm(1, 1, H2_FARM).rule(Rule::new("protocol", "is", "http/2.0")))
}

/// Returns whether every request landed where expected. Guards clean up on every path.
fn run() -> Result<bool> {
    let topo = Topology::new()?;
    println!("namespaces: {} (client), {} (load balancer), {} (servers)", topo.cli(), topo.lb(), topo.srv());
    let certs = Certs::generate()?;
    let mut backends = Backends::new(&topo, &certs)?;
    backends.tls("10.77.2.2:8443", &["h2"], "farm h2 (server 1)")?;
    backends.tls("10.77.2.3:8443", &["h2"], "farm h2 (server 2)")?;
    backends.tls("10.77.2.4:8443", &["http/1.1"], "farm h1 (server 1)")?;
    backends.tls("10.77.2.5:8443", &["http/1.1"], "farm h1 (server 2)")?;
    println!("backends: h2 on 10.77.2.2-3:8443, http/1.1 on 10.77.2.4-5:8443");

    let opts = DaemonOpts { xdp_mode: "auto".to_string(), print_log_on_drop: false, ..DaemonOpts::default() };
    let daemon = Daemon::start_with(&topo, &config(), opts).context("starting lb-user")?;
    println!("lb-user serving {HOST}:443 on {LB_VIP} (XDP on {})\n", daemon.opts().ifaces.join(", "));

    let mut all_ok = true;
    for (flag, expected) in [("--http2", "farm h2"), ("--http2", "farm h2"), ("--http1.1", "farm h1"), ("--http1.1", "farm h1")] {
        let result = curl_get(topo.cli(), flag, HOST, 443, &LB_VIP.to_string(), &certs.ca_pem())?;
        let backend = result.backend();
        let ok = result.exit_ok && result.code == 200 && backend.starts_with(expected);
        all_ok &= ok;
        if result.exit_ok {
            println!("curl {flag} -> {} from {backend}{}", result.status_line(), if ok { "" } else { "   <-- UNEXPECTED" });
        } else {
            println!("curl {flag} -> failed: {}   <-- UNEXPECTED", result.stderr);
        }
    }

    match daemon.stats() {
        Ok(stats) => {
            let c = stats.counters;
            println!(
                "\nXDP counters: passed {}, acl_dropped {}, flow_packets {}, flow_bytes {}; pinned flows now: {}",
                c.passed,
                c.acl_dropped,
                c.flow_packets,
                c.flow_bytes,
                stats.flows.len()
            );
        }
        Err(e) => println!("\nXDP counters unavailable: {e:#}"),
    }
    if !all_ok {
        eprintln!("--- lb-user log ---\n{}\n--- backends ---\n{}", daemon.log_tail(6000), backends.logs());
    }
    Ok(all_ok)
}
