//! The test kit's etcd: Debian's real `etcd` binary, one member, data kept across a clean
//! restart and across SIGKILL.

use anyhow::{ensure, Context, Result};
use lb_tests::etcd::Etcd;
use lb_tests::{require_root, Topology};

fn keeps_keys(etcd: &mut Etcd) -> Result<()> {
    etcd.put("/lb/zone/z1/frontend/1", "{\"port\":443}")?;
    ensure!(etcd.get("/lb/zone/z1/frontend/1")?.as_deref() == Some("{\"port\":443}"), "value read back differs");
    ensure!(etcd.get("/lb/absent")?.is_none(), "an absent key read as present");

    etcd.restart().context("restart after SIGTERM")?;
    ensure!(etcd.get("/lb/zone/z1/frontend/1")?.as_deref() == Some("{\"port\":443}"), "key lost across a clean restart");

    etcd.put("/lb/zone/z1/frontend/2", "{\"port\":80}")?;
    etcd.kill9();
    ensure!(!etcd.ctl(&["endpoint", "health"])?.status.success(), "etcd still answers after SIGKILL");
    etcd.start_again().context("start after SIGKILL")?;
    ensure!(etcd.get("/lb/zone/z1/frontend/1")?.as_deref() == Some("{\"port\":443}"), "key lost across SIGKILL");
    ensure!(etcd.get("/lb/zone/z1/frontend/2")?.as_deref() == Some("{\"port\":80}"), "acknowledged put lost across SIGKILL");
    Ok(())
}

#[test]
fn etcd_on_host_loopback_keeps_keys_across_restart_and_kill9() -> Result<()> {
    let mut etcd = Etcd::start(None)?;
    let result = keeps_keys(&mut etcd);
    result.map_err(|e| e.context(format!("etcd log:\n{}", etcd.log_tail())))
}

#[test]
fn etcd_in_a_namespace_keeps_keys_across_restart_and_kill9() -> Result<()> {
    require_root!();
    let topo = Topology::new()?;
    let mut etcd = Etcd::start(Some(topo.lb()))?;
    ensure!(etcd.endpoint().starts_with("http://127.0.0.1:"), "endpoint {}", etcd.endpoint());
    let result = keeps_keys(&mut etcd);
    result.map_err(|e| e.context(format!("etcd log:\n{}", etcd.log_tail())))
}
