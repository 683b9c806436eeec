//! Debian packages a step needs, installed with apt when their command is missing (the
//! demo's, tests' and package check's lists are in `prereqs`): nothing happens when every
//! command is already there.
use std::path::PathBuf;

use anyhow::Result;

use crate::cmd::{command, output, run};

/// Installs the package of every `(command, package)` whose command is not on PATH
/// (nor in /usr/sbin, /sbin, where root's tools live). A "command" that is an absolute path
/// names a file the package provides (headers, data: files no command stands for).
pub fn ensure(needs: &[(&str, &str)]) -> Result<()> {
    let present = |need: &str| if need.starts_with('/') { std::path::Path::new(need).is_file() } else { find(need).is_some() };
    let missing: Vec<&str> = needs.iter().filter(|(need, _)| !present(need)).map(|(_, pkg)| *pkg).collect();
    if missing.is_empty() {
        return Ok(());
    }
    update()?;
    install(&missing)
}

/// `apt-get update`: the package lists, before looking a package up or installing one.
pub fn update() -> Result<()> {
    run(command("apt-get").args(["update", "-q"]).env("DEBIAN_FRONTEND", "noninteractive"))
}

/// `apt-get install` of `packages` (the lists updated first, see [`update`]).
pub fn install(packages: &[&str]) -> Result<()> {
    eprintln!("xtask: installing {}", packages.join(", "));
    run(command("apt-get").args(["install", "-y", "-q", "--no-install-recommends"]).args(packages).env("DEBIAN_FRONTEND", "noninteractive"))
}

/// The version apt would install of `package` (`apt-cache policy`'s candidate), if any.
pub fn candidate(package: &str) -> Result<Option<String>> {
    let policy = output(command("apt-cache").args(["policy", package]))?;
    Ok(policy.lines().find_map(|l| l.trim().strip_prefix("Candidate:")).map(str::trim).filter(|v| !v.is_empty() && *v != "(none)").map(String::from))
}

/// The files package `package` installed (`dpkg -L`); empty when it is not installed.
pub fn files_of(package: &str) -> Vec<PathBuf> {
    match command("dpkg").args(["-L", package]).output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).lines().map(PathBuf::from).collect(),
        _ => Vec::new(),
    }
}

/// `cmd` on PATH, or in /usr/sbin, /sbin.
pub fn find(cmd: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(["/usr/sbin", "/sbin"].map(PathBuf::from)).map(|d| d.join(cmd)).find(|p| p.is_file())
}
