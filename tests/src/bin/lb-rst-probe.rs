//! Throwaway experiment (not committed): do handed-off flows whose client resets with data in flight end?
use std::time::{Duration, Instant};
use anyhow::{Context, Result};
use lb_tests::config::{Config, Frontend};
use lb_tests::daemon::DaemonOpts;
use lb_tests::lab::standard::*;
use lb_tests::netns::{run_in, LB_CLI_IF, LB_SRV_IF};
use lb_tests::soak::pump::{pump, Mode};
use lb_tests::{Lab, VethKind};

fn main() -> Result<()> {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let mut lab = Lab::standard_on(VethKind::Default)?;
    run_in(lab.topo.lb(), &["sysctl", "-qw", "net.ipv4.conf.all.forwarding=1", "net.ipv6.conf.all.forwarding=1"])?;
    let opts = DaemonOpts { ifaces: vec![LB_CLI_IF.into(), LB_SRV_IF.into()], extra_args: vec!["--handoff-linger".into(), "0.5".into()], print_log_on_drop: false, ..DaemonOpts::default() };
    lab.start_with(&Config::new().frontend(Frontend::new(1, "443").default_farm(ECHO_FARM).fastpath("xdp")).farm(echo_farm()), opts)?;
    let client = lab.client("echo.lb.test").alpn(&["lb-echo"]).timeout(Duration::from_secs(10));
    let payload = lb_tests::hostile::noise(4 << 20, 9);
    let mut left = 0;
    for i in 0..rounds {
        let after = [4096u64, 65536, 1 << 20, 2 << 20, 3 << 20][i % 5];
        let r = lab.in_cli(|| { let mut c = None; pump(&client, &payload, Mode::ResetAfter { after }, Duration::from_secs(10), &mut c).map_err(|f| f.error).map(|p| (p, c)) })?;
        let started = Instant::now();
        let mut ended = false;
        while started.elapsed() < Duration::from_secs(5) {
            let s = lab.stats()?;
            if s.spliced.is_empty() { ended = true; break; }
            std::thread::sleep(Duration::from_millis(100));
        }
        let s = lab.stats()?;
        if !ended { left += 1; }
        println!("round {i}: reset after {after} (verified {}), client {:?}: flow ended {ended} {}", r.0.verified, r.1, if ended { String::new() } else { format!("{:?}", s.spliced.iter().map(|f| (&f.from, f.rst_seen, f.fin_seen, f.packets)).collect::<Vec<_>>()) });
        if !ended {
            // Clear it for the next round: wait no more, count it.
            let srv = run_in(lab.topo.srv(), &["ss", "-tan", "sport", "= :9443"]).context("ss")?;
            println!("  server sockets: {}", String::from_utf8_lossy(&srv.stdout).lines().skip(1).collect::<Vec<_>>().join(" | "));
            let h = s.handoff.clone().unwrap_or_default();
            println!("  handoff {:?}, counters rst_out_of_window {}", (h.handed_off, h.ended, h.active), s.counters.rst_out_of_window);
        }
    }
    println!("{left} of {rounds} flows left after a client reset");
    Ok(())
}
