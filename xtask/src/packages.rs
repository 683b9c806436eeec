//! Debian packages a step needs, installed with apt when their command is missing (as
//! `.ci/run` does for the tests): nothing happens when every command is already there.
use std::path::PathBuf;

use anyhow::Result;

use crate::cmd::{command, run};

/// Installs the package of every `(command, package)` whose command is not on PATH
/// (nor in /usr/sbin, /sbin, where root's tools live).
pub fn ensure(needs: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = needs.iter().filter(|(cmd, _)| !on_path(cmd)).map(|(_, pkg)| *pkg).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {}", missing.join(", "));
    run(command("apt-get").args(["update", "-q"]).env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(command("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn on_path(cmd: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(["/usr/sbin", "/sbin"].map(PathBuf::from)).any(|d| d.join(cmd).is_file())
}
