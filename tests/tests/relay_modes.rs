//! The user-space fast paths a frontend can ask for (`fastpath: copy` and `splice`): bytes
//! intact both ways, a half-close travels, an idle connection holds no more than its two
//! sockets (pipes and copy buffers are lent only while bytes are in flight), and once every
//! connection ended the daemon holds no descriptor for them.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use lb_tests::client::{echo_transfer, TlsClient};
use lb_tests::config::{Config, Frontend};
use lb_tests::lab::standard::*;
use lb_tests::{procfs, require_root, Lab, VethKind};

const MIB: u64 = 1 << 20;
const FASTPATHS: [&str; 2] = ["copy", "splice"];

fn echo_config(fastpath: &str) -> Config {
    Config::new().frontend(Frontend::new(1, "443").default_farm(ECHO_FARM).fastpath(fastpath)).farm(echo_farm())
}

#[test]
fn copy_and_splice_carry_a_hundred_mib_each_way_byte_for_byte() -> Result<()> {
    require_root!();
    let mut lab = Lab::standard_on(VethKind::Default)?;
    for fastpath in FASTPATHS {
        lab.start(&echo_config(fastpath))?;
        let opts = lab.client("echo.lb.test").alpn(&["lb-echo"]).timeout(Duration::from_secs(10));
        let report = lab.in_cli(|| echo_transfer(&opts, 100 * MIB, Duration::from_secs(20))).with_context(|| format!("fastpath {fastpath}"))?;
        ensure!(report.sent == 100 * MIB && report.received == 100 * MIB, "{fastpath}: {report:?}");
        ensure!(report.sent_sha256 == report.received_sha256, "{fastpath}: {report:?}");
        ensure!(report.close_notify_received, "{fastpath}: the server's close_notify did not arrive: {report:?}");
    }
    Ok(())
}

#[test]
fn copy_and_splice_carry_the_echo_after_the_clients_half_close() -> Result<()> {
    require_root!();
    let mut lab = Lab::standard_on(VethKind::Default)?;
    for fastpath in FASTPATHS {
        lab.start(&echo_config(fastpath))?;
        let opts = lab.client("echo.lb.test").alpn(&["lb-echo"]);
        let (at_shutdown, report) = lab.in_cli(|| {
            let mut session = TlsClient::connect(&opts)?.into_echo(Duration::from_secs(10))?;
            session.send(8 * MIB)?;
            let at_shutdown = session.received();
            session.shutdown_write()?;
            session.read_to_eof()?;
            Ok((at_shutdown, session.report()))
        })?;
        ensure!(at_shutdown < report.sent, "{fastpath}: everything was echoed before the half-close: nothing proven");
        ensure!(report.received == report.sent, "{fastpath}: after the half-close got {} of {} bytes", report.received, report.sent);
        ensure!(report.sent_sha256 == report.received_sha256, "{fastpath}: {report:?}");
        ensure!(report.close_notify_received, "{fastpath}: the server's own close did not come back: {report:?}");
    }
    Ok(())
}

/// Sessions held open at once after an exchange each.
const IDLE_SESSIONS: usize = 60;
/// Descriptors the daemon may hold beyond two per session: the pipes it keeps for the next
/// batch of bytes while relays live.
const SLACK: usize = 16;

#[test]
fn idle_sessions_hold_their_two_sockets_and_nothing_once_closed() -> Result<()> {
    require_root!();
    let mut lab = Lab::standard_on(VethKind::Default)?;
    for fastpath in FASTPATHS {
        lab.start(&echo_config(fastpath))?;
        let pid = lab.daemon()?.pid()?;
        let baseline = procfs::usage(pid)?;
        let opts = lab.client("echo.lb.test").alpn(&["lb-echo"]);
        let sessions = lab.in_cli(|| {
            (0..IDLE_SESSIONS)
                .map(|_| {
                    let mut session = TlsClient::connect(&opts)?.into_echo(Duration::from_secs(10))?;
                    session.exchange(64 * 1024)?;
                    Ok(session)
                })
                .collect::<Result<Vec<_>>>()
        })?;
        let held = procfs::usage(pid)?.fds.saturating_sub(baseline.fds);
        ensure!(
            held <= 2 * IDLE_SESSIONS + SLACK,
            "{fastpath}: {held} more descriptors for {IDLE_SESSIONS} idle sessions (two sockets each, and at most {SLACK} for kept pipes)"
        );
        drop(sessions);
        let (after, took) = procfs::wait_for_fds(pid, baseline.fds, Duration::from_secs(5))?;
        ensure!(took.is_some(), "{fastpath}: the daemon holds {} descriptors, {} before the sessions", after.fds, baseline.fds);
        eprintln!("{fastpath}: {held} descriptors for {IDLE_SESSIONS} idle sessions, back to {} after", after.fds);
    }
    Ok(())
}
